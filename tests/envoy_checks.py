"""Envoy's own message types (PyPI xds-protos) for checking what svcpulse hands Envoy, without an Envoy.

`parse` loads proto3 JSON into the real message, rejecting unknown fields as Envoy does; `violations`
applies the protoc-gen-validate rules Envoy enforces on load (the subset its endpoint, discovery and
bootstrap messages use: numeric bounds, string lengths, required messages, defined enums, required
oneofs), read from the messages' own `validate.rules` annotations.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from validate import validate_pb2

_NUMERIC = {FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_UINT64: "uint64",
            FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_INT64: "int64",
            FieldDescriptor.TYPE_DOUBLE: "double"}
_WRAPPERS = {"google.protobuf.UInt32Value": "uint32", "google.protobuf.UInt64Value": "uint64"}


def parse(document: Any, message: type[Message]) -> Message:
    parsed = message()
    json_format.ParseDict(document, parsed, ignore_unknown_fields=False)
    return parsed


def _bounds(rules: Any, value: float, where: str) -> list[str]:
    problems = []
    for name, broken in (("gte", lambda b: value < b), ("gt", lambda b: value <= b),
                         ("lte", lambda b: value > b), ("lt", lambda b: value >= b)):
        if rules.HasField(name) and broken(getattr(rules, name)):
            problems.append(f"{where} = {value} breaks {name} {getattr(rules, name)}")
    return problems


def _field_violations(field: FieldDescriptor, value: Any, rules: Any, where: str) -> list[str]:
    kind = rules.WhichOneof("type")
    if kind in ("uint32", "uint64", "int32", "int64", "double") and field.type in _NUMERIC:
        return _bounds(getattr(rules, kind), value, where)
    if kind == "string" and rules.string.HasField("min_len") and len(value) < rules.string.min_len:
        return [f"{where} shorter than {rules.string.min_len}"]
    if kind == "enum" and rules.enum.defined_only and field.enum_type.values_by_number.get(value) is None:
        return [f"{where} = {value} is not a defined enum value"]
    if kind == "repeated" and rules.repeated.HasField("min_items") and len(value) < rules.repeated.min_items:
        return [f"{where} has fewer than {rules.repeated.min_items} items"]
    if field.message_type is not None and field.message_type.full_name in _WRAPPERS and kind in _WRAPPERS.values():
        return _bounds(getattr(rules, kind), value.value, where)
    return []


def violations(message: Message, where: str = "") -> list[str]:
    """Every validate rule `message` breaks, recursively (empty = Envoy would accept it)."""
    problems = []
    for oneof in message.DESCRIPTOR.oneofs:
        if oneof.GetOptions().Extensions[validate_pb2.required] and message.WhichOneof(oneof.name) is None:
            problems.append(f"{where}{oneof.name}: one of its fields is required")
    for field in message.DESCRIPTOR.fields:
        name, options = f"{where}{field.name}", field.GetOptions()
        rules = options.Extensions[validate_pb2.rules] if options.HasExtension(validate_pb2.rules) else None
        repeated = field.label == FieldDescriptor.LABEL_REPEATED if hasattr(field, "label") else field.is_repeated
        value = getattr(message, field.name)
        is_message = field.message_type is not None and not field.message_type.GetOptions().map_entry
        required = rules is not None and rules.HasField("message") and rules.message.required
        if required and not message.HasField(field.name):
            problems.append(f"{name} is required")
        if rules is not None and (repeated or not is_message or message.HasField(field.name)):
            problems += _field_violations(field, value, rules, name)
        if is_message and repeated:
            for n, item in enumerate(value):
                problems += violations(item, f"{name}[{n}].")
        elif is_message and message.HasField(field.name) and field.message_type.full_name not in _WRAPPERS:
            problems += violations(value, f"{name}.")
    return problems
