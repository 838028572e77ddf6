"""The tcplife collector against real loopback connections (root + bcc; one collector per module)."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from ebpf_helpers import Collector, Connection, connect, ebpf_unavailable

from collectors.cgroups import find_cgroup2_mount
from pipeline.events import validate

pytestmark = [pytest.mark.ebpf, pytest.mark.skipif(ebpf_unavailable() is not None,
                                                    reason=ebpf_unavailable() or "")]

MB = 1_000_000
SYN_FIN = 2  # SYN and FIN each take one sequence number: counters read N .. N+2


def own_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


def both_ends(collector: Collector, conn: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """(client event, server event) of a test connection, matched on exact ports."""
    def ours(e: dict[str, Any]) -> bool:
        return {e["lport"], e["rport"]} == {conn.client_port, conn.server_port}

    events = collector.wait_for(ours, count=2)
    assert len(events) == 2, events
    by_port = {e["lport"]: e for e in events}
    return by_port[conn.client_port], by_port[conn.server_port]


def check_ends(client: dict[str, Any], server: dict[str, Any], conn: Connection, family: int) -> None:
    for event in (client, server):
        assert validate("tcp", event) == event
        assert event["family"] == family and event["host"] == "ebpf-test"
        assert event["laddr"] == event["raddr"] == conn.host
        assert 0 < event["duration_ms"] < 30_000
        assert abs(event["ts_ms"] - time.time() * 1000) < 30_000
    assert (client["role"], client["pid"], client["comm"]) == ("client", conn.client_pid, "sp-client")
    assert (server["role"], server["pid"], server["comm"]) == ("server", conn.server_pid, "sp-server")
    assert (client["lport"], client["rport"]) == (conn.client_port, conn.server_port)
    assert (server["lport"], server["rport"]) == (conn.server_port, conn.client_port)


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_million_bytes_both_ends_ipv4(collector: Collector, direction: str) -> None:
    upload, download = (MB, 0) if direction == "upload" else (0, MB)
    conn = connect("127.0.0.1", upload=upload, download=download)
    assert (conn.server_received, conn.client_received) == (upload, download)
    client, server = both_ends(collector, conn)
    check_ends(client, server, conn, family=4)
    assert upload <= client["tx_bytes"] <= upload + SYN_FIN
    assert download <= client["rx_bytes"] <= download + SYN_FIN
    assert download <= server["tx_bytes"] <= download + SYN_FIN
    assert upload <= server["rx_bytes"] <= upload + SYN_FIN
    # the peers inherit this process's cgroup
    assert client["cgroup"] == server["cgroup"] == own_cgroup(os.getpid())


def test_ipv6_loopback(collector: Collector) -> None:
    conn = connect("::1", upload=123_457, download=4_321)
    client, server = both_ends(collector, conn)
    check_ends(client, server, conn, family=6)
    assert 123_457 <= client["tx_bytes"] <= 123_457 + SYN_FIN
    assert 123_457 <= server["rx_bytes"] <= 123_457 + SYN_FIN
    assert 4_321 <= server["tx_bytes"] <= 4_321 + SYN_FIN
    assert 4_321 <= client["rx_bytes"] <= 4_321 + SYN_FIN


def test_cgroup_path_of_moved_process(collector: Collector) -> None:
    mount = find_cgroup2_mount()
    name = f"svcpulse-test-{uuid.uuid4().hex[:8]}"
    group = mount / name
    group.mkdir()  # created after the collector started: the id -> path cache must refresh
    try:
        conn = connect("127.0.0.1", upload=1000, cgroup_procs=str(group / "cgroup.procs"))
        client, server = both_ends(collector, conn)
        assert client["cgroup"] == f"/{name}"
        assert (client["workload"], client["workload_kind"]) == (name, "cgroup")  # named from the path
        assert server["cgroup"] == own_cgroup(os.getpid())
        assert client["pid"] == conn.client_pid
    finally:
        for _ in range(50):  # the client has exited, but its cgroup empties asynchronously
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert not group.exists()


LINE = re.compile(r"^(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def test_agrees_with_libbpf_tools_tcplife(collector: Collector) -> None:
    tool = Path("/usr/sbin/tcplife")
    if not tool.exists():
        pytest.skip("libbpf-tools not installed (/usr/sbin/tcplife)")
    proc = subprocess.Popen(["stdbuf", "-oL", str(tool), "-w"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("PID"), "tcplife printed no header"
        workload = [("127.0.0.1", 1, 0), ("127.0.0.1", 5_000, 0), ("::1", 0, 77_777),
                    ("127.0.0.1", 250_000, 3_000), ("::1", 2_000_000, 10), ("127.0.0.1", 0, 1_500_000)]
        conns = [connect(host, upload, download) for host, upload, download in workload]
        ours = [e for conn in conns for e in both_ends(collector, conn)]
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    theirs = {}
    for line in out.splitlines():
        m = LINE.match(line.strip())
        if m:
            theirs[(m[3], int(m[4]), m[5], int(m[6]))] = (float(m[7]), float(m[8]))
    assert len(ours) == 2 * len(workload)
    for event in ours:
        key = (event["laddr"], event["lport"], event["raddr"], event["rport"])
        assert key in theirs, f"tcplife did not report {key}"
        tx_kb, rx_kb = theirs[key]
        # tcplife prints KiB with two decimals: agree to within its rounding (0.005 KiB = 5 bytes)
        assert abs(event["tx_bytes"] / 1024 - tx_kb) <= 0.0051, (key, event["tx_bytes"], tx_kb)
        assert abs(event["rx_bytes"] / 1024 - rx_kb) <= 0.0051, (key, event["rx_bytes"], rx_kb)
