"""OTLP/JSON -> the request shape otlp.projection gives protobuf, parsed by orjson (C) and walked once.

The OTLP/JSON rules (opentelemetry-proto's specification, "JSON Protobuf Encoding"), as protobuf's own
JSON parser (json_format, ignore_unknown_fields) applies them, ~7 times slower: field names in
lowerCamelCase or the proto's snake_case; 64-bit integers as numbers or strings; enums by name or
number (an unknown name reads as 0); null for a default; unknown fields ignored. Trace and span ids (hex
in OTLP/JSON) are not read. Only what the mapping reads is taken and type-checked (a resource's
attributes; each span's name, kind, times, attributes and status code): a wrong type there is a
ValueError saying where; nothing else in the body is inspected.
Attribute values become what otlp.projection makes of protobuf's (int64 strings -> int; a span's: empty,
zero and arrays -> None; a resource's: an array -> its first element), so the mapping sees the same
data from both encodings; tests/otlp/test_mapping_equivalence.py checks that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status as StatusMessage

_SPAN_KINDS = dict(SpanMessage.SpanKind.items())
_STATUS_CODES = dict(StatusMessage.StatusCode.items())
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class Invalid(ValueError):
    """A field of the wrong type: where it is (built while the walk unwinds) and what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where} {problem}")
        self.where, self.problem = where, problem

    def under(self, outer: str) -> Invalid:
        return Invalid(f"{outer}.{self.where}" if self.where else outer, self.problem)


class Request:
    __slots__ = ("resource_spans",)

    def __init__(self, resource_spans: list[ResourceSpans]) -> None:
        self.resource_spans = resource_spans


class ResourceSpans:
    __slots__ = ("resource", "scope_spans")

    def __init__(self, obj: Any) -> None:
        get = _typed(obj, dict, "", None).get
        resource = _typed(get("resource"), dict, "resource", {})
        try:
            self.resource = Resource(_attributes(resource.get("attributes"), True))
        except Invalid as err:
            raise err.under("resource") from None
        self.scope_spans = _each(_get(get, "scopeSpans", "scope_spans"), "scopeSpans", ScopeSpans)


class Resource:
    __slots__ = ("attributes",)

    def __init__(self, attributes: list[tuple[str, Any]]) -> None:
        self.attributes = attributes


class ScopeSpans:
    __slots__ = ("spans",)

    def __init__(self, obj: Any) -> None:
        self.spans = _each(_typed(obj, dict, "", None).get("spans"), "spans", Span)


class Status:
    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_STATUS = {code: Status(code) for code in _STATUS_CODES.values()}


class Span:
    __slots__ = ("attributes", "end_time_unix_nano", "kind", "name", "start_time_unix_nano", "status")

    def __init__(self, obj: Any) -> None:
        get = _typed(obj, dict, "", None).get
        self.name = _typed(get("name"), str, "name", "")
        self.kind = _enum(get("kind"), _SPAN_KINDS, "kind")
        self.start_time_unix_nano = _integer(_get(get, "startTimeUnixNano", "start_time_unix_nano"), _UINT64,
                                             "startTimeUnixNano")
        self.end_time_unix_nano = _integer(_get(get, "endTimeUnixNano", "end_time_unix_nano"), _UINT64,
                                           "endTimeUnixNano")
        self.attributes = _attributes(get("attributes"), False)
        code = _enum(_typed(get("status"), dict, "status", {}).get("code"), _STATUS_CODES, "status.code")
        self.status = _STATUS.get(code) or Status(code)


def parse(body: bytes) -> Request:
    """The request's projection, or ValueError (orjson.JSONDecodeError, Invalid) saying what is wrong."""
    document = _typed(orjson.loads(body), dict, "the body", None)
    return Request(_each(_get(document.get, "resourceSpans", "resource_spans"), "resourceSpans", ResourceSpans))


def _each(items: Any, where: str, build: Callable[[Any], Any]) -> list[Any]:
    built = []
    for n, item in enumerate(_list(items, where)):
        try:
            built.append(build(item))
        except Invalid as err:
            raise err.under(f"{where}[{n}]") from None
    return built


def _attributes(items: Any, resource: bool) -> list[tuple[str, Any]]:
    """KeyValue list -> [(key, scalar or None)], duplicates kept (READER.decode: the last with a value wins)."""
    attributes = []
    for n, item in enumerate(_list(items, "attributes")):
        try:
            get = _typed(item, dict, "", None).get
            attributes.append((_typed(get("key"), str, "key", ""), _scalar(get("value"), resource)))
        except Invalid as err:
            raise err.under(f"attributes[{n}]") from None
    return attributes


class Reader:
    """How otlp.mapping reads this module's attributes, as otlp.projection.READER reads protobuf's."""

    @staticmethod
    def wanted(keys: tuple[str, ...]) -> frozenset[str]:
        return frozenset(keys)

    @staticmethod
    def relevant(attributes: list[tuple[str, Any]], wanted: frozenset[str]) -> tuple[tuple[str, Any], ...]:
        return tuple([pair for pair in attributes if pair[0] in wanted])

    @staticmethod
    def decode(attributes: Any, keys: tuple[str, ...] | frozenset[str], resource: bool = False) -> dict[str, Any]:
        """{key: value} of the attributes with one of `keys` and a value (the last of duplicates wins)."""
        return {key: value for key, value in attributes if key in keys and value is not None}


READER = Reader()


def _scalar(any_value: Any, resource: bool, nested: bool = False) -> Any:
    """An AnyValue object as otlp.projection reads the protobuf one: for a span attribute (value) a truthy
    scalar or None; for a resource attribute (resource_value) any scalar, an array's first element."""
    if any_value is None:
        return None
    found = None
    for name, item in _typed(any_value, dict, "value", None).items():
        read = _VALUES.get(name)
        if read is not None and item is not None:
            found = read(item, f"value.{name}", resource and not nested)
    return found if resource else (found or None)


def _first(array: Any, where: str, unwrap: bool) -> Any:
    values = _list(_typed(array, dict, where, None).get("values"), f"{where}.values")
    return _scalar(values[0], True, nested=True) if unwrap and values else None


def _double(item: Any, where: str, top: bool) -> float:
    if type(item) in (int, float):
        return float(item)
    if item in _FLOATS:
        return _FLOATS[item]
    try:
        return float(_typed(item, str, where, None))
    except ValueError:
        raise Invalid(where, f"must be a number, not {item[:40]!r}") from None


_VALUES: dict[str, Callable[[Any, str, bool], Any]] = {}
for _camel, _snake, _read in (
        ("stringValue", "string_value", lambda item, where, top: _typed(item, str, where, None)),
        ("intValue", "int_value", lambda item, where, top: _integer(item, _INT64, where)),
        ("boolValue", "bool_value", lambda item, where, top: _typed(item, bool, where, None)),
        ("doubleValue", "double_value", _double),
        ("arrayValue", "array_value", _first),
        ("kvlistValue", "kvlist_value", lambda item, where, top: None),  # no scalar: read as absent
        ("bytesValue", "bytes_value", lambda item, where, top: None)):
    _VALUES[_camel] = _VALUES[_snake] = _read


def _get(get: Callable[[str], Any], camel: str, snake: str) -> Any:
    found = get(camel)
    return get(snake) if found is None else found


def _typed(value: Any, kind: type, where: str, default: Any) -> Any:
    """`value` when it is a `kind` (`default` for null, when there is one), else Invalid."""
    if value is None and default is not None:
        return default
    if type(value) is not kind:
        raise Invalid(where, f"must be {_json_type(kind())}, not {_json_type(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    return [] if value is None else _typed(value, list, where, None)


def _integer(value: Any, bounds: tuple[int, int], where: str) -> int:
    """A 64-bit integer given as a JSON number or string ("123", also "1e3" as protobuf reads it)."""
    if value is None:
        return 0
    number: Any = value
    if type(value) is str:
        try:
            number = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise Invalid(where, f"must be an integer, not {value[:40]!r}") from None
    if type(number) is float and number.is_integer():
        number = int(number)
    if type(number) is not int or not bounds[0] <= number <= bounds[1]:
        raise Invalid(where, f"must be an integer in {bounds[0]}..{bounds[1]}, not {str(value)[:40]}")
    return number


def _enum(value: Any, names: dict[str, int], where: str) -> int:
    if value is None:
        return 0
    if type(value) is str:
        return names.get(value, 0)  # an unknown name reads as the default, as json_format does
    return _integer(value, (-(2**31), 2**31 - 1), where)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
