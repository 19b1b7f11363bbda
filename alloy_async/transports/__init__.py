"""Transports: how requests reach the API.

``AiohttpTransport`` (the default) is imported lazily so that tests on ``FakeTransport`` never
import aiohttp's client machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._http import Request, Response, Secret
from .base import Transport
from .fake import FakeTransport

if TYPE_CHECKING:
    from .aiohttp import AiohttpTransport

__all__ = ["AiohttpTransport", "FakeTransport", "Request", "Response", "Secret", "Transport"]


def __getattr__(name: str) -> Any:
    if name == "AiohttpTransport":
        from .aiohttp import AiohttpTransport

        return AiohttpTransport
    raise AttributeError(name)
