"""Every code example of README.md and docs/*.md runs, in order, page by page.

Each ```python fence of a page is compiled with top-level await and run in one namespace per
page, as a reader would type them one after the other. The namespace starts with ``fake`` (a
strict :class:`FakeAlloy`), ``alloy`` (an open client of it) and ``tmp_path``; a page may add to
it (``PAGES``: README runs against the sandbox over HTTP with ``ALLOY_API_KEY`` and
``ALLOY_BASE_URL`` set, the distributed page gets a throwaway redis-server) and check, after its
snippets ran, what the server recorded.

A python fence that cannot run (a complete program calling ``asyncio.run``, a framework that is
not a dependency) is preceded by ``<!-- no-run: why -->``, and each page's number of such
markers is written down here: a new marker fails until it is counted, so skipping cannot spread
silently. Shell commands and output use other fence languages (``sh``, ``text``, ``json``); any
other language (``py``, ``python3``...) fails, so a snippet cannot escape by its spelling.

Catches: a snippet that no longer works with the code (a renamed method or argument, a changed
default, a wrong field: seen failing with ``alloy.users.create`` renamed ``create_user`` in
docs/services.md), a page added without being listed here, and an unannounced no-run marker.
"""

from __future__ import annotations

import ast
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NO_RUN = re.compile(r"^<!-- no-run: \S.* -->$")
RUN_LANGUAGES = {"python"}
OTHER_LANGUAGES = {"sh", "text", "json"}

Namespace = dict[str, Any]


@attrs.frozen
class Fence:
    """One fenced block of a page."""

    page: str
    line: int  # of the first line of code
    language: str
    code: str
    no_run: bool


def fences(page: str) -> list[Fence]:
    """The fenced blocks of ``page`` (a path relative to the repository root)."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    found: list[Fence] = []
    i = 0
    while i < len(lines):
        opening = re.match(r"^(`{3,})(.*)$", lines[i])
        if opening is None:
            i += 1
            continue
        ticks, info = opening.group(1), opening.group(2).strip()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == ticks)
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Fence(page, i + 2, info, code, NO_RUN.match(before.strip()) is not None))
        i = end + 1
    return found


def markers(page: str) -> int:
    text = (ROOT / page).read_text(encoding="utf-8")
    return sum(1 for line in text.splitlines() if NO_RUN.match(line.strip()))


# -- per-page setup and checks ----------------------------------------------------------------

Setup = Callable[[Namespace, pytest.MonkeyPatch], contextlib.AbstractAsyncContextManager[None]]
Check = Callable[[Namespace], Awaitable[None]]


@contextlib.asynccontextmanager
async def nothing(ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    yield


async def no_check(ns: Namespace) -> None:
    return None


@attrs.frozen
class Page:
    """How one page's snippets run: its no-run markers, setup and check."""

    no_run: int = 0
    setup: Setup = nothing
    check: Check = no_check
    #: Run before the first snippet containing the key (what a reader does outside Python).
    before: dict[str, Callable[[Namespace], None]] = attrs.field(factory=dict)


@contextlib.asynccontextmanager
async def readme_setup(ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """README's examples build ``AlloyClient()`` from the environment: point it at the sandbox."""
    async with SandboxServer(ns["fake"]) as server:
        monkeypatch.setenv("ALLOY_API_KEY", ns["fake"].api_key)
        monkeypatch.setenv("ALLOY_BASE_URL", server.url)
        yield


async def readme_check(ns: Namespace) -> None:
    """Drive README's three examples with real inputs; judge by the sandbox's record."""
    from aiohttp.test_utils import TestClient, TestServer

    fake: FakeAlloy = ns["fake"]
    user = fake.add_user("shop@example.com", "Shop")
    async with TestClient(TestServer(ns["app"])) as http:
        found = await http.get(f"/users/{user}")
        assert found.status == 200 and (await found.json())["name"] == "Shop"
        assert (await http.get("/users/nobody")).status == 404

    customers = [(user, fake.add_credential(user, "sendgrid"), f"c{n}@example.com") for n in (1, 2)]
    tmp: Path = ns["tmp_path"]
    await ns["send_welcomes"](customers, tmp / "welcome.journal", tmp / "welcome.jsonl")
    await ns["send_welcomes"](customers, tmp / "welcome.journal", tmp / "welcome.jsonl")
    assert len(fake.executions_of(action_id="sendEmail")) == 2  # the rerun sent nothing
    assert len((tmp / "welcome.jsonl").read_text().splitlines()) == 2

    hubspot = fake.add_credential(user, "hubspot")
    count = await ns["export_contacts"](user, hubspot, tmp / "contacts.jsonl")
    assert count == 120 == len((tmp / "contacts.jsonl").read_text().splitlines())


async def quickstart_check(ns: Namespace) -> None:
    """The welcome email, one page of contacts (the refused email never ran), 100 fan-outs."""
    actions = [e.action_id for e in ns["fake"].executions]
    assert actions == ["sendEmail", "listContacts"] + ["sendEmail"] * 100


def hubspot_consent(ns: Namespace) -> None:
    """What the user's browser does after "once the user has completed HubSpot's OAuth consent"."""
    ns["fake"].add_credential(ns["user"].user_id, "hubspot")


CONSENT = {"completed HubSpot's OAuth consent": hubspot_consent}


@contextlib.asynccontextmanager
async def codegen_setup(ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The generated package is written under tmp_path: make it importable, then forget it."""
    monkeypatch.syspath_prepend(str(ns["tmp_path"]))
    try:
        yield
    finally:
        for name in [m for m in sys.modules if m.partition(".")[0] == "alloy_bindings"]:
            del sys.modules[name]


@contextlib.asynccontextmanager
async def redis_setup(ns: Namespace, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    from redis_server import running_redis

    with running_redis(ns["tmp_path"] / "redis") as server:
        ns["redis_url"] = server.url
        yield


PAGES: dict[str, Page] = {
    "README.md": Page(setup=readme_setup, check=readme_check),
    "docs/index.md": Page(),
    "docs/quickstart.md": Page(no_run=1, check=quickstart_check, before=CONSENT),
    "docs/concepts.md": Page(no_run=1),
    "docs/services.md": Page(before=CONSENT),
    "docs/fanout.md": Page(),
    "docs/durable.md": Page(),
    "docs/distributed.md": Page(setup=redis_setup),
    "docs/codegen.md": Page(setup=codegen_setup),
    "docs/cli.md": Page(),
    "docs/testing.md": Page(no_run=1),
    "docs/observability.md": Page(no_run=1),
    "docs/networks.md": Page(),
    "docs/errors.md": Page(),
    "docs/guarantees.md": Page(),
    "docs/architecture.md": Page(),
    "docs/changelog.md": Page(),
}


def pages_on_disk() -> set[str]:
    return {"README.md"} | {f"docs/{p.name}" for p in DOCS.glob("*.md")}


def test_every_page_is_listed() -> None:
    """A page added to docs/ runs its snippets only if listed in PAGES: so every one is."""
    assert set(PAGES) == pages_on_disk()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_fences_are_run_or_explicitly_not(page: str) -> None:
    """Every fence is python (run), a known other language, or a MyST directive; no-run markers
    stand right before a python fence and their count is the one written down."""
    for fence in fences(page):
        where = f"{page}:{fence.line}"
        assert fence.language in RUN_LANGUAGES | OTHER_LANGUAGES or fence.language.startswith(
            "{"
        ), f"{where}: fence language {fence.language!r} is neither run nor known"
    marked = [f for f in fences(page) if f.no_run]
    assert all(f.language == "python" for f in marked), f"{page}: a no-run marker on a non-python"
    assert len(marked) == markers(page) == PAGES[page].no_run


def snippets(page: str) -> list[Fence]:
    return [f for f in fences(page) if f.language in RUN_LANGUAGES and not f.no_run]


async def run_snippets(page: str, ns: Namespace) -> None:
    before = dict(PAGES[page].before)
    for fence in snippets(page):
        for needle in [n for n in before if n in fence.code]:
            before.pop(needle)(ns)
        # Padded so that a traceback names the page's own line.
        source = "\n" * (fence.line - 1) + fence.code
        code = compile(source, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, ns)
        if result is not None:
            await result
    assert not before, f"{page}: no snippet contains {sorted(before)}"


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_page_snippets_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the page's python snippets in order, in one namespace, then its check."""
    spec = PAGES[page]
    fake = FakeAlloy(strict=True)
    monkeypatch.chdir(tmp_path)  # a snippet writing "run.journal" writes it here
    async with fake.client() as alloy:
        ns: Namespace = {
            "__name__": "docs_snippet",
            "alloy": alloy,
            "fake": fake,
            "tmp_path": tmp_path,
        }
        async with spec.setup(ns, monkeypatch):
            await run_snippets(page, ns)
            await spec.check(ns)


def test_the_tour_covers_each_step() -> None:
    """The quick start's tour shows users, connectors, actions, both credential kinds, execute,
    errors, paging and fan-out. Catches: a step of the tour dropped in an edit."""
    joined = "\n".join(f.code for f in snippets("docs/quickstart.md"))
    for needle in (
        "users.create",
        "connectors.list",
        "actions.get",
        'authentication_type="oauth2"',
        'authentication_type="apiKey"',
        "actions.execute",
        "except NotFoundError",
        "except OutcomeUnknownError",
        "actions.paginate",
        "actions.execute_many",
    ):
        assert needle in joined
