"""Issue 25: ``alloy-async codegen`` and ``alloy_async.codegen``, without mypy (see
test_codegen_mypy.py for what mypy accepts and refuses).

The generated package of the crafted catalog (tests/codegen_catalog.py) is imported and read
with ``typing`` introspection, so these tests judge the types Python and mypy will see, not the
text; the requests a generated method sends are judged by FakeAlloy's record.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_type_hints

import pytest
from click.testing import CliRunner
from codegen_catalog import acme, fake_with_acme, generate_from
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alloy_async._convert import structure
from alloy_async.cli._main import main
from alloy_async.codegen import differences, fetch_catalog, generate, with_extra, write
from alloy_async.codegen._names import module_name, pascal, snake
from alloy_async.errors import InvalidRequestError
from alloy_async.models.actions import Action
from alloy_async.testing import FakeAlloy
from alloy_async.testing.catalog import CONNECTORS

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "alloy_bindings"
SANDBOX_IDS = sorted(c["id"] for c in CONNECTORS)
CLI = [sys.executable, "-m", "alloy_async.cli"]


@pytest.fixture(scope="module")
def acme_pkg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The crafted catalog's generated package, written to a temporary folder and imported."""
    import asyncio

    root = tmp_path_factory.mktemp("gen")
    generated = asyncio.run(generate_from(fake_with_acme(), "acme-crm"))
    write(root / "acme_bindings", generated)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("acme_bindings.acme_crm")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith("acme_bindings")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (module_name("acme-crm"), "acme_crm"),
        (module_name("3Com.io"), "_3com_io"),
        (module_name("class"), "class_"),
        (snake("create-contact"), "create_contact"),
        (snake("listContacts"), "list_contacts"),
        (snake("chat_postMessage"), "chat_post_message"),
        (snake("getHTTPStatus"), "get_http_status"),
        (snake("import"), "import_"),
        (pascal("create-contact"), "CreateContact"),
        (pascal("listContacts"), "ListContacts"),
        (pascal("acme-crm"), "AcmeCrm"),
    ],
)
def test_names_follow_the_issue(text: str, expected: str) -> None:
    """Catches: a name rule that drifts from the issue's contract (``acme-crm`` ->
    ``acme_crm.py``, ``listContacts`` -> ``list_contacts`` / ``ListContacts``), or a keyword
    left as a name Python cannot import or define."""
    assert text == expected


def test_every_schema_feature_becomes_its_type(acme_pkg: ModuleType) -> None:
    """Catches: required properties typed NotRequired (or the reverse), a nested object left a
    dict, an enum left ``str``, an array item type lost, an open part typed narrower than Any,
    and a hyphen / keyword key dropped or renamed."""
    body = acme_pkg.CreateContactBody
    assert body.__required_keys__ == {"first-name", "class", "email", "address"}
    assert {"tags", "phones", "owner", "custom", "notes"} <= body.__optional_keys__
    hints = get_type_hints(body)
    assert hints["class"] == Literal["lead", "customer", "partner"]
    assert hints["priority"] == Literal[1, 2, 3]
    assert hints["tags"] == list[str]
    assert hints["owner"] == str | None
    assert hints["metadata"] == dict[str, Any]
    assert hints["labels"] == dict[str, str]
    assert hints["notes"] is Any
    address = hints["address"]
    assert address is acme_pkg.CreateContactBodyAddress
    assert address.__required_keys__ == {"street", "city"}
    geo = get_type_hints(address)["geo"]
    assert geo.__required_keys__ == {"lat", "lng"}
    assert get_type_hints(geo) == {"lat": float, "lng": float}
    (item,) = hints["phones"].__args__
    assert item.__required_keys__ == {"number"}
    assert get_type_hints(item)["kind"] == Literal["home", "work"]
    # additionalProperties open: the declared keys typed; extra keys documented, via with_extra
    custom = hints["custom"]
    assert get_type_hints(custom) == {"source": str}
    assert "Extra keys are allowed (values: int)" in (custom.__doc__ or "")
    # parameters: query and path, a path parameter required, a header parameter left out
    assert get_type_hints(acme_pkg.GetContactPath) == {"contact_id": str}
    assert acme_pkg.GetContactPath.__required_keys__ == {"contact_id"}
    assert get_type_hints(acme_pkg.GetContactQuery) == {"fields": list[str]}
    sort = get_type_hints(acme_pkg.ListContacts2Query)
    assert sort == {"limit": int, "sort": Literal["name", "created"]}


def _kinds(fn: Any) -> dict[str, tuple[Any, bool]]:
    """Each parameter's (kind, required)."""
    return {
        n: (p.kind, p.default is inspect.Parameter.empty)
        for n, p in inspect.signature(fn).parameters.items()
        if n != "self"
    }


def test_methods_take_each_part_only_where_the_action_has_it(acme_pkg: ModuleType) -> None:
    """Catches: a part the action lacks offered anyway (a body on a GET), a part whose schema
    requires something made optional (or an all-optional part made required), a positional
    argument, and a lost ``timeout`` / ``validate`` / ``key``."""
    actions = acme_pkg.AcmeCrmActions
    kw = inspect.Parameter.KEYWORD_ONLY
    assert _kinds(actions.create_contact) == {
        "credential_id": (kw, True),
        "user_id": (kw, False),
        "request_body": (kw, True),
        "additional_headers": (kw, False),
        "timeout": (kw, False),
        "validate": (kw, False),
    }
    get = _kinds(actions.get_contact)
    assert get["path_params"] == (kw, True) and get["query_parameters"] == (kw, False)
    assert "request_body" not in get
    assert set(_kinds(actions.delete_contact)) == {
        "credential_id",
        "user_id",
        "path_params",
        "additional_headers",
        "timeout",
        "validate",
    }
    assert _kinds(actions.list_contacts_2)["query_parameters"] == (kw, False)
    assert _kinds(actions.create_contact_job_2)["request_body"] == (kw, False)
    job = _kinds(actions.get_contact_job)
    assert job["key"] == (kw, False) and job["path_params"] == (kw, True)
    assert "timeout" not in job and "validate" not in job
    assert isinstance(inspect.getattr_static(actions, "get_contact_job"), staticmethod)
    assert inspect.iscoroutinefunction(actions.get_contact)
    assert "Creates a contact." in (actions.create_contact.__doc__ or "")


async def test_clashes_and_inexpressible_schemas_are_reported_never_fatal() -> None:
    """Catches: two actions given one method (the second silently overwriting the first), an
    action shadowing another's ``_job``, a crash (or a silent Any) on a schema the generator
    cannot express; the notes name the action, and are the same on every run."""
    generated = await generate_from(fake_with_acme(), "acme-crm")
    assert generated.notes == (
        "renamed: acme-crm.create-contact-job: method create_contact_job_2 "
        "(create_contact_job is taken)",
        "renamed: acme-crm.listContacts: method list_contacts_2 (list_contacts is taken)",
        "warning: acme-crm.import request body /file: unknown type 'file'; typed Any",
        "warning: acme-crm.import request body /schema: $ref "
        "'https://example.com/schemas/import.json' is not in this schema; typed Any",
    )
    text = generated.files["acme_crm.py"]
    for method in ("create_contact_job", "create_contact_job_2", "list_contacts_2", "import_"):
        assert f"    async def {method}(" in text or f"    def {method}(" in text
    assert "    file: NotRequired[Any]\n" in text


async def test_regeneration_is_byte_identical_whatever_the_listing_order() -> None:
    """Catches: a timestamp in a header, or output that follows the order the API happens to
    list connectors, resources and actions in (a reordered answer would show up as drift in
    CI), at the command's level and at :func:`generate`'s."""
    first = await generate_from(fake_with_acme(), "acme-crm", "slack")
    again = await generate_from(fake_with_acme(), "slack", "acme-crm")
    reordered = fake_with_acme()
    resources = reordered.connectors["acme-crm"]["resources"]
    resources.reverse()
    for resource in resources:
        resource["actions"].reverse()
    third = await generate_from(reordered, "acme-crm", "slack")
    async with fake_with_acme().client() as alloy:
        catalog = await fetch_catalog(alloy, ["slack", "acme-crm"])
    backwards = {k: catalog[k][::-1] for k in reversed(list(catalog))}
    fourth = generate(backwards, api_version="2025-09")
    assert first.files == again.files == third.files == fourth.files
    assert first.notes == fourth.notes
    assert first.files["acme_crm.py"].startswith(
        "# Generated by alloy-async codegen from the Alloy API (version 2025-09).\n"
        '# Connector: "acme-crm".\n'
    )


async def test_a_generated_method_sends_what_actions_execute_sends(acme_pkg: ModuleType) -> None:
    """Catches: a generated method that renames a part, drops ``user_id`` or
    ``additional_headers``, targets another action, or sends a part the caller left out,
    judged by the server's record of the requests and of what it executed; and a ``timeout=``
    the call ignores (the attempt's timeout is what the transport receives)."""
    fake = fake_with_acme()
    user = fake.add_user("ada")
    cred = fake.add_credential(user, "acme-crm")
    body = {
        "first-name": "Ada",
        "class": "lead",
        "email": "a@x.io",
        "address": {"street": "1", "city": "P"},
    }
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create-contact", {"request_body": body, "additional_headers": {"X-Trace": "t"}}),
        (
            "get-contact",
            {"path_params": {"contact_id": "c1"}, "query_parameters": {"fields": ["a"]}},
        ),
        ("list-contacts", {}),
    ]
    async with fake.client() as alloy:
        typed = acme_pkg.AcmeCrmActions(alloy)
        for action_id, parts in calls:
            method = getattr(typed, snake(action_id))
            await method(credential_id=cred, user_id=user, **parts)
            await alloy.actions.execute(
                "acme-crm", action_id, credential_id=cred, user_id=user, **parts
            )
        await typed.list_contacts(credential_id=cred, user_id=user, timeout=2.5)
    requests = [r for r in fake.requests if r.route == "execute"]
    assert len(requests) == 7 and len(fake.executions) == 7
    for n in range(3):
        generated, direct = requests[2 * n], requests[2 * n + 1]
        assert (generated.method, generated.path, generated.query, generated.json) == (
            direct.method,
            direct.path,
            direct.query,
            direct.json,
        )
        assert {k: v for k, v in generated.headers.items() if k != "x-request-id"} == {
            k: v for k, v in direct.headers.items() if k != "x-request-id"
        }
        ran, ran_direct = fake.executions[2 * n], fake.executions[2 * n + 1]
        assert (ran.action_id, ran.request_body, ran.query_parameters, ran.path_params) == (
            ran_direct.action_id,
            ran_direct.request_body,
            ran_direct.query_parameters,
            ran_direct.path_params,
        )
    assert requests[2].json["pathParams"] == {"contact_id": "c1"}
    timeouts = [r.timeout for r in alloy.transport.requests if "/execute" in r.url]  # type: ignore[attr-defined]
    assert timeouts == [30.0] * 6 + [2.5]


async def test_validate_and_the_job_method_go_through_the_sdk(acme_pkg: ModuleType) -> None:
    """Catches: ``validate=`` not passed on (an invalid body would be sent), and a ``_job``
    builder whose job executes another action or other arguments than the method's."""
    fake = fake_with_acme()
    user = fake.add_user("ada")
    cred = fake.add_credential(user, "acme-crm")
    typed_cls = acme_pkg.AcmeCrmActions
    async with fake.client() as alloy:
        bad: Any = {"first-name": "Ada"}
        with pytest.raises(InvalidRequestError):
            await typed_cls(alloy).create_contact(
                credential_id=cred, user_id=user, request_body=bad, validate=True
            )
        assert [r for r in fake.requests if r.route == "execute"] == []
        job = typed_cls.get_contact_job(
            credential_id=cred, user_id=user, path_params={"contact_id": "c9"}, key="k1"
        )
        assert (job.connector_id, job.action_id, job.key) == ("acme-crm", "get-contact", "k1")
        async for outcome in alloy.actions.execute_many([job]):
            assert outcome.ok
    (ran,) = fake.executions
    assert (ran.action_id, ran.path_params, ran.user_id) == (
        "get-contact",
        {"contact_id": "c9"},
        user,
    )


def test_with_extra_adds_keys_and_refuses_declared_ones() -> None:
    """Catches: an escape hatch that drops the declared keys, or lets an extra key overwrite
    a declared (type-checked) one unseen."""
    assert with_extra({"source": "web"}, {"utm": 3}) == {"source": "web", "utm": 3}
    with pytest.raises(ValueError, match="source"):
        with_extra({"source": "web"}, {"source": 1})


def test_the_sandbox_catalog_fixture_is_current() -> None:
    """The committed package of the sandbox's catalog is what the command generates today, by
    the command itself, offline (``--sandbox``), through ``--check``. Catches: a catalog or
    generator change nobody regenerated (run the command below without --check to fix)."""
    run = subprocess.run(
        [*CLI, "codegen", "--sandbox", *SANDBOX_IDS, "--out", str(FIXTURE), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stderr


def test_check_names_drift_and_write_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: ``--check`` exiting 0 (or naming the wrong file) after the catalog changed, a
    ``--check`` that writes, a stale module of a dropped connector left behind, and a rewrite
    that touches files that did not change."""
    out = tmp_path / "bindings"
    runner = CliRunner()

    def codegen(*args: str) -> Any:
        return runner.invoke(main, ["codegen", "--sandbox", *args, "--out", str(out)])

    assert codegen("slack", "sendgrid").exit_code == 0
    assert codegen("slack", "sendgrid", "--check").exit_code == 0
    sendgrid = next(c for c in CONNECTORS if c["id"] == "sendgrid")
    changed = acme()["resources"][0]["actions"][5]["requestBody"]
    monkeypatch.setitem(sendgrid["resources"][0]["actions"][0], "requestBody", changed)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    check = codegen("slack", "sendgrid", "--check")
    assert check.exit_code == 1
    assert f"out of date: {out / 'sendgrid.py'}" in check.stderr
    assert "slack.py" not in check.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    (out / "notes.py").write_text("# the user's own module\n")
    assert codegen("slack").exit_code == 0  # sendgrid dropped: its module goes, notes.py stays
    assert sorted(p.name for p in out.iterdir()) == [
        "__init__.py",
        "notes.py",
        "py.typed",
        "slack.py",
    ]
    assert (out / "slack.py").stat().st_mtime_ns == before["slack.py"]
    assert codegen("slack", "--check").exit_code == 0


async def test_differences_names_missing_and_changed_files(tmp_path: Path) -> None:
    """Catches: a missing folder or file reported as current."""
    generated = await generate_from(FakeAlloy(), "slack")
    assert differences(tmp_path / "nowhere", generated) == sorted(generated.files)
    write(tmp_path / "b", generated)
    (tmp_path / "b" / "py.typed").unlink()
    assert differences(tmp_path / "b", generated) == ["py.typed"]


_TEXT = st.text(max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_TYPES = st.sampled_from(
    ["string", "integer", "number", "boolean", "null", "array", "object", "file"]
)
_SCHEMA = st.recursive(
    st.fixed_dictionaries({}, optional={"type": _TYPES | st.lists(_TYPES, max_size=3)})
    | st.fixed_dictionaries({"enum": st.lists(_JSON, max_size=4)})
    | st.fixed_dictionaries({"const": _JSON})
    | st.fixed_dictionaries({"$ref": st.sampled_from(["#", "#/properties/a", "#/nope", "x.json"])})
    | _JSON,
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "type": _TYPES | st.lists(_TYPES, max_size=3),
            "properties": st.dictionaries(_TEXT, inner, max_size=4),
            "required": st.lists(_TEXT, max_size=3) | _JSON,
            "additionalProperties": st.booleans() | inner,
            "items": inner | st.lists(inner, max_size=2),
            "anyOf": st.lists(inner, max_size=3),
            "allOf": st.lists(inner, max_size=3),
            "nullable": st.booleans(),
            "description": _TEXT,
        },
    ),
    max_leaves=12,
)


_PACKAGES = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_SCHEMA,
    query=st.dictionaries(_TEXT, _SCHEMA, max_size=3),
    ids=st.lists(_TEXT, min_size=1, max_size=3),
    connector=_TEXT,
)
def test_any_schema_gives_a_module_that_imports(
    body: Any, query: dict[str, Any], ids: list[str], connector: str
) -> None:
    """Catches: a crash on a schema the generator cannot express (a bad ``$ref``, a type it
    does not know, ``required`` that is not a list, an enum of objects, a cycle), and source
    that does not compile or import: a key Python cannot spell as a field, a name that shadows
    a type the module uses, a docstring broken by quotes or backslashes in a description."""
    actions = [
        structure(
            {
                "id": action_id,
                "description": f'{action_id} """\\',
                "requestBody": body,
                "parameters": [
                    {"name": k, "in": "query", "schema": v, "description": k}
                    for k, v in query.items()
                ]
                + [{"name": "p", "in": "path", "required": True}],
            },
            Action,
        )
        for action_id in ids
    ]
    generated = generate({connector: actions}, api_version="2025-09")
    package = f"fuzzed_{next(_PACKAGES)}"
    with tempfile.TemporaryDirectory() as root:
        write(Path(root) / package, generated)
        sys.path.insert(0, root)
        try:
            importlib.import_module(package)  # the package imports every module
        finally:
            sys.path.remove(root)
            for name in [m for m in sys.modules if m.split(".")[0] == package]:
                del sys.modules[name]
