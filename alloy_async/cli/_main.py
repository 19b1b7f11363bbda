"""The ``alloy-async`` click group, with every command group added to it."""

from __future__ import annotations

import click

from .bulk import bulk
from .calls import actions, connectors, credentials, users
from .codegen import codegen
from .demo import demo
from .sandbox import sandbox_cmd
from .worker import worker

__all__ = ["main"]


@click.group()
@click.version_option(package_name="alloy-async", prog_name="alloy-async")
def main() -> None:
    """alloy-async: the async SDK for the Alloy Connectivity API, from the shell."""


for _command in (demo, bulk, worker, sandbox_cmd, users, connectors, actions, credentials, codegen):
    main.add_command(_command)
