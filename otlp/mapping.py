"""OTLP spans -> contract v1 rpc events: the receiver's mapping, with what it learns memoized (rules: otlp/rules.py).

    mapper = Mapper(Limits())
    mapped = mapper.map(request, now_ms)  # a request as otlp.projection (protobuf) or otlp.json_request parse it
    mapped.calls      # (Template, ts_ms, latency_ms) per span that became an event
    mapped.events()   # the same as contract events (dicts)
    mapped.rejected   # reason -> spans refused (bad or implausible data): OTLP's partial_success
    mapped.skipped    # reason -> spans that are no rpc call (INTERNAL, messaging, measured twice)

Besides its time and latency, what a span's event says depends only on the span's kind, status code and
name, the values of the attributes the rules read (rules.SERVER_KEYS / CLIENT_KEYS), and its resource.
So the mapper keeps those attributes of each span as they came (serialized KeyValues, for protobuf: the
reader picks them by key, nothing is decoded; pairs for JSON) and keeps, per resource, what
rules.describe made of each combination, already checked by the contract (collectors.encoding.check)
as a Template: a batch of spans of one service costs a lookup per span.
A client span that names its peer only by URL is keyed by the URL's origin too. The memo is bounded
(emptied when full), so hostile variety costs time, not memory. A malformed attribute the rules read
raises protobuf's DecodeError when it is decoded. No I/O and no clock: callers pass now_ms.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import msgspec
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collectors.encoding import check
from otlp import json_request, projection, rules
from pipeline.events import CONTRACT_VERSION, SCHEMAS, Event, Rejection
from pipeline.topics import KEY_FIELD

_NS_PER_MS = 1_000_000
MEMO_ENTRIES = 50_000  # span shapes remembered (a service's spans have a handful); emptied when full
_KEYS = {Span.SPAN_KIND_SERVER: frozenset(rules.SERVER_KEYS), Span.SPAN_KIND_CLIENT: frozenset(rules.CLIENT_KEYS)}
_READERS = (projection.READER, json_request.READER)
_WANTED = {reader: {kind: reader.wanted(tuple(keys)) for kind, keys in _KEYS.items()} for reader in _READERS}
_URL_WANTED = {reader: reader.wanted(rules.URL_KEYS) for reader in _READERS}
_RESOURCE_WANTED = {reader: reader.wanted(rules.RESOURCE_KEYS) for reader in _READERS}
_SKIPPED_KINDS = {Span.SPAN_KIND_PRODUCER: "messaging", Span.SPAN_KIND_CONSUMER: "messaging"}  # others: internal
_RPC = {f.name: f for f in SCHEMAS["rpc"]}
_TS, _LATENCY = _RPC["ts_ms"], _RPC["latency_ms"]
_MEASURED = object()  # the shape of spans an interceptor reported (skipped)
_UNKNOWN = object()


@dataclass(frozen=True)
class Limits:
    max_spans: int = 10_000  # per request; the rest are rejected ("span_limit")
    max_attributes: int = 512  # per span and per resource
    max_age_ms: int = 7 * 86_400_000  # a span that started longer ago than this is implausible
    max_ahead_ms: int = 15 * 60_000  # ...and one that ends this far after now (clock skew allowance)


DEFAULT_LIMITS = Limits()


class Template:
    """The checked event of one span shape; ts_ms and latency_ms are stamped per span."""

    __slots__ = ("fields", "key", "struct")

    def __init__(self, fields: dict[str, Any], struct: msgspec.Struct) -> None:
        self.fields, self.struct = fields, struct
        self.key = getattr(struct, KEY_FIELD["rpc"]).encode()  # the Kafka message key


class _Refused(str):
    """A shape the contract refuses: the reason, for every span of it."""


class _ByUrl:
    """Client spans that name their peer only in the URL: one shape per URL origin."""

    __slots__ = ("args", "origins")

    def __init__(self, *args: Any) -> None:
        self.args, self.origins = args, {}

    def pick(self, attributes: Any, reader: Any) -> Any:
        urls = reader.decode(reader.relevant(attributes, _URL_WANTED[reader]), rules.URL_KEYS)
        url = next((urls[key] for key in rules.URL_KEYS if key in urls), None)
        origin = rules.url_origin(url)
        shape = self.origins.get(origin, _UNKNOWN)
        if shape is _UNKNOWN:
            if len(self.origins) >= MEMO_ENTRIES:
                self.origins.clear()
            server, name, status_code, attrs, resource = self.args
            shape = self.origins[origin] = _shape(server, name, status_code, {**attrs, rules.URL_KEYS[0]: url},
                                                  resource)
        return shape


@dataclass
class Mapped:
    calls: list[tuple[Template, int, float]] = field(default_factory=list)
    spans: int = 0  # spans in the request
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> the first rejection's details

    def reject(self, reason: str, detail: str, count: int = 1) -> None:
        self.rejected[reason] += count
        self.examples.setdefault(reason, detail)

    def events(self) -> list[Event]:
        return [{"v": CONTRACT_VERSION, "ts_ms": ts, **template.fields, "latency_ms": latency}
                for template, ts, latency in self.calls]


class Mapper:
    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._memo: dict[rules.Resource, dict[tuple[Any, ...], Any]] = {}
        self._entries = 0

    def map(self, request: Any, now_ms: int) -> Mapped:
        """Every span of the request mapped, skipped or rejected (at most `limits.max_spans` are looked at)."""
        mapped, limits = Mapped(), self.limits
        reader = json_request.READER if isinstance(request, json_request.Request) else projection.READER
        budget = limits.max_spans
        for resource_spans in request.resource_spans:
            spans = [span for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
            mapped.spans += len(spans)
            attributes = resource_spans.resource.attributes
            if len(attributes) > limits.max_attributes:
                mapped.reject("too_many_attributes", f"a resource has {len(attributes)} attributes, more than "
                              f"{limits.max_attributes}", len(spans))
                continue
            if len(spans) > budget:
                mapped.reject("span_limit", f"the request holds more than {limits.max_spans} spans; send smaller "
                              "batches", len(spans) - budget)
                spans = spans[:budget]
            budget -= len(spans)
            resource = rules.resource_of(reader.decode(reader.relevant(attributes, _RESOURCE_WANTED[reader]),
                                                       rules.RESOURCE_KEYS, resource=True))
            self._map_spans(spans, resource, reader, now_ms, mapped)
        return mapped

    def _map_spans(self, spans: list[Any], resource: rules.Resource, reader: Any, now_ms: int, out: Mapped) -> None:
        """The hot loop: per span, a few field reads, its relevant attributes and one memo lookup; the rest
        happens once per shape."""
        memo, wanted, relevant = self._memo_of(resource), _WANTED[reader], reader.relevant
        max_attributes, calls = self.limits.max_attributes, out.calls
        ts_min, ts_max = _TS.minimum, _TS.maximum  # latency_ms needs no check: 0 <= (end - start) / 10^6 < 2^45
        earliest_ns = (now_ms - self.limits.max_age_ms) * _NS_PER_MS  # start // 10^6 < now - max_age
        latest_ns = (now_ms + self.limits.max_ahead_ms + 1) * _NS_PER_MS  # end // 10^6 > now + max_ahead
        for span in spans:
            kind = span.kind
            keys = wanted.get(kind)
            if keys is None:
                out.skipped[_SKIPPED_KINDS.get(kind, "internal")] += 1
                continue
            attributes = span.attributes
            start, end = span.start_time_unix_nano, span.end_time_unix_nano
            if len(attributes) > max_attributes or not start or end < start or start < earliest_ns or end >= latest_ns:
                self._refuse(span, out)
                continue
            key = (kind, span.status.code, span.name, *relevant(attributes, keys))
            shape = memo.get(key)
            if shape is None:
                shape = self._learn(memo, key, resource, reader)
            if shape.__class__ is _ByUrl:
                shape = shape.pick(attributes, reader)
            if shape.__class__ is Template:
                ts_ms = end // _NS_PER_MS
                if ts_min <= ts_ms <= ts_max:  # type: ignore[operator]
                    calls.append((shape, ts_ms, (end - start) / _NS_PER_MS))
                    continue
                shape = _Refused(f"field 'ts_ms': expected {ts_min}..{ts_max}, got {ts_ms}")
            if shape is _MEASURED:
                out.skipped["measured_by_interceptor"] += 1
            else:
                out.reject("contract", shape)

    def _refuse(self, span: Any, out: Mapped) -> None:
        """The reason a span cannot be an event: too many attributes, or its timestamps."""
        attributes, limits = len(span.attributes), self.limits
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        name = f"span {span.name[:80]!r}"
        if attributes > limits.max_attributes:
            out.reject("too_many_attributes", f"{name} has {attributes} attributes, more than {limits.max_attributes}")
        elif not start or end < start:
            out.reject("bad_timestamps", f"{name}: start {start} ns, end {end} ns (a span ends after it starts, in "
                       "Unix epoch nanoseconds)")
        else:
            out.reject("implausible_time", f"{name}: start {start} ns, end {end} ns is not within "
                       f"{limits.max_age_ms // 3_600_000} h before and {limits.max_ahead_ms // 60_000} min after now")

    def _memo_of(self, resource: rules.Resource) -> dict[tuple[Any, ...], Any]:
        memo = self._memo.get(resource)
        if memo is None:
            self._make_room()
            memo = self._memo[resource] = {}
        return memo

    def _learn(self, memo: dict[tuple[Any, ...], Any], key: tuple[Any, ...], resource: rules.Resource,
               reader: Any) -> Any:
        """What spans of this key become: a Template, a _Refused reason, _MEASURED, or a _ByUrl."""
        kind, status_code, name, *raw = key
        server = kind == Span.SPAN_KIND_SERVER
        attrs = reader.decode(raw, _KEYS[kind])
        if rules.reads_url(server, attrs):
            shape: Any = _ByUrl(server, name, status_code, attrs, resource)
        else:
            shape = _shape(server, name, status_code, attrs, resource)
        self._make_room()
        memo[key] = shape
        return shape

    def _make_room(self) -> None:
        self._entries += 1
        if self._entries > MEMO_ENTRIES:
            self._memo.clear()  # a hostile variety of shapes: start over (a dict being filled is only dropped)
            self._entries = 1


def _shape(server: bool, name: str, status_code: int, attrs: dict[str, Any],
           resource: rules.Resource) -> Any:
    fields = rules.describe(server, name, status_code, attrs, resource)
    if fields is None:
        return _MEASURED
    try:  # checked with the smallest ts_ms and latency_ms the contract allows; each span's are checked in the loop
        return Template(fields, check("rpc", {"v": CONTRACT_VERSION, "ts_ms": _TS.minimum, **fields,
                                               "latency_ms": _LATENCY.minimum}))
    except Rejection as err:
        return _Refused(err.reason)


def map_request(request: Any, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> Mapped:
    """One request mapped by a fresh Mapper (the receiver keeps one Mapper, and what it learnt)."""
    return Mapper(limits).map(request, now_ms)
