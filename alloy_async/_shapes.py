"""Per-model shapes for :mod:`alloy_async._convert`: the alternative spellings the sources use.

Field names are snake_case; the wire spells them camelCase (``_camel``), and both are accepted.
``_SHAPES`` adds, per model, the other spellings (aliases), the wrapper key an answer may come
under, a bare-string form, a normalizer that rewrites a payload into the canonical shape, and a
check on the built model (DESIGN.md section 3, alloy-api.md section 10). Plain data and
functions: no cattrs here (only ``_convert.py`` imports it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .models.actions import Action, CatalogAction
from .models.connectors import ActionSummary, Connector, Resource
from .models.credentials import Credential, CredentialCreated, CredentialMetadata
from .models.files import StoredFile, UploadTarget

# What _convert.py uses.
__all__ = ["_PLAIN", "_SHAPES", "_camel", "_key_map"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@attrs.frozen
class _Shape:
    # input key -> field name, for spellings other than the field's camelCase / snake_case
    aliases: Mapping[str, str] = attrs.field(factory=dict)
    # {"<wrapper>": {...}} is unwrapped; the wrapper's sibling keys go to extra
    wrapper: str | None = None
    # a bare string stands for the model with only this field set (resource action lists)
    scalar_field: str | None = None
    # rewrites a payload into the canonical shape; may move keys into extra
    normalize: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    # checks a built model; raises ValueError when it cannot be used
    check: Callable[[Any], None] | None = None


def _normalize_resource(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    # The generated spec sends {resourceId: "orders", name: "Orders"}: there ``name`` is the
    # label and ``resourceId`` is what the quick start calls ``name``.
    if "resourceId" not in data:
        return data
    data = dict(data)
    rid = data.pop("resourceId")
    if "name" in data and "displayName" not in data:
        data["displayName"] = data.pop("name")
    elif "name" in data:
        extra["name"] = data.pop("name")
    data["name"] = rid
    return data


def _names_of_required(items: list[Any], *, default: bool) -> list[str]:
    names = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            required = item.get("required", default)
            if required is True or (required is not False and default):
                names.append(item["name"])
    return names


def _normalize_metadata(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    fields = data.get("requiredFields")
    if isinstance(fields, list):
        if all(isinstance(item, str) for item in fields):
            return data
        # Generated spec: [{name, description, required}]; keep the objects, expose the names.
        extra["requiredFields"] = fields
        return {**data, "requiredFields": _names_of_required(fields, default=True)}
    if fields is not None:
        return data
    props = data.get("properties")
    if isinstance(props, list):  # quick start: [{name, required, type}]
        return {**data, "requiredFields": _names_of_required(props, default=False)}
    schema = data.get("inputSchema")
    required = schema.get("required") if isinstance(schema, dict) else None
    if isinstance(required, list):
        return {**data, "requiredFields": [r for r in required if isinstance(r, str)]}
    return data


def _normalize_catalog(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    # A catalog page keyed by slug only (seed 004): the slug is what gets executed.
    if "actionId" not in data and "id" not in data and "action_id" not in data:
        slug = data.get("slug")
        if isinstance(slug, str):
            return {**data, "actionId": slug}
    return data


def _check_created(obj: Any) -> None:
    if obj.credential_id is None and obj.oauth_url is None:
        raise ValueError("neither credentialId nor oauthUrl in the answer")


_SHAPES: dict[type, _Shape] = {
    Connector: _Shape(aliases={"connectorId": "id", "icon": "icon_url", "category": "categories"}),
    ActionSummary: _Shape(aliases={"actionId": "id", "displayName": "name"}, scalar_field="id"),
    Resource: _Shape(normalize=_normalize_resource),
    Action: _Shape(
        aliases={"actionId": "id", "name": "display_name", "method": "http_method"},
        wrapper="action",
    ),
    Credential: _Shape(),
    CredentialCreated: _Shape(check=_check_created),
    CredentialMetadata: _Shape(
        aliases={"authType": "authentication_type"}, normalize=_normalize_metadata
    ),
    UploadTarget: _Shape(wrapper="presignedUrl"),
    # S3's own listing spells these Key / Size / LastModified.
    StoredFile: _Shape(
        aliases={
            "fileName": "filename",
            "Key": "s3_key",
            "Size": "size",
            "LastModified": "last_modified",
        }
    ),
    CatalogAction: _Shape(
        aliases={"connectorSlug": "connector_id", "id": "action_id"},
        normalize=_normalize_catalog,
    ),
}
_PLAIN = _Shape()


def _key_map(cls: type) -> dict[str, str]:
    """Every accepted input key of ``cls`` -> the camelCase name of its field."""
    keys: dict[str, str] = {}
    for field in attrs.fields(cls):
        if field.name != "extra":
            keys[field.name] = keys[_camel(field.name)] = _camel(field.name)
    for alias, name in _SHAPES.get(cls, _PLAIN).aliases.items():
        keys[alias] = _camel(name)
    return keys
