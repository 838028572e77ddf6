"""collectors/tcplife.py without a kernel: event decoding, flag checks, one-line start-up errors."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest
from ebpf_helpers import ROOT

from collectors import tcplife
from pipeline.events import validate


def raw_event(family: int, laddr: str, raddr: str, role: int = 1) -> bytes:
    def packed(addr: str) -> bytes:
        if family == 4:
            return b"\0" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, addr)
        return socket.inet_pton(socket.AF_INET6, addr)

    return tcplife.EVENT_FORMAT.pack(
        5_000_000_000, 1_500_000, 1_000_002, 7, 42, 4321, 40000, 8080,
        packed(laddr), packed(raddr), b"curl\0garbage\0\0\0\0", family, role,
    )


def test_event_struct_matches_the_c_struct() -> None:
    # u64 x5, u32, u16 x2, 3 x 16 bytes, u8 x2, 6 pad: sizeof(struct event) in tcplife.bpf.c
    assert tcplife.EVENT_FORMAT.size == 104
    source = tcplife.BPF_SOURCE.read_text()
    assert "struct event {" in source and "u8 pad[6];" in source


def test_decode_ipv4_to_a_contract_event() -> None:
    event = tcplife.decode(raw_event(4, "10.1.2.3", "10.9.8.7"), "node-1", {42: "/web"}.get, 10**18)
    assert validate("tcp", event) == event
    assert event == {
        "v": 1, "ts_ms": (10**18 + 5_000_000_000) // 1_000_000, "host": "node-1", "pid": 4321,
        "comm": "curl", "cgroup": "/web", "family": 4, "laddr": "10.1.2.3", "lport": 40000,
        "raddr": "10.9.8.7", "rport": 8080, "role": "client", "tx_bytes": 1_000_002, "rx_bytes": 7,
        "duration_ms": 1.5,
    }


def test_decode_ipv6_and_server_role() -> None:
    event = tcplife.decode(raw_event(6, "fe80::1", "2001:db8::2", role=2), "n", lambda _id: "", 0)
    assert validate("tcp", event) == event
    assert (event["family"], event["laddr"], event["raddr"], event["role"]) == (6, "fe80::1", "2001:db8::2",
                                                                               "server")
    assert tcplife.decode(raw_event(6, "::1", "::1", role=9), "n", lambda _id: "", 0)["role"] == ""


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
    (ROOT_OK + "import collectors.tcplife as t; t.TRACEPOINTS = ()", "inet_sock_set_state not found", 1),
    (ROOT_OK + "sys.modules['bcc'] = None", "bcc Python module not found", 2),
]


@pytest.mark.parametrize("patch, message, earlier", CASES)
def test_one_line_error_and_nonzero_exit(patch: str, message: str, earlier: int) -> None:
    real_checks = [tcplife.btf.VMLINUX.exists(), any(p.exists() for p in tcplife.TRACEPOINTS)]
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
