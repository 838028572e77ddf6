"""The raw event of collectors/tcplife.bpf.c -> a contract `tcp` event, and how a connection ended.

One layout, written once: the decoder is generated from the `struct event` text of the BPF source
(field names, types, order, natural alignment), and `check_layout` compares every field's offset and
size with clang's own layout (bcc's ctypes view of the struct) when the program loads. So the C and
Python sides cannot drift apart silently, as they could when only the total size was compared.
Pure and kernel-free apart from `check_layout`'s argument; imported without bcc.
`decode_batch` turns a whole ring-buffer read into events at once (the collector's hot path).
"""

from __future__ import annotations

import errno
import functools
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from pipeline import events

BPF_SOURCE = Path(__file__).with_name("tcplife.bpf.c")
ROLES = ("", "client", "server")
_TYPES = {"u8": "B", "u16": "H", "u32": "I", "s32": "i", "u64": "Q", "char": "s"}
_STRUCT = re.compile(r"struct event \{(.*?)\n\};", re.DOTALL)
_MEMBER = re.compile(r"^\s*(\w+)\s+(\w+)(?:\[(\d+)\])?;")

# errno values that end a connection before its handshake completes (include/uapi/asm-generic/errno.h)
UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})
RESET_BY_PEER = frozenset({errno.ECONNRESET, errno.EPIPE})
OUTCOMES = ("ok", "refused", "timeout", "unreachable", "reset", "aborted")


class LayoutError(RuntimeError):
    """The Python view of struct event disagrees with clang's: decoding would give wrong figures."""


@dataclass(frozen=True)
class Layout:
    """struct event as Python sees it: a struct.Struct and the names of its non-padding fields."""

    format: struct.Struct
    names: tuple[str, ...]
    offsets: dict[str, tuple[int, int]]  # name -> (offset, size), padding excluded


def parse_layout(source: str) -> Layout:
    """The decoder of `struct event` in `source`, with C's natural alignment (x86-64 and arm64)."""
    body = _STRUCT.search(source)
    if body is None:
        raise LayoutError("struct event not found in the BPF source")
    fmt, names, offsets, at, widest = "<", [], {}, 0, 1
    for line in body[1].splitlines():
        member = _MEMBER.match(line)
        if not member:
            continue
        ctype, name, count = member[1], member[2], int(member[3] or 1)
        if ctype not in _TYPES:
            raise LayoutError(f"struct event: unsupported type {ctype} of {name}")
        code = _TYPES[ctype]
        align = 1 if code in "sB" else struct.calcsize(code)
        size = count if code in "sB" else struct.calcsize(code) * count
        fmt += "x" * (-at % align)
        at += -at % align
        widest = max(widest, align)
        if name == "pad":
            fmt += f"{size}x"
        else:
            fmt += f"{count}s" if code in "sB" and count > 1 else code * count
            names.append(name)
            offsets[name] = (at, size)
        at += size
    fmt += "x" * (-at % widest)
    return Layout(struct.Struct(fmt), tuple(names), offsets)


LAYOUT = parse_layout(BPF_SOURCE.read_text())


def check_layout(ctypes_struct: Any, layout: Layout = LAYOUT) -> None:
    """Raise LayoutError unless every field has the same offset and size in clang's layout."""
    import ctypes

    if ctypes.sizeof(ctypes_struct) != layout.format.size:
        raise LayoutError(f"struct event is {ctypes.sizeof(ctypes_struct)} bytes in C, "
                          f"{layout.format.size} in Python")
    for name, (offset, size) in layout.offsets.items():
        member = getattr(ctypes_struct, name, None)
        if member is None or (member.offset, member.size) != (offset, size):
            found = (member.offset, member.size) if member is not None else "missing"
            raise LayoutError(f"struct event.{name}: C has (offset, size) {found}, Python {(offset, size)}")


def outcome(established: int, sk_err: int, sk_err_soft: int, resets_in: int, resets_out: int) -> str:
    """How a connection ended, from what the kernel recorded on its socket.

    Before the handshake: a RST (ECONNREFUSED) = refused; an ICMP unreachable (now, or earlier while the
    SYN waited) = unreachable; anything else = timeout: the SYN was never answered, whether the kernel
    gave up (ETIMEDOUT) or the caller closed the socket first. After it: an RST from the peer = reset,
    one from us = aborted, ETIMEDOUT (retransmissions or keepalives unanswered) = timeout.
    """
    if not established:
        if sk_err == errno.ECONNREFUSED or resets_in:
            return "refused"
        if sk_err in UNREACHABLE or (not sk_err and sk_err_soft in UNREACHABLE):
            return "unreachable"
        return "timeout"
    if resets_in or sk_err in RESET_BY_PEER:
        return "reset"
    if resets_out:
        return "aborted"
    if sk_err == errno.ETIMEDOUT:
        return "timeout"
    return "ok"


# decode_batch() unpacks positionally (a dict per event would cost more than the rest of decoding): this
# order must be the struct's, which the import-time check below holds it to.
FIELD_ORDER = ("ts_ns", "span_ns", "tx_bytes", "rx_bytes", "cgroup_id", "connect_ns", "pid", "srtt_us",
               "retransmits", "sk_err", "sk_err_soft", "lport", "rport", "resets_in", "resets_out", "laddr",
               "raddr", "comm", "family", "role", "established")
if LAYOUT.names != FIELD_ORDER:
    raise LayoutError(f"collectors/tcpevent.py decodes {FIELD_ORDER}, struct event has {LAYOUT.names}")

# The same few addresses and command names recur: their text is cached per kind (bounded: a scan over
# many addresses only costs the conversions again).
_CACHE_MAX = 65536
_TEXT: dict[int, dict[bytes, str]] = {4: {}, 6: {}, 0: {}}  # 4/6: addresses of that family, 0: commands


def _convert(kind: int, raw: bytes) -> str:
    if kind == 4:
        return socket.inet_ntop(socket.AF_INET, raw[12:])  # IPv4 arrives v4-mapped in 16 bytes
    if kind == 6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _text(kind: int, raw: bytes) -> str:
    cache = _TEXT[kind]
    found = cache.get(raw)
    if found is None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        found = cache[raw] = _convert(kind, raw)
    return found


CgroupNames = Callable[[int], tuple[str, str, str]]  # cgroup id -> (cgroup path, workload, workload_kind)

# The event as decode_batch builds it: contract `tcp` fields (pipeline/events.py) as a msgspec Struct,
# built positionally in the contract's order: a fifth of the cost of a dict of the same fields, and its
# JSON (msgspec) is byte for byte the contract's encoding, which the Kafka output ships as it is.
EVENT_FIELDS = ("v", "ts_ms", "host", "pid", "comm", "cgroup", "workload", "workload_kind", "family", "laddr", "lport",
                "raddr", "rport", "role", "tx_bytes", "rx_bytes", "duration_ms", "outcome", "connect_ms", "retransmits",
                "srtt_us", "resets_in", "resets_out")
TcpEvent = msgspec.defstruct("TcpEvent", [(name, Any) for name in EVENT_FIELDS], gc=False)
_CONTRACT = tuple(field.name for field in events.SCHEMAS["tcp"])
_REQUIRED = {field.name for field in events.SCHEMAS["tcp"] if field.required}
if tuple(n for n in _CONTRACT if n in EVENT_FIELDS) != EVENT_FIELDS or _REQUIRED - set(EVENT_FIELDS):
    raise LayoutError(f"collectors/tcpevent.py builds {EVENT_FIELDS}, the contract's tcp event has {_CONTRACT}")


def decode_batch(raw: bytes, host: str, cgroup_names: CgroupNames, wall_offset_ns: int,
                 header: int = 0) -> list[Any]:
    """Raw `struct event`s back to back, each after `header` bytes (8: ring-buffer records as
    collectors/ringbuf.py reads them) -> contract `tcp` events (TcpEvent), in order.

    The per-event cost is the collector's: one iter_unpack walks the whole batch in C, each cgroup id
    is named once per batch, and addresses and commands come from the text caches; what is left per
    event is building its TcpEvent.
    """
    records = _records(header)
    if len(raw) % records.size:
        raise LayoutError(f"{len(raw)} bytes are not a whole number of {records.size}-byte records")
    comms, v4, v6 = _TEXT[0], _TEXT[4], _TEXT[6]
    named: dict[int, tuple[str, str, str]] = {}
    decoded: list[Any] = []
    append = decoded.append
    for (ts_ns, span_ns, tx, rx, cgroup_id, connect_ns, pid, srtt_us, retransmits, sk_err, sk_err_soft, lport,
         rport, resets_in, resets_out, laddr, raddr, comm, family, role, established) in records.iter_unpack(raw):
        names = named.get(cgroup_id)
        if names is None:
            names = named[cgroup_id] = cgroup_names(cgroup_id)
        addrs = v4 if family == 4 else v6
        append(TcpEvent(
            1,  # v
            (ts_ns + wall_offset_ns) // 1_000_000,  # ts_ms
            host,
            pid,
            comms.get(comm) or _text(0, comm),  # comm
            names[0],  # cgroup
            names[1],  # workload
            names[2],  # workload_kind
            family,
            addrs.get(laddr) or _text(4 if family == 4 else 6, laddr),  # laddr
            lport,
            addrs.get(raddr) or _text(4 if family == 4 else 6, raddr),  # raddr
            rport,
            ROLES[role] if role < 3 else "",  # role
            tx,  # tx_bytes
            rx,  # rx_bytes
            span_ns / 1e6,  # duration_ms
            "ok" if established and not (sk_err or resets_in or resets_out) else outcome(
                established, sk_err, sk_err_soft, resets_in, resets_out),  # outcome
            connect_ns / 1e6,  # connect_ms
            retransmits,
            srtt_us,
            resets_in,
            resets_out,
        ))
    return decoded


@functools.cache
def _records(header: int) -> struct.Struct:
    """struct event after `header` skipped bytes, padded to 8 bytes (the ring buffer's record alignment)."""
    size = header + LAYOUT.format.size
    return struct.Struct(f"<{header}x{LAYOUT.format.format[1:]}{-size % 8}x" if header else LAYOUT.format.format)
