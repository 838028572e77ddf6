"""A read-only projection of ExportTraceServiceRequest: the fields the mapping reads, parsed by protobuf in C.

Built at import from opentelemetry-proto's own descriptors (names, numbers and types are the package's,
nothing is typed by hand), with two changes that the protobuf wire format allows:
- only the fields the mapping reads are declared (a resource's attributes; a span's name, kind, times,
  attributes and status code); the parser skips the rest (ids, events, links, scopes) in C;
- a repeated KeyValue (`key` = 1, `value` = 2) is declared as map<string, bytes>: a map entry has that
  very layout, so upb files every attribute into a hash table, `attributes.get(key)` finds one without a
  Python loop over all of them, and each value stays the serialized AnyValue (hashable: the mapping
  memoizes on it) until `value()` decodes it with opentelemetry-proto's AnyValue.

A map keeps the last of duplicate keys, so `len(attributes)` counts distinct keys. Proto3 rules still
hold for what is declared (UTF-8 strings, well-formed nesting), so a malformed body is refused as by
the full message; a field the receiver never reads is not inspected.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
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
        if field.type_name == _KEY_VALUE:  # repeated KeyValue -> map<string, bytes>
            entry = message.nested_type.add(name="AttributesEntry")
            entry.options.map_entry = True
            for number, (name, kind) in enumerate((("key", field.TYPE_STRING), ("value", field.TYPE_BYTES)), 1):
                entry.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
            field.type_name = f".{PACKAGE}.{original.name}.AttributesEntry"
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


def value(raw: Any) -> Any:
    """A span attribute's serialized AnyValue as the Python scalar it holds, else None (arrays too).

    Empty and zero values are None too: no rule of the mapping needs them (gRPC's OK, code 0, maps as
    "no code" does). Values that are already Python (the JSON path's) pass through.
    """
    if not isinstance(raw, bytes):
        return raw
    any_value = AnyValue.FromString(raw)
    kind = any_value.WhichOneof("value")
    return (getattr(any_value, kind) or None) if kind in _SCALARS else None


def resource_value(raw: Any) -> Any:
    """A resource attribute's serialized AnyValue as the scalar it holds, empty ones included; an array gives
    its first element (host.ip is a list). None when there is no scalar. Python values pass through."""
    if not isinstance(raw, bytes):
        return raw
    any_value = AnyValue.FromString(raw)
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        items = any_value.array_value.values
        any_value, kind = (items[0], items[0].WhichOneof("value")) if items else (any_value, None)
    return getattr(any_value, kind) if kind in _SCALARS else None
