"""collectors/tcplife.py without a kernel: event decoding, flag checks, one-line start-up errors."""

from __future__ import annotations

import argparse
import ctypes
import errno
import socket
import subprocess
import sys

import msgspec
import pytest
from ebpf_helpers import ROOT

from collectors import tcpevent, tcplife
from pipeline.events import validate


def decode(raw: bytes, host: str = "n", cgroups: dict[int, str] | None = None, wall_offset_ns: int = 0) -> dict:
    """One event through the batch decoder; the workload names the cgroup path's last part here."""
    paths = cgroups or {}

    def cgroup_names(cgroup_id: int) -> tuple[str, str, str]:
        path = paths.get(cgroup_id, "")
        return path, path.rsplit("/", 1)[-1], "cgroup" if path else ""

    [event] = tcpevent.decode_batch(raw, host, cgroup_names, wall_offset_ns)
    return msgspec.structs.asdict(event)


def raw_event(family: int, laddr: str, raddr: str, role: int = 1, **fields: int) -> bytes:
    def packed(addr: str) -> bytes:
        if family == 4:
            return b"\0" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, addr)
        return socket.inet_pton(socket.AF_INET6, addr)

    values = {
        "ts_ns": 5_000_000_000, "span_ns": 1_500_000, "tx_bytes": 1_000_002, "rx_bytes": 7, "cgroup_id": 42,
        "connect_ns": 250_000, "pid": 4321, "srtt_us": 180, "retransmits": 2, "sk_err": 0, "sk_err_soft": 0,
        "lport": 40000, "rport": 8080, "resets_in": 0, "resets_out": 0, "laddr": packed(laddr),
        "raddr": packed(raddr), "comm": b"curl\0garbage\0\0\0\0", "family": family, "role": role,
        "established": 1, **fields,
    }
    return tcpevent.LAYOUT.format.pack(*(values[name] for name in tcpevent.LAYOUT.names))


def test_decoder_is_generated_from_the_c_struct() -> None:
    layout = tcpevent.LAYOUT
    assert layout.format.size == 128
    assert layout.names[:3] == ("ts_ns", "span_ns", "tx_bytes") and layout.names[-1] == "established"
    # natural alignment: after 6 x u64, 5 x 32-bit, 4 x u16, 3 x 16 bytes and 3 x u8 comes 1 byte of padding
    assert layout.offsets["pid"] == (48, 4) and layout.offsets["lport"] == (68, 2)
    assert layout.offsets["laddr"] == (76, 16) and layout.offsets["established"] == (126, 1)


def test_layout_parser_aligns_and_pads_like_c() -> None:
    layout = tcpevent.parse_layout("struct event {\n    u8 a;\n    u64 b;  // note\n    u16 c[2];\n    u8 pad[3];\n};")
    assert layout.names == ("a", "b", "c")
    assert layout.offsets == {"a": (0, 1), "b": (8, 8), "c": (16, 4)}
    assert layout.format.size == 24  # 23 bytes rounded up to the u64's alignment
    with pytest.raises(tcpevent.LayoutError, match="unsupported type"):
        tcpevent.parse_layout("struct event {\n    float x;\n};")


def test_layout_check_names_the_field_that_moved() -> None:
    def as_ctypes(order: list[str]) -> type[ctypes.Structure]:
        sizes = {name: size for name, (_offset, size) in tcpevent.LAYOUT.offsets.items()}
        fields = [(name, ctypes.c_uint8 * sizes[name]) for name in order] + [("pad", ctypes.c_uint8)]
        return type("Event", (ctypes.Structure,), {"_fields_": fields})

    by_offset = sorted(tcpevent.LAYOUT.offsets, key=lambda name: tcpevent.LAYOUT.offsets[name][0])
    tcpevent.check_layout(as_ctypes(by_offset))  # the same layout passes
    swapped = [{"lport": "rport", "rport": "lport"}.get(name, name) for name in by_offset]
    with pytest.raises(tcpevent.LayoutError, match=r"struct event\.lport: C has \(offset, size\) \(70, 2\)"):
        tcpevent.check_layout(as_ctypes(swapped))


@pytest.mark.parametrize("facts, expected", [
    ((1, 0, 0, 0, 0), "ok"),
    ((0, errno.ECONNREFUSED, 0, 1, 0), "refused"),
    ((0, 0, 0, 1, 0), "refused"),
    ((0, errno.ETIMEDOUT, 0, 0, 0), "timeout"),
    ((0, 0, 0, 0, 0), "timeout"),  # the caller closed while the SYN was unanswered
    ((0, errno.EHOSTUNREACH, 0, 0, 0), "unreachable"),
    ((0, 0, errno.ENETUNREACH, 0, 0), "unreachable"),  # ICMP seen, then the caller gave up
    ((1, errno.ECONNRESET, 0, 1, 0), "reset"),
    ((1, errno.EPIPE, 0, 0, 0), "reset"),
    ((1, 0, 0, 0, 1), "aborted"),
    ((1, errno.ETIMEDOUT, 0, 0, 0), "timeout"),
    ((1, 0, errno.EHOSTUNREACH, 0, 0), "ok"),  # a soft error on a connection that went on fine
])
def test_outcome_rule(facts: tuple[int, int, int, int, int], expected: str) -> None:
    assert tcpevent.outcome(*facts) == expected


def test_decode_ipv4_to_a_contract_event() -> None:
    event = decode(raw_event(4, "10.1.2.3", "10.9.8.7"), "node-1", {42: "/web"}, 10**18)
    assert validate("tcp", event) == event
    assert event == {
        "v": 1, "ts_ms": (10**18 + 5_000_000_000) // 1_000_000, "host": "node-1", "pid": 4321,
        "comm": "curl", "cgroup": "/web", "family": 4, "laddr": "10.1.2.3", "lport": 40000,
        "raddr": "10.9.8.7", "rport": 8080, "role": "client", "tx_bytes": 1_000_002, "rx_bytes": 7,
        "duration_ms": 1.5, "outcome": "ok", "connect_ms": 0.25, "retransmits": 2, "srtt_us": 180,
        "resets_in": 0, "resets_out": 0, "workload": "web", "workload_kind": "cgroup",
    }


def test_decode_a_refused_connect() -> None:
    raw = raw_event(4, "10.1.2.3", "10.9.8.7", established=0, connect_ns=0, sk_err=errno.ECONNREFUSED,
                    resets_in=1, srtt_us=0, tx_bytes=0, rx_bytes=0)
    event = decode(raw)
    assert validate("tcp", event) == event
    assert (event["outcome"], event["connect_ms"], event["resets_in"]) == ("refused", 0.0, 1)


def test_decode_ipv6_and_server_role() -> None:
    event = decode(raw_event(6, "fe80::1", "2001:db8::2", role=2))
    assert validate("tcp", event) == event
    assert (event["family"], event["laddr"], event["raddr"], event["role"]) == (6, "fe80::1", "2001:db8::2",
                                                                               "server")
    assert decode(raw_event(6, "::1", "::1", role=9))["role"] == ""


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tcplife.configure(parser)
    return parser.parse_args(list(flags))


def test_flags_and_their_checks() -> None:
    args = parse("--output", "jsonl", "--ports", "80,443", "--pids", "1", "--map-size", "131072")
    assert (args.ports, args.pids, args.map_size, args.ring_pages) == ([80, 443], [1], 131072, 1024)
    assert tcplife.check_args(args) is None
    assert "power of two" in (tcplife.check_args(parse("--ring-pages", "1000")) or "")
    assert "ports" in (tcplife.check_args(parse("--ports", "0")) or "")
    assert tcplife.run(parse("--map-size", "0")) == 2


def run_patched(patch: str) -> subprocess.CompletedProcess[str]:
    """The collector's main() in a fresh interpreter after `patch` simulated a missing piece."""
    code = f"import os, sys, pathlib\n{patch}\nfrom collectors import tcplife\nsys.exit(tcplife.main())"
    return subprocess.run([sys.executable, "-c", code, "--output", "jsonl"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


ROOT_OK = "os.geteuid = lambda: 0\n"
CASES = [  # (patch, expected message, how many real checks come before this one)
    ("os.geteuid = lambda: 1000", "needs root", 0),
    (ROOT_OK + "import collectors.btf as b; b.VMLINUX = pathlib.Path('/nonexistent')", "no kernel BTF", 0),
    (ROOT_OK + "import collectors.tcplife as t; t.TRACEFS = ()", "inet_sock_set_state, tcp:tcp_retransmit_skb", 1),
    (ROOT_OK + "sys.modules['bcc'] = None", "bcc Python module not found", 2),
]


@pytest.mark.parametrize("patch, message, earlier", CASES)
def test_one_line_error_and_nonzero_exit(patch: str, message: str, earlier: int) -> None:
    real_checks = [tcplife.btf.VMLINUX.exists(), all(any((root / tp).exists() for root in tcplife.TRACEFS)
                                                     for tp in tcplife.TRACEPOINTS)]
    if not all(real_checks[:earlier]):
        pytest.skip("this machine fails an earlier check, which answers first")
    done = run_patched(patch)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("svcpulse collect tcp: "), lines


def test_importing_the_collector_needs_no_bcc() -> None:
    code = "import sys; sys.modules['bcc'] = None\nimport collectors.tcplife, collectors.cgroups"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
