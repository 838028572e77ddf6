"""The svcpulse event contract, v1: the wire format every emitter follows (see docs/contract.md).

Standard library only, so collectors, the loader, the API and emitters' test suites can import it.
One JSON object per Kafka message, UTF-8, timestamps in Unix epoch milliseconds. Unknown extra
fields are dropped (not an error); a missing required field, a wrong type, a value out of range, a
name outside its grammar or a time outside the plausibility window is a `Rejection` naming the
field, what was expected and what was got. Every bound is one the tables can store on both engines
(ClickHouse 18.16 and current), so a valid event is always insertable.
Evolution rule: v1 changes only by adding optional fields (`Field(required=False, default=...)`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

CONTRACT_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024  # larger messages are rejected before parsing
# A dead letter keeps the original bytes up to this much (a Kafka message is 1 MiB at most by default,
# and base64 grows bytes by a third); longer originals are cut, and the reason says so.
MAX_DEAD_LETTER_PAYLOAD = 512 * 1024
MAX_DLQ_MESSAGE_BYTES = 1024 * 1024
MAX_STRING = 1024  # default cap on string fields (a cgroup path or URL template fits easily)
# The tables' `ts` is a DateTime (UInt32 seconds): it ends at 2106-02-07T06:28:15Z on both engines.
MAX_TS_MS = (2**32 - 1) * 1000 + 999

Event = dict[str, Any]
TimeWindow = tuple[int, int]  # (earliest, latest) ts_ms accepted, both inclusive


class Grammar(NamedTuple):
    """What a name field may hold: a regular expression (matched whole) and its description."""

    pattern: str
    doc: str


# Service and instance names are ASCII without spaces or control characters, so a name reads the same
# in a URL, a log line, a balancer's config and the console (docs/contract.md, "Names").
SERVICE_NAME = Grammar(r"[A-Za-z0-9_][A-Za-z0-9_.:/@-]*",
                       "a service name: ASCII letters, digits and _ . : / @ -, not starting with . : / @ -")
INSTANCE_NAME = Grammar(r"[A-Za-z0-9_.:/\[\]%@-]+",
                        "an instance address: ASCII letters, digits and _ . : / [ ] % @ - (host:port, [v6]:port)")
# Interfaces are methods or route templates ("GET /items/{id}"): any text without control characters
# (C0, DEL, C1) or invisible format characters (zero-width, bidi overrides, BOM) that make names look alike.
_INVISIBLE = "\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
INTERFACE_NAME = Grammar(f"[^{_INVISIBLE}]+",
                         "a method or route template without control or invisible format characters")


class Rejection(ValueError):
    """Why a message is not a valid event: the reason goes to the dead-letter topic verbatim."""

    def __init__(self, reason: str, field: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class Field:
    name: str
    type: type  # int, float or str
    doc: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_len: int = MAX_STRING
    required: bool = True
    default: Any = None
    grammar: Grammar | None = None  # name fields only
    empty_ok: bool = False  # with a grammar: "" (unknown) is accepted too


def _common_head() -> tuple[Field, ...]:
    return (
        Field("v", int, "contract version", choices=(CONTRACT_VERSION,)),
        Field("ts_ms", int, "event time, Unix epoch milliseconds (the loader also requires it within its "
              "plausibility window around now)", minimum=1, maximum=MAX_TS_MS),
    )


# Workload names (collectors/workload.py, collectors/k8s.py) and their kinds: printable text, and an open
# set of lowercase kinds (host, unit, scope, container, pod, deployment, statefulset, daemonset, ...).
WORKLOAD_NAME = Grammar(INTERFACE_NAME.pattern, "a workload name without control or invisible format characters")
WORKLOAD_KIND = Grammar(r"[a-z][a-z0-9_-]*", "a lowercase kind: letters, digits, _ and -, starting with a letter")


def _workload_fields() -> tuple[Field, ...]:
    """Optional, after `cgroup` in every kind: what the cgroup names, as operators name it ("" = not named;
    the loader then derives it from the cgroup path)."""
    return (
        Field("workload", str, 'workload the cgroup belongs to: "shop-cart.service", "docker:4f9a1c5e2b7d", '
              '"shop/checkout" ("" = unknown)', max_len=255, grammar=WORKLOAD_NAME, empty_ok=True, required=False,
              default=""),
        Field("workload_kind", str, 'what the workload is: host, unit, scope, container, pod, deployment, '
              'statefulset, daemonset, job, cronjob, cgroup ("" = unknown)', max_len=32, grammar=WORKLOAD_KIND,
              empty_ok=True, required=False, default=""),
    )


_PORT = {"minimum": 0, "maximum": 65535}
_COUNT = {"minimum": 0, "maximum": 2**63 - 1}

TCP_FIELDS: tuple[Field, ...] = (
    *_common_head(),
    Field("host", str, "node that observed the connection", max_len=255),
    Field("pid", int, "process id, cached in process context", minimum=0, maximum=2**32 - 1),
    Field("comm", str, "process name", max_len=64),
    Field("cgroup", str, 'cgroup v2 path of the process ("" if unknown)', max_len=4096),
    *_workload_fields(),
    Field("family", int, "address family", choices=(4, 6)),
    Field("laddr", str, "local address", max_len=64),
    Field("lport", int, "local port", **_PORT),
    Field("raddr", str, "remote address", max_len=64),
    Field("rport", int, "remote port", **_PORT),
    Field("role", str, "client = active open, server = passive open", choices=("client", "server", "")),
    Field("tx_bytes", int, "bytes acked over the lifetime", **_COUNT),
    Field("rx_bytes", int, "bytes received over the lifetime", **_COUNT),
    Field("duration_ms", float, "open to close", minimum=0),
    # Connection health (optional: emitters without it leave outcome "" = unknown).
    Field("outcome", str, "how it ended: ok, refused (RST to the SYN), timeout (SYN never answered, or "
          "ETIMEDOUT later), unreachable (ICMP), reset (RST from the peer), aborted (RST from us)",
          choices=("ok", "refused", "timeout", "unreachable", "reset", "aborted", ""), required=False, default=""),
    Field("connect_ms", float, "handshake time, SYN_SENT to ESTABLISHED (client side; 0 = none seen)",
          minimum=0, required=False, default=0.0),
    Field("retransmits", int, "segments retransmitted over the lifetime (SYNs included)", **_COUNT,
          required=False, default=0),
    Field("srtt_us", int, "smoothed RTT at close, microseconds (0 = no sample)", minimum=0, maximum=2**32 - 1,
          required=False, default=0),
    Field("resets_in", int, "RSTs received", **_COUNT, required=False, default=0),
    Field("resets_out", int, "RSTs sent", **_COUNT, required=False, default=0),
)

RPC_FIELDS: tuple[Field, ...] = (
    *_common_head(),
    Field("caller", str, 'calling service ("" if unknown)', max_len=255, grammar=SERVICE_NAME, empty_ok=True),
    Field("callee", str, "called service", max_len=255, grammar=SERVICE_NAME),
    Field("interface", str, "method or route template, never a raw URL with ids", max_len=512,
          grammar=INTERFACE_NAME),
    Field("instance", str, 'callee instance "host:port" ("" if unknown)', max_len=255, grammar=INSTANCE_NAME,
          empty_ok=True),
    Field("side", str, "who measured the call", choices=("client", "server")),
    Field("latency_ms", float, "call latency", minimum=0),
    Field("status", str, "outcome", choices=("ok", "error", "timeout")),
    Field("code", str, 'protocol code ("200", "503", "UNAVAILABLE")', max_len=64),
    Field("version", str, 'callee instance version label ("" if unknown)', max_len=128),
    Field("host", str, "node where the call was measured", max_len=255),
    Field("cgroup", str, "cgroup v2 path where the call was measured", max_len=4096),
    *_workload_fields(),
)

LOAD_FIELDS: tuple[Field, ...] = (
    *_common_head(),
    Field("host", str, "node", max_len=255),
    Field("cgroup", str, 'cgroup v2 path ("" = the whole host)', max_len=4096),
    *_workload_fields(),
    Field("instance", str, 'instance label "host:port" (may be "")', max_len=255, grammar=INSTANCE_NAME,
          empty_ok=True),
    Field("cpu_cores", float, "CPU used, in cores", minimum=0),
    Field("cpu_limit_cores", float, "CPU limit in cores, 0 = none", minimum=0),
    Field("mem_bytes", int, "memory in use", **_COUNT),
    Field("mem_limit_bytes", int, "memory limit, 0 = none", **_COUNT),
)

DLQ_FIELDS: tuple[Field, ...] = (
    *_common_head(),
    Field("reason", str, "why the message was rejected", max_len=4096),
    Field("topic", str, "source topic", max_len=255),
    Field("partition", int, "source partition", minimum=0, maximum=2**31 - 1),
    Field("offset", int, "source offset", minimum=-1, maximum=2**63 - 1),
    Field("payload", str, "the original message bytes, as text or base64", max_len=MAX_DLQ_MESSAGE_BYTES),
    Field("encoding", str, "how payload holds the bytes", choices=("utf-8", "base64")),
)

SCHEMAS: dict[str, tuple[Field, ...]] = {
    "tcp": TCP_FIELDS,
    "rpc": RPC_FIELDS,
    "load": LOAD_FIELDS,
    "dlq": DLQ_FIELDS,
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", dict: "object", list: "array"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(field: Field, value: Any) -> Any:
    """The field's value, normalised (ints accepted for floats), or a Rejection."""
    kind = field.type
    if isinstance(value, bool) or not isinstance(value, (float, int) if kind is float else kind):
        expected = {int: "integer", float: "number", str: "string"}[kind]
        raise Rejection(f"field '{field.name}': expected {expected}, got {_type_name(value)}", field.name)
    if kind is float:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise Rejection(f"field '{field.name}': expected a finite number, got {value}", field.name)
    if field.choices and value not in field.choices:
        allowed = ", ".join(repr(c) for c in field.choices)
        raise Rejection(f"field '{field.name}': expected one of {allowed}, got {_preview(value)}", field.name)
    if kind is str:
        if len(value) > field.max_len:
            raise Rejection(
                f"field '{field.name}': expected at most {field.max_len} characters, got {len(value)}",
                field.name,
            )
        if field.grammar is not None and not _matcher(field)(value):
            empty = " (or empty)" if field.empty_ok else ""
            raise Rejection(f"field '{field.name}': expected {field.grammar.doc}{empty}, got {_preview(value)}",
                            field.name)
    elif (field.minimum is not None and value < field.minimum) or (
        field.maximum is not None and value > field.maximum
    ):
        raise Rejection(
            f"field '{field.name}': expected {field.minimum}..{field.maximum}, got {_preview(value)}", field.name
        )
    return value


def full_pattern(field: Field) -> str:
    """The regular expression a name field's whole value must match ("" included when empty_ok)."""
    assert field.grammar is not None
    return f"(?:{field.grammar.pattern})?" if field.empty_ok else f"(?:{field.grammar.pattern})"


def _matcher(field: Field) -> Callable[[str], Any]:
    return re.compile(full_pattern(field)).fullmatch


def _fast_plan(fields: tuple[Field, ...]) -> tuple[tuple[Any, ...], ...]:
    """Per field: (name, exact type, low, high, choices, max length, grammar matcher, field), for
    validate's fast path."""
    plan = []
    for field in fields:
        low = -math.inf if field.minimum is None else field.minimum
        high = sys.float_info.max if field.maximum is None else field.maximum  # rejects inf, NaN fails both
        matches = _matcher(field) if field.grammar is not None else None
        plan.append((field.name, field.type, low, high, frozenset(field.choices) or None, field.max_len, matches,
                     field))
    return tuple(plan)


_PLANS = {kind: _fast_plan(fields) for kind, fields in SCHEMAS.items()}
_MISSING = object()


def validate(kind: str, obj: Any, window: TimeWindow | None = None) -> Event:
    """A clean event holding exactly the contract's fields of `kind`, or a Rejection.

    `window` (earliest, latest) bounds ts_ms further: the loader passes its plausibility window around
    now (plausible_window). The loop accepts well-formed values inline (the loader validates ~100k
    events/s); anything it does not accept goes to _check, which finds the precise reason.
    """
    plan = _PLANS.get(kind)
    if plan is None:
        raise Rejection(f"unknown event kind '{kind}' (expected one of {', '.join(SCHEMAS)})")
    if not isinstance(obj, dict):
        raise Rejection(f"expected a JSON object, got {_type_name(obj)}")
    event: Event = {}
    for name, kind_type, low, high, choices, max_len, matches, field in plan:
        value = obj.get(name, _MISSING)
        value_type = type(value)
        if value_type is kind_type:
            if kind_type is str:
                if len(value) <= max_len and (choices is None or value in choices) and (
                        matches is None or matches(value)):
                    event[name] = value
                    continue
            elif low <= value <= high and (choices is None or value in choices):
                event[name] = value
                continue
        elif kind_type is float and value_type is int and low <= value <= high:
            event[name] = float(value)
            continue
        if value is _MISSING:
            if field.required:
                raise Rejection(f"field '{name}': required, missing", name)
            event[name] = field.default
            continue
        event[name] = _check(field, value)  # raises with the reason (or accepts a subclass value)
    if window is not None and not window[0] <= event["ts_ms"] <= window[1]:
        raise Rejection(f"field 'ts_ms': expected {_iso(window[0])}..{_iso(window[1])} (the loader's plausibility "
                        f"window around now), got {event['ts_ms']} = {_iso(event['ts_ms'])}", "ts_ms")
    return event


def plausible_window(now_ms: int, max_age_s: float, max_future_s: float) -> TimeWindow:
    """The ts_ms range a loader accepts at now_ms: max_age_s back to max_future_s ahead."""
    return max(1, now_ms - int(max_age_s * 1000)), min(MAX_TS_MS, now_ms + int(max_future_s * 1000))


def _iso(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stdlib_loads(raw: bytes) -> Any:
    """json.loads held to orjson's rules: strict UTF-8 (json.loads(bytes) also takes UTF-16 and UTF-32), no
    NaN/Infinity, no lone surrogate escapes ("\\ud800" is no UTF-8 text: re-encoding finds it)."""
    obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    if b"\\u" in raw:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode(kind: str, raw: bytes, loads: Callable[[bytes], Any] = _stdlib_loads,
           window: TimeWindow | None = None) -> Event:
    """Parse and validate one message. `loads` may be a faster JSON parser with the same contract (strict
    UTF-8 in, no NaN/Infinity: orjson.loads); the verdict is the same either way, only JSON syntax
    errors are worded by the parser."""
    limit = MAX_DLQ_MESSAGE_BYTES if kind == "dlq" else MAX_MESSAGE_BYTES
    if len(raw) > limit:
        raise Rejection(f"message of {len(raw)} bytes exceeds the {limit}-byte limit")
    try:
        obj = loads(raw)
    except UnicodeDecodeError:
        raise Rejection("message is not valid UTF-8") from None
    except RecursionError:
        raise Rejection("message nests too deeply to parse") from None
    except ValueError as err:  # json.JSONDecodeError and orjson.JSONDecodeError are ValueErrors
        reason = str(err).splitlines()[0][:200]
        if "utf-8" in reason.lower() or "surrogate" in reason.lower():
            raise Rejection("message is not valid UTF-8") from None
        raise Rejection(f"message is not valid JSON: {reason}") from None
    return validate(kind, obj, window)


def _stdlib_dumps(event: Event) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def encode(kind: str, event: Event, dumps: Callable[[Event], bytes] = _stdlib_dumps) -> bytes:
    """Validate and serialise an event to its wire form (compact JSON, UTF-8).

    `dumps` may be a faster serialiser returning UTF-8 JSON bytes (e.g. orjson.dumps)."""
    return dumps(validate(kind, event))


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes, ts_ms: int) -> Event:
    """The dlq event for a rejected message; the original bytes survive exactly (up to 512 KiB), as text
    when they are UTF-8 that JSON carries compactly, else as base64 (never more than 4/3 of the bytes)."""
    if len(raw) > MAX_DEAD_LETTER_PAYLOAD:
        reason = f"{reason} (payload cut to the first {MAX_DEAD_LETTER_PAYLOAD} of {len(raw)} bytes)"
        raw = raw[:MAX_DEAD_LETTER_PAYLOAD]
    payload, encoding = _payload(raw)
    return {
        "v": CONTRACT_VERSION,
        "ts_ms": ts_ms,
        "reason": reason[:4096],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload": payload,
        "encoding": encoding,
    }


def _payload(raw: bytes) -> tuple[str, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and len(json.dumps(text, ensure_ascii=False)) <= len(raw) * 4 // 3 + 8:
        return text, "utf-8"
    return base64.b64encode(raw).decode("ascii"), "base64"  # not UTF-8, or JSON escapes would bloat it


_CUT_NOTE = re.compile(r" \(payload cut to the first \d+ of \d+ bytes\)$")


def cut_note(event: Event) -> str:
    """The " (payload cut to the first N of SIZE bytes)" note of a dead letter whose payload was cut, else ""."""
    note = _CUT_NOTE.search(event["reason"])
    return note.group(0) if note else ""


def rejudged(event: Event, reason: str) -> Event:
    """The dead letter with a new reason, keeping its "payload cut" note (the original size) if it had one."""
    return {**event, "reason": (reason + cut_note(event))[:4096]}


def dead_letter_payload(event: Event) -> bytes:
    """The original message bytes held by a dlq event."""
    if event["encoding"] == "base64":
        return base64.b64decode(event["payload"])
    return event["payload"].encode("utf-8")


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one event kind, for emitters in other languages."""
    properties: dict[str, Any] = {}
    for field in SCHEMAS[kind]:
        spec: dict[str, Any] = {"description": field.doc}
        spec["type"] = {int: "integer", float: "number", str: "string"}[field.type]
        if field.choices:
            spec["enum"] = list(field.choices)
        if field.type is str:
            spec["maxLength"] = field.max_len
            if field.grammar is not None:
                spec["pattern"] = f"^{full_pattern(field)}$"
        else:
            if field.minimum is not None:
                spec["minimum"] = field.minimum
            if field.maximum is not None:
                spec["maximum"] = field.maximum
        if not field.required:
            spec["default"] = field.default
        properties[field.name] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://svcpulse.dev/schema/v{CONTRACT_VERSION}/{kind}.json",
        "title": f"svcpulse {kind} event v{CONTRACT_VERSION}",
        "type": "object",
        "properties": properties,
        "required": [f.name for f in SCHEMAS[kind] if f.required],
        "additionalProperties": True,
    }
