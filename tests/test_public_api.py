"""The public surface: every exported name exists, __all__ is sorted, DESIGN names are there."""

from __future__ import annotations

import inspect

import alloy_async
from alloy_async import AlloyClient, models


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it resolves."""
    assert alloy_async.__all__ == sorted(alloy_async.__all__)
    for name in alloy_async.__all__:
        assert getattr(alloy_async, name) is not None


def test_public_names_have_docstrings() -> None:
    """Every exported class and function documents itself."""
    for name in alloy_async.__all__:
        obj = getattr(alloy_async, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name


def test_design_contract_names() -> None:
    """The names DESIGN.md section 2 promises exist with the promised parameters."""
    alloy = AlloyClient("k")
    calls = {
        "users": ["create", "list", "get", "update", "delete", "token"],
        "connectors": ["list", "get", "resources"],
        "actions": ["get", "execute", "paginate", "execute_many", "catalog"],
        "credentials": ["metadata", "create", "list", "delete"],
        "files": ["request_upload", "list", "delete"],
    }
    for service, methods in calls.items():
        for method in methods:
            fn = getattr(getattr(alloy, service), method)
            params = inspect.signature(fn).parameters
            # execute_many takes jobs, not one request: no per-request extras
            assert {"extra_headers"} <= set(params) or method == "execute_many", (
                service,
                method,
            )
    init = inspect.signature(AlloyClient).parameters
    assert list(init)[:1] == ["api_key"]
    assert {
        "base_url",
        "api_version",
        "user_id",
        "timeout",
        "max_retries",
        "retry",
        "transport",
        "max_connections",
        "default_headers",
    } <= set(init)
    execute = inspect.signature(alloy.actions.execute).parameters
    assert {
        "credential_id",
        "user_id",
        "request_body",
        "query_parameters",
        "path_params",
        "additional_headers",
    } <= set(execute)
    many = inspect.signature(alloy.actions.execute_many).parameters
    assert {
        "concurrency",
        "per_user",
        "per_connector",
        "rate",
        "ordered",
        "deadline",
        "stop_when",
        "checkpoint",
    } <= set(many)
    fields = {
        models.User: ["user_id", "username", "full_name"],
        models.Connector: ["id", "name", "icon_url", "categories", "action_count"],
        models.Resource: ["name", "display_name", "description", "actions"],
        models.ActionSummary: ["id", "name", "description"],
        models.Action: [
            "id",
            "display_name",
            "description",
            "http_method",
            "path",
            "parameters",
            "request_body",
            "sample_success_response",
        ],
        models.ExecutionResult: ["success", "data", "raw", "status_code", "request_id"],
        models.Credential: [
            "credential_id",
            "name",
            "type",
            "connector_id",
            "user_id",
            "created_at",
            "updated_at",
        ],
        models.CredentialMetadata: [
            "authentication_type",
            "auth_config_required",
            "input_schema",
            "required_fields",
        ],
        models.CatalogAction: [
            "connector_id",
            "action_id",
            "slug",
            "name",
            "description",
            "resource",
            "is_connected",
        ],
        models.ExecuteJob: [
            "connector_id",
            "action_id",
            "credential_id",
            "user_id",
            "request_body",
            "query_parameters",
            "path_params",
            "additional_headers",
            "key",
        ],
        models.JobOutcome: ["job", "ok", "result", "error", "attempts", "elapsed"],
    }
    import attrs

    for cls, names in fields.items():
        have = [f.name for f in attrs.fields(cls)]
        assert set(names) <= set(have), cls


def test_transport_authors_find_everything_in_one_place() -> None:
    """Issue 11 item 8: what a transport author needs is importable from transports."""
    from alloy_async import transports

    for name in ("Transport", "Request", "Response", "Secret", "FakeTransport", "AiohttpTransport"):
        assert getattr(transports, name) is not None, name
    assert transports.Request is alloy_async.Request
    # A request's ``auth`` is a Secret: a transport author reveals it from the public path.
    request = alloy_async.AlloyClient(api_key="sk_x").actions._requester.build("GET", "/x")
    assert isinstance(request.auth, transports.Secret)
    assert request.auth.reveal() == "Bearer sk_x"
