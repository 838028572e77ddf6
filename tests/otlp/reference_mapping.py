"""The oracle for otlp/mapping.py: the receiver's former, straightforward mapping (main at 31344d3), kept as is.

It maps one span at a time from the full ExportTraceServiceRequest, with no memo and no projection;
tests/otlp/test_mapping_equivalence.py checks that the receiver's memoized mapping gives exactly its
events, rejections and skips over a varied corpus. Not imported by the receiver.

    mapped = map_request(ExportTraceServiceRequest, now_ms=..., limits=Limits())
    mapped.events      # rpc events, not yet validated (the sink validates them with the contract)
    mapped.rejected    # reason -> spans refused (bad or implausible data): OTLP's partial_success
    mapped.skipped     # reason -> spans that are no rpc call (INTERNAL, messaging, measured twice)

SERVER spans become side "server", CLIENT spans side "client"; every other kind is skipped. Both the
current and the older semantic-convention attribute names are read (the tuples below list them in the
order they win). `interface` is never a raw URL path: a route or template, an RPC method, the HTTP
method alone, or the span name (which OpenTelemetry requires to be low-cardinality).
No I/O and no clock: the caller passes `now_ms`.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collectors.rpc.common import grpc_status, http_status
from collectors.rpc.otel import MEASURED  # set by svcpulse's own interceptors on spans of calls they report
from pipeline.events import CONTRACT_VERSION, Event

INSTANCE = "svcpulse.instance"  # resource attribute: this process's "host:port", used as is
UNKNOWN_SERVICE = "unknown_service"  # what OpenTelemetry SDKs report without service.name
_NS_PER_MS = 1_000_000
_GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
               "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
               "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
_SCALARS = frozenset({"string_value", "int_value", "bool_value", "double_value"})
_SKIPPED_KINDS = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_UNSPECIFIED: "internal",
                  Span.SPAN_KIND_PRODUCER: "messaging", Span.SPAN_KIND_CONSUMER: "messaging"}

# Attribute names, current semantic conventions first, older ones after.
HTTP_METHOD = ("http.request.method", "http.method")
HTTP_ROUTE = ("http.route", "url.template")
HTTP_STATUS = ("http.response.status_code", "http.status_code")
GRPC_STATUS = ("rpc.grpc.status_code", "rpc.response.status_code")
URL = ("url.full", "http.url")
SCHEME = ("url.scheme", "http.scheme")
# server side: where this instance listens (pairs of address and port attributes)
LOCAL = (("network.local.address", "network.local.port"), ("net.sock.host.addr", "net.sock.host.port"),
         ("net.host.ip", "net.host.port"))
SERVER_NAME = (("server.address", "server.port"), ("net.host.name", "net.host.port"))
# client side: what the client called
PEER = (("server.address", "server.port"), ("net.peer.name", "net.peer.port"),
        ("network.peer.address", "network.peer.port"), ("net.sock.peer.addr", "net.sock.peer.port"))
SPAN_KEYS = frozenset({*HTTP_METHOD, *HTTP_ROUTE, *HTTP_STATUS, *GRPC_STATUS, *URL, *SCHEME,
                       *(k for pair in (*LOCAL, *SERVER_NAME, *PEER) for k in pair),
                       "http.host", "url.port", "rpc.service", "rpc.method", "peer.service", "error.type", MEASURED})
RESOURCE_KEYS = frozenset({"service.name", "service.version", "host.name", "host.ip", "k8s.node.name", "k8s.pod.ip",
                           "container.id", INSTANCE})


@dataclass(frozen=True)
class Limits:
    max_spans: int = 10_000  # per request; the rest are rejected ("span_limit")
    max_attributes: int = 512  # per span and per resource
    max_age_ms: int = 7 * 86_400_000  # a span that started longer ago than this is implausible
    max_ahead_ms: int = 15 * 60_000  # ...and one that ends this far after now (clock skew allowance)


DEFAULT_LIMITS = Limits()


@dataclass
class Mapped:
    events: list[Event] = field(default_factory=list)
    spans: int = 0  # spans in the request
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> the first rejection's details

    def reject(self, reason: str, detail: str, count: int = 1) -> None:
        self.rejected[reason] += count
        self.examples.setdefault(reason, detail)


@dataclass(frozen=True)
class _Resource:
    service: str
    version: str
    host: str
    cgroup: str
    pod_ip: str
    host_ip: str
    host_name: str
    instance: str


def map_request(request: ExportTraceServiceRequest, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> Mapped:
    """Every span of the request mapped, skipped or rejected (at most `limits.max_spans` are looked at)."""
    mapped = Mapped()
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
        resource = _resource(_attributes(attributes, RESOURCE_KEYS))
        for span in spans:
            _map_span(span, resource, now_ms, limits, mapped)
    return mapped


def _map_span(span: Span, resource: _Resource, now_ms: int, limits: Limits, out: Mapped) -> None:
    kind = span.kind
    skipped = _SKIPPED_KINDS.get(kind)
    if skipped is not None:
        out.skipped[skipped] += 1
        return
    attributes = span.attributes
    if len(attributes) > limits.max_attributes:
        out.reject("too_many_attributes", f"span {span.name[:80]!r} has {len(attributes)} attributes, more "
                   f"than {limits.max_attributes}")
        return
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start or end < start:
        out.reject("bad_timestamps", f"span {span.name[:80]!r}: start {start} ns, end {end} ns (a span ends "
                   "after it starts, in Unix epoch nanoseconds)")
        return
    if start // _NS_PER_MS < now_ms - limits.max_age_ms or end // _NS_PER_MS > now_ms + limits.max_ahead_ms:
        out.reject("implausible_time", f"span {span.name[:80]!r}: start {start} ns, end {end} ns is not within "
                   f"{limits.max_age_ms // 3_600_000} h before and {limits.max_ahead_ms // 60_000} min after now")
        return
    attrs = _span_attributes(attributes)
    if attrs.get(MEASURED):
        out.skipped["measured_by_interceptor"] += 1
        return
    server = kind == Span.SPAN_KIND_SERVER
    if server:
        caller, callee, instance = _text(attrs.get("peer.service")), resource.service, _server_instance(attrs, resource)
    else:
        caller, (callee, instance) = resource.service, _client_target(attrs)
    status, code = _outcome(attrs, span)
    out.events.append({
        "v": CONTRACT_VERSION, "ts_ms": end // _NS_PER_MS, "caller": caller, "callee": callee,
        "interface": _interface(attrs, span), "instance": instance, "side": "server" if server else "client",
        "latency_ms": (end - start) / _NS_PER_MS, "status": status, "code": code,
        "version": resource.version if server else "", "host": resource.host, "cgroup": resource.cgroup,
    })


def _attributes(key_values: Iterable[Any], wanted: frozenset[str]) -> dict[str, Any]:
    """The wanted attributes as Python values (an array gives its first element: host.ip is a list)."""
    found: dict[str, Any] = {}
    for kv in key_values:
        key = kv.key
        if key in wanted:
            value = kv.value
            kind = value.WhichOneof("value")
            if kind == "array_value":
                items = value.array_value.values
                value, kind = (items[0], items[0].WhichOneof("value")) if items else (value, None)
            if kind in _SCALARS:
                found[key] = getattr(value, kind)
    return found


def _span_attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    """The wanted span attributes that hold a non-empty scalar (the hot loop: one test per value kind).

    An unset protobuf field reads as "", 0, 0.0 or False, so the first truthy one is the value; empty
    and zero values are dropped, which no rule below needs (gRPC's OK, code 0, maps as "no code" does).
    """
    found: dict[str, Any] = {}
    for kv in key_values:
        key = kv.key
        if key in SPAN_KEYS:
            value = kv.value
            scalar = value.string_value or value.int_value or value.double_value or value.bool_value
            if scalar:
                found[key] = scalar
    return found


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of `keys` present (the current convention's name before the older ones)."""
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _resource(attrs: Mapping[str, Any]) -> _Resource:
    return _Resource(
        service=_text(attrs.get("service.name")) or UNKNOWN_SERVICE,
        version=_text(attrs.get("service.version")),
        host=_text(attrs.get("k8s.node.name") or attrs.get("host.name")),
        cgroup=_text(attrs.get("container.id")),  # OTel resources carry no cgroup path: the container's id
        pod_ip=_address(attrs.get("k8s.pod.ip")),
        host_ip=_address(attrs.get("host.ip")),
        host_name=_text(attrs.get("host.name")),
        instance=_text(attrs.get(INSTANCE)),
    )


def _server_instance(attrs: Mapping[str, Any], resource: _Resource) -> str:
    """Where this instance listens: explicit, else pod, local socket, host address, server name, host name."""
    if resource.instance:
        return resource.instance
    address, port = _first_pair(attrs, LOCAL)
    address = resource.pod_ip or address or resource.host_ip
    named, named_port = _first_pair(attrs, SERVER_NAME)
    port = port or named_port
    if not (address or named) or not port:
        http_host, http_port = _split_host(_text(attrs.get("http.host")))
        named, port = named or http_host, port or http_port
    address = address or named or resource.host_name
    return _join(address, port or _int(attrs.get("url.port")) or _scheme_port(attrs))


def _client_target(attrs: Mapping[str, Any]) -> tuple[str, str]:
    """(callee, instance) of a client span: peer.service or the address called, and that address:port."""
    address, port = _first_pair(attrs, PEER)
    if not address or not port:
        url = urlsplit(_text(_first(attrs, URL)))
        try:
            url_host, url_port = url.hostname or "", url.port
        except ValueError:  # a port that is no number
            url_host, url_port = url.hostname or "", None
        address = address or _address(url_host)
        port = port or url_port or _scheme_port(attrs, url.scheme)
    callee = _text(attrs.get("peer.service")) or address.strip("[]")
    return callee, _join(address, port)


def _interface(attrs: Mapping[str, Any], span: Span) -> str:
    method = attrs.get("rpc.method")
    if method:
        method = _text(method)
        if "/" in method:  # newer conventions: the fully qualified "pkg.Service/Method"
            return "/" + method.lstrip("/")
        service = _text(attrs.get("rpc.service"))
        return f"/{service}/{method}" if service else method
    http_method = _first(attrs, HTTP_METHOD)
    if http_method:
        route = _first(attrs, HTTP_ROUTE)
        return f"{http_method} {route}" if route else _text(http_method)
    return span.name


def _outcome(attrs: Mapping[str, Any], span: Span) -> tuple[str, str]:
    """(status, code): the gRPC code, else the HTTP status (4xx is ok), else the span status."""
    grpc_code = _first(attrs, GRPC_STATUS)
    if grpc_code is not None:
        number = _int(grpc_code)
        name = _GRPC_CODES[number] if number is not None and 0 <= number < len(_GRPC_CODES) else _text(grpc_code)
        return grpc_status(name.upper()), name.upper()
    http_code = _int(_first(attrs, HTTP_STATUS))
    if http_code:
        return http_status(http_code), str(http_code)
    if span.status.code != Status.STATUS_CODE_ERROR:
        return "ok", "OK"
    error = _text(attrs.get("error.type"))
    timed_out = any(word in error.lower() for word in ("timeout", "timedout", "deadline"))
    return ("timeout" if timed_out else "error"), (error or "ERROR")


def _first_pair(attrs: Mapping[str, Any], pairs: tuple[tuple[str, str], ...]) -> tuple[str, int | None]:
    for address_key, port_key in pairs:
        if address_key in attrs:
            address = _address(attrs[address_key])
            if address:
                return address, _int(attrs.get(port_key))
    return "", None


def _split_host(value: str) -> tuple[str, int | None]:
    """"host:port" (or "[v6]:port", or a bare host) from an HTTP Host header value."""
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return _address(host.strip("[]")), int(port)
    return _address(value), None


def _scheme_port(attrs: Mapping[str, Any], scheme: str = "") -> int | None:
    scheme = scheme or _text(_first(attrs, SCHEME))
    return {"http": 80, "https": 443}.get(scheme)


def _address(value: Any) -> str:
    """An address as instances spell it: IPv4-mapped IPv6 unwrapped, other IPv6 in brackets."""
    text = _text(value).strip()
    if ":" not in text:
        return text
    try:
        ip = ipaddress.IPv6Address(text.strip("[]"))
    except ValueError:
        return text
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else f"[{ip.compressed}]"


def _join(address: str, port: int | None) -> str:
    return f"{address}:{port}" if address and port else address


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))
