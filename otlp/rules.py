"""What one span says, by the semantic conventions: the rpc event fields of a SERVER or CLIENT span (pure).

    fields = describe(server=True, name=span_name, status_code=2, attrs={...}, resource=resource_of({...}))

`attrs` holds the span's attributes as Python scalars (otlp.projection.value: no empty values), and
only the keys the side reads matter: SERVER_KEYS / CLIENT_KEYS (+ URL_KEYS for a client). The result
depends on nothing else, which is what lets otlp.mapping compute it once per distinct combination.
Both the current and the older attribute names are read (the tuples list them in the order they win).
`interface` is never a raw URL path: a route or template, an RPC method, the HTTP method alone, or the
span name (which OpenTelemetry requires to be low-cardinality). docs/otlp.md has the table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from collectors.rpc.common import grpc_status, http_status
from collectors.rpc.otel import MEASURED  # set by svcpulse's own interceptors on spans of calls they report

INSTANCE = "svcpulse.instance"  # resource attribute: this process's "host:port", used as is
UNKNOWN_SERVICE = "unknown_service"  # what OpenTelemetry SDKs report without service.name
STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
_GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
               "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
               "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")

# Attribute names, current semantic conventions first, older ones after.
HTTP_METHOD = ("http.request.method", "http.method")
HTTP_ROUTE = ("http.route", "url.template")
HTTP_STATUS = ("http.response.status_code", "http.status_code")
GRPC_STATUS = ("rpc.grpc.status_code", "rpc.response.status_code")
URL_KEYS = ("url.full", "http.url")
SCHEME = ("url.scheme", "http.scheme")
# server side: where this instance listens (pairs of address and port attributes)
LOCAL = (("network.local.address", "network.local.port"), ("net.sock.host.addr", "net.sock.host.port"),
         ("net.host.ip", "net.host.port"))
SERVER_NAME = (("server.address", "server.port"), ("net.host.name", "net.host.port"))
# client side: what the client called
PEER = (("server.address", "server.port"), ("net.peer.name", "net.peer.port"),
        ("network.peer.address", "network.peer.port"), ("net.sock.peer.addr", "net.sock.peer.port"))
_COMMON = (*HTTP_METHOD, *HTTP_ROUTE, *HTTP_STATUS, *GRPC_STATUS, *SCHEME, "rpc.service", "rpc.method",
           "peer.service", "error.type", MEASURED)
SERVER_KEYS = tuple(dict.fromkeys((*_COMMON, *(k for pair in (*LOCAL, *SERVER_NAME) for k in pair),
                                   "http.host", "url.port")))
CLIENT_KEYS = tuple(dict.fromkeys((*_COMMON, *(k for pair in PEER for k in pair))))  # + URL_KEYS, when needed
RESOURCE_KEYS = ("service.name", "service.version", "host.name", "host.ip", "k8s.node.name", "k8s.pod.ip",
                 "container.id", INSTANCE)


@dataclass(frozen=True)
class Resource:
    service: str
    version: str
    host: str
    cgroup: str
    pod_ip: str
    host_ip: str
    host_name: str
    instance: str


def resource_of(attrs: Mapping[str, Any]) -> Resource:
    return Resource(
        service=_text(attrs.get("service.name")) or UNKNOWN_SERVICE,
        version=_text(attrs.get("service.version")),
        host=_text(attrs.get("k8s.node.name") or attrs.get("host.name")),
        cgroup=_text(attrs.get("container.id")),  # OTel resources carry no cgroup path: the container's id
        pod_ip=_address(attrs.get("k8s.pod.ip")),
        host_ip=_address(attrs.get("host.ip")),
        host_name=_text(attrs.get("host.name")),
        instance=_text(attrs.get(INSTANCE)),
    )


def describe(server: bool, name: str, status_code: int, attrs: Mapping[str, Any],
             resource: Resource) -> dict[str, Any] | None:
    """The event fields of a span other than v, ts_ms and latency_ms; None when an interceptor measured it."""
    if attrs.get(MEASURED):
        return None
    if server:
        caller, callee, instance = _text(attrs.get("peer.service")), resource.service, _server_instance(attrs, resource)
    else:
        caller, (callee, instance) = resource.service, _client_target(attrs)
    status, code = _outcome(attrs, status_code)
    return {"caller": caller, "callee": callee, "interface": _interface(attrs, name), "instance": instance,
            "side": "server" if server else "client", "status": status, "code": code,
            "version": resource.version if server else "", "host": resource.host, "cgroup": resource.cgroup}


def reads_url(server: bool, attrs: Mapping[str, Any]) -> bool:
    """Whether describe() reads URL_KEYS: a client span without a complete peer address and port."""
    return not server and not all(_first_pair(attrs, PEER))


def url_origin(url: Any) -> tuple[str, str]:
    """(scheme, netloc) of a URL: all of it that describe() reads, so spans calling one origin share a result."""
    return urlsplit(_text(url))[:2]


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of `keys` present (the current convention's name before the older ones)."""
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _server_instance(attrs: Mapping[str, Any], resource: Resource) -> str:
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
        url = urlsplit(_text(_first(attrs, URL_KEYS)))
        try:
            url_host, url_port = url.hostname or "", url.port
        except ValueError:  # a port that is no number
            url_host, url_port = url.hostname or "", None
        address = address or _address(url_host)
        port = port or url_port or _scheme_port(attrs, url.scheme)
    callee = _text(attrs.get("peer.service")) or address.strip("[]")
    return callee, _join(address, port)


def _interface(attrs: Mapping[str, Any], name: str) -> str:
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
    return name


def _outcome(attrs: Mapping[str, Any], status_code: int) -> tuple[str, str]:
    """(status, code): the gRPC code, else the HTTP status (4xx is ok), else the span status."""
    grpc_code = _first(attrs, GRPC_STATUS)
    if grpc_code is not None:
        number = _int(grpc_code)
        name = _GRPC_CODES[number] if number is not None and 0 <= number < len(_GRPC_CODES) else _text(grpc_code)
        return grpc_status(name.upper()), name.upper()
    http_code = _int(_first(attrs, HTTP_STATUS))
    if http_code:
        return http_status(http_code), str(http_code)
    if status_code != STATUS_CODE_ERROR:
        return "ok", "OK"
    error = _text(attrs.get("error.type"))
    timed_out = any(word in error.lower() for word in ("timeout", "timedout", "deadline"))
    return ("timeout" if timed_out else "error"), (error or "ERROR")


def _first_pair(attrs: Mapping[str, Any], pairs: tuple[tuple[str, str], ...]) -> tuple[str, int | None]:
    for address_key, port_key in pairs:
        address = _address(attrs.get(address_key))
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
