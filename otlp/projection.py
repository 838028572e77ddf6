"""A read-only projection of ExportTraceServiceRequest: the fields the mapping reads, parsed by protobuf in C.

Built at import from opentelemetry-proto's own descriptors (names, numbers and types are the package's,
nothing is typed by hand), with two changes that the protobuf wire format allows:
- only the fields the mapping reads are declared (a resource's attributes; a span's name, kind, times,
  attributes and status code); the parser skips the rest (ids, events, links, scopes) in C;
- a repeated KeyValue is declared as repeated bytes (both are length-delimited): each attribute stays
  the serialized KeyValue, hashable, so the mapping memoizes on the ones its rules read. READER picks
  those by their key without decoding (`relevant`) and decodes only what a new memo entry needs
  (`decode`, with opentelemetry-proto's KeyValue; a malformed one raises DecodeError there).

`relevant` reads a key where every protobuf encoder writes it (first, with a one-byte length): a KeyValue
written otherwise is kept as relevant and decoded, so nothing the rules read is missed. Proto3 rules
still hold for what is declared (UTF-8 names, well-formed nesting); an attribute the rules never read
is not inspected.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

PACKAGE = "svcpulse.otlp.projection"
# message -> the fields read (everything else is skipped by the parser)
READ: dict[type[Message], tuple[str, ...]] = {
    ExportTraceServiceRequest: ("resource_spans",),
    ResourceSpans: ("resource", "scope_spans"),
    Resource: ("attributes",),
    ScopeSpans: ("spans",),
    Span: ("name", "kind", "start_time_unix_nano", "end_time_unix_nano", "attributes", "status"),
    Status: ("code",),
}
_KEY_VALUE = ".opentelemetry.proto.common.v1.KeyValue"
_SCALARS = frozenset({"string_value", "int_value", "bool_value", "double_value"})


def _message(source: type[Message], read: tuple[str, ...]) -> descriptor_pb2.DescriptorProto:
    original = descriptor_pb2.DescriptorProto()
    source.DESCRIPTOR.CopyToProto(original)
    own_package = f".{source.DESCRIPTOR.file.package}."
    message = descriptor_pb2.DescriptorProto(name=original.name, enum_type=original.enum_type)
    for field in original.field:
        if field.name not in read:
            continue
        field.ClearField("json_name")
        if field.type_name == _KEY_VALUE:  # repeated KeyValue -> repeated bytes (each a serialized KeyValue)
            field.ClearField("type_name")
            field.type = field.TYPE_BYTES
        elif field.type_name:  # a message or enum: its counterpart in the projection
            name = field.type_name
            local = name[len(own_package):] if name.startswith(own_package) else name.rsplit(".", 1)[-1]
            field.type_name = f".{PACKAGE}.{local}"
        message.field.append(field)
    return message


def _build() -> type[Message]:
    file = descriptor_pb2.FileDescriptorProto(name="svcpulse/otlp/projection.proto", package=PACKAGE, syntax="proto3")
    file.message_type.extend(_message(source, read) for source, read in READ.items())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.ExportTraceServiceRequest"))


TraceRequest = _build()  # the projection of ExportTraceServiceRequest


def parse(body: bytes) -> Any:
    """The projection of a binary ExportTraceServiceRequest (google.protobuf DecodeError when malformed)."""
    return TraceRequest.FromString(body)


def _scalar(any_value: AnyValue) -> Any:
    """A span attribute's value as the Python scalar it holds, else None (arrays too).

    Empty and zero values are None too: no rule of the mapping needs them (gRPC's OK, code 0, maps as
    "no code" does)."""
    kind = any_value.WhichOneof("value")
    return (getattr(any_value, kind) or None) if kind in _SCALARS else None


def _resource_scalar(any_value: AnyValue) -> Any:
    """A resource attribute's value: any scalar, empty ones included; an array gives its first element
    (host.ip is a list). None when there is no scalar."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        items = any_value.array_value.values
        any_value, kind = (items[0], items[0].WhichOneof("value")) if items else (any_value, None)
    return getattr(any_value, kind) if kind in _SCALARS else None


class Reader:
    """How otlp.mapping reads this projection's attributes (otlp.json_request.READER reads its own)."""

    @staticmethod
    def wanted(keys: tuple[str, ...]) -> frozenset[bytes]:
        return frozenset(key.encode() for key in keys)

    @staticmethod
    def relevant(attributes: Any, wanted: frozenset[bytes]) -> tuple[bytes, ...]:
        """The serialized KeyValues whose key is wanted (or not written where encoders write it)."""
        try:
            return tuple([kv for kv in attributes if kv[2:2 + kv[1]] in wanted or kv[0] != 10])
        except IndexError:  # a KeyValue of under two bytes: decoded (an empty one is valid: key "")
            return tuple([kv for kv in attributes if len(kv) < 2 or kv[2:2 + kv[1]] in wanted or kv[0] != 10])

    @staticmethod
    def decode(attributes: Any, keys: tuple[str, ...] | frozenset[str], resource: bool = False) -> dict[str, Any]:
        """{key: value} of the attributes with one of `keys` and a value (the last of duplicates wins), decoded."""
        scalar, found = _resource_scalar if resource else _scalar, {}
        for raw in attributes:
            kv = KeyValue.FromString(raw)
            if kv.key in keys and (value := scalar(kv.value)) is not None:
                found[kv.key] = value
        return found


READER = Reader()
