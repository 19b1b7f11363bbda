"""The one cattrs converter: JSON answers in, models out, and back.

* camelCase keys map to snake_case fields (and snake_case keys are accepted too);
* every shape the sources disagree on is accepted (DESIGN.md section 3, alloy-api.md section 10),
  through per-model aliases, wrappers and normalizers kept in ``_SHAPES`` (``_shapes.py``);
* lenient: a missing or ``null`` optional value becomes None (or an empty tuple), a scalar of
  the wrong type is coerced (``_coerce.py``) when the meaning is clear and dropped otherwise,
  unknown keys (and timestamps that do not parse) land in the model's read-only ``extra``;
* only a payload that cannot be a model at all (not a JSON object, a missing id) raises
  :class:`~alloy_async.errors.InvalidResponseError`, naming the model.

``make_converter(strict=True)`` builds a variant that refuses unknown keys, for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._coerce import _COERCERS, _coercer_for, _is_datetime, _optional_arg, _to_bool, _to_datetime
from ._shapes import _PLAIN, _SHAPES, _camel, _key_map
from .errors import InvalidResponseError
from .models._base import EMPTY
from .models.actions import ExecutionResult

__all__ = [
    "converter",
    "execution_result",
    "make_converter",
    "structure",
    "structure_list",
    "unstructure",
    "unwrap",
]

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Hooks


def _passthrough(value: Any, _: Any) -> Any:
    return value


def _required(tp: Any) -> Callable[[Any, Any], Any]:
    coerce = _COERCERS[tp]
    label = tp.__name__

    def hook(value: Any, _: Any) -> Any:
        result = coerce(value)
        if result is None:
            got = "null" if value is None else type(value).__name__
            raise InvalidResponseError(f"expected {label}, got {got}")
        return result

    return hook


def _optional_factory(tp: Any) -> Callable[[Any, Any], Any]:
    coerce = _coercer_for(_optional_arg(tp))
    assert coerce is not None

    def hook(value: Any, _: Any) -> Any:
        return None if value is None else coerce(value)

    return hook


def _is_lenient_optional(tp: Any) -> bool:
    return _coercer_for(_optional_arg(tp)) is not None


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _make_tuple_factory(conv: Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        item_type = get_args(tp)[0]
        scalar = _coercer_for(item_type)

        if scalar is not None:

            def scalars(value: Any, _: Any) -> tuple[Any, ...]:
                if isinstance(value, list):
                    return tuple(c for c in map(scalar, value) if c is not None)
                # ``category`` is sometimes one string instead of a list.
                single = None if value is None else scalar(value)
                return () if single is None else (single,)

            return scalars

        if attrs.has(item_type):

            def models(value: Any, _: Any) -> tuple[Any, ...]:
                if not isinstance(value, list):
                    return ()
                return tuple(conv.structure(v, item_type) for v in value if v is not None)

            return models

        def anything(value: Any, _: Any) -> tuple[Any, ...]:
            return tuple(value) if isinstance(value, list) else ()

        return anything

    return factory


def _split_keys(
    data: dict[str, Any], key_map: dict[str, str], extra: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``data``'s fields by their canonical key, and the alias each one came by; unknown keys
    go to ``extra``. The canonical spelling beats an alias (whose value is kept in ``extra``)."""
    known: dict[str, Any] = {}
    via_alias: dict[str, str] = {}
    for key, value in data.items():
        target = key_map.get(key)
        if target is None:
            extra[key] = value
        elif key == target:
            if target in via_alias:
                extra[via_alias.pop(target)] = known[target]
            known[target] = value
        elif target in known:
            extra[key] = value
        else:
            known[target] = value
            via_alias[target] = key
    return known, via_alias


def _make_model_factory(conv: Converter, strict: bool) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        shape = _SHAPES.get(cls, _PLAIN)
        fields = attrs.fields(cls)
        names = [f.name for f in fields if f.name != "extra"]
        overrides: dict[str, Any] = {name: override(rename=_camel(name)) for name in names}
        has_extra = len(names) != len(fields)
        if has_extra:
            overrides["extra"] = override(struct_hook=_passthrough)
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=False, **overrides)
        key_map = _key_map(cls)
        dt_keys = tuple(_camel(f.name) for f in fields if _is_datetime(f.type))
        model = cls.__name__
        wrapper, normalize, check = shape.wrapper, shape.normalize, shape.check
        scalar_key = _camel(shape.scalar_field) if shape.scalar_field else None

        def hook(data: Any, _: Any) -> Any:
            if not isinstance(data, dict):
                if scalar_key is not None and isinstance(data, str):
                    data = {scalar_key: data}
                else:
                    raise InvalidResponseError(
                        f"{model}: expected a JSON object, got {type(data).__name__}"
                    )
            extra: dict[str, Any] = {}
            if wrapper is not None and isinstance(data.get(wrapper), dict):
                extra = {k: v for k, v in data.items() if k != wrapper}
                data = data[wrapper]
            if normalize is not None:
                data = normalize(data, extra)
            known, via_alias = _split_keys(data, key_map, extra)
            for key in dt_keys:
                raw = known.get(key)
                if raw is not None:
                    parsed = _to_datetime(raw)
                    if parsed is None:
                        extra[via_alias.get(key, key)] = raw
                    known[key] = parsed
            if strict and extra:
                raise InvalidResponseError(f"{model}: unknown keys {sorted(map(str, extra))}")
            if has_extra:
                known["extra"] = MappingProxyType(extra) if extra else EMPTY
            try:
                obj = inner(known, cls)
                if check is not None:
                    check(obj)
            except InvalidResponseError as exc:
                raise InvalidResponseError(f"{model}: {exc}") from None
            except KeyError as exc:
                raise InvalidResponseError(
                    f"{model}: missing required field {exc.args[0]!r}"
                ) from None
            except Exception as exc:
                raise InvalidResponseError(f"{model}: {exc}") from exc
            return obj

        return hook

    return factory


def _iso(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _make_unstructure_factory(conv: Converter) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any], dict[str, Any]]:
        attrs.resolve_types(cls)
        names = [f.name for f in attrs.fields(cls) if f.name != "extra"]
        overrides: dict[str, Any] = {name: override(rename=_camel(name)) for name in names}
        has_extra = len(names) != len(attrs.fields(cls))
        if has_extra:
            overrides["extra"] = override(omit=True)
        inner = make_dict_unstructure_fn(cls, conv, **overrides)

        def hook(obj: Any) -> dict[str, Any]:
            out = {k: v for k, v in inner(obj).items() if v is not None}
            # Unknown keys go back out as they came in, so a round trip loses nothing.
            if has_extra and obj.extra:
                out.update(obj.extra)
            return out

        return hook

    return factory


def make_converter(*, strict: bool = False) -> Converter:
    """Build a converter with every hook alloy-async needs.

    Args:
        strict: refuse unknown keys (raise :class:`InvalidResponseError`) instead of keeping
            them in ``extra``; for tests that check a fixture matches the models exactly.
    """
    conv = Converter(detailed_validation=False, unstruct_collection_overrides={tuple: list})
    for tp in (str, int, bool):
        conv.register_structure_hook(tp, _required(tp))
    conv.register_structure_hook_factory(_is_lenient_optional, _optional_factory)
    conv.register_structure_hook_factory(_is_homogeneous_tuple, _make_tuple_factory(conv))
    conv.register_structure_hook_factory(attrs.has, _make_model_factory(conv, strict))
    conv.register_unstructure_hook(datetime, _iso)
    conv.register_unstructure_hook(MappingProxyType, dict)
    conv.register_unstructure_hook_factory(attrs.has, _make_unstructure_factory(conv))
    return conv


converter = make_converter()
"""The SDK's one converter (lenient). Build others only with :func:`make_converter`."""


# ---------------------------------------------------------------------------------------------
# What services call


def structure(data: Any, cls: type[T]) -> T:
    """Build a ``cls`` from a decoded JSON answer.

    Raises:
        InvalidResponseError: ``data`` cannot be a ``cls`` (not a JSON object, no id).
    """
    try:
        return converter.structure(data, cls)
    except InvalidResponseError:
        raise
    except Exception as exc:
        raise InvalidResponseError(f"{cls.__name__}: {exc}") from exc


def unwrap(body: Any, *keys: str) -> Any:
    """The object or list under the first of ``keys`` in ``body`` that holds one, else ``body``.

    A scalar under a key means the key is a field, not a wrapper: the upload answer is
    ``{"presignedUrl": {...}}`` in the reference but may be flat, with ``presignedUrl`` a URL.
    """
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, (dict, list)):
                return value
    return body


def structure_list(data: Any, cls: type[T], *keys: str) -> list[T]:
    """Build a list of ``cls`` from a bare list or one wrapped under any of ``keys``.

    ``{"data": [...]}``, ``{"users": [...]}`` and ``[...]`` all work; ``null`` items are
    skipped and a null list is empty. A lone object with the model's keys (the generated
    spec's credential metadata) is taken as a one-item list.

    Raises:
        InvalidResponseError: no list where one was expected, or an item is not a ``cls``.
    """
    items = data
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                items = data[key]
                break
        else:
            if not keys or not any(k in data for k in _key_map(cls)):
                raise InvalidResponseError(
                    f"expected a list of {cls.__name__} under {' or '.join(keys) or 'a list'}"
                )
            return [structure(data, cls)]
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidResponseError(f"expected a list of {cls.__name__}, got {type(items).__name__}")
    return [structure(item, cls) for item in items if item is not None]


_OK_STATUS = frozenset({"success", "succeeded", "successful", "ok", "completed", "done"})
_FAILED_STATUS = frozenset({"failed", "failure", "error", "errored", "fail"})


def _success(body: dict[str, Any], default: bool) -> bool:
    flag = body.get("success")
    if type(flag) is bool:
        return flag
    if flag is not None:
        coerced = _to_bool(flag)
        if coerced is not None:
            return coerced
    status = body.get("status")
    if type(status) is str:
        word = status.lower()
        if word in _OK_STATUS:
            return True
        if word in _FAILED_STATUS:
            return False
    return default


def execution_result(body: Any, *, status_code: int, request_id: str | None) -> ExecutionResult:
    """Build the :class:`ExecutionResult` of one execute call (hot path: no cattrs here).

    ``data`` is the first of ``result``, ``responseData`` and ``data`` present; ``success``
    is the body's ``success`` flag, else its ``status`` word, else whether the HTTP status is
    2xx; ``raw`` is the whole body; the other keys go to ``extra``. A body that is not an
    object (a list, a string) is the payload itself.
    """
    ok = 200 <= status_code < 300
    if type(body) is not dict:
        return ExecutionResult(
            success=ok, data=body, raw=body, status_code=status_code, request_id=request_id
        )
    if "result" in body:
        key: str | None = "result"
    elif "responseData" in body:
        key = "responseData"
    elif "data" in body:
        key = "data"
    else:
        key = None
    used = (key is not None) + ("success" in body)
    return ExecutionResult(
        success=_success(body, ok),
        data=body[key] if key is not None else None,
        raw=body,
        status_code=status_code,
        request_id=request_id,
        extra=EMPTY
        if len(body) == used
        else MappingProxyType({k: v for k, v in body.items() if k != key and k != "success"}),
    )


def unstructure(obj: Any) -> dict[str, Any]:
    """Turn a model back into a camelCase JSON object: None dropped, ``extra`` merged back."""
    result = converter.unstructure(obj)
    if not isinstance(result, dict):
        raise TypeError(f"{type(obj).__name__} is not a model")
    return result
