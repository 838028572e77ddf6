"""Steering a fleet that runs no svcpulse code from TCP health alone, on the real kernel (root).

Four `python3 -m http.server` instances (Debian's Python: nothing of svcpulse importable), each in its
own network namespace, called through balancer.client.Balancer following the live feed. svcpulse
runs only `collect tcp` (no interceptor anywhere): collector -> Tansu -> a weigh worker reading
svcpulse.tcp (no ClickHouse query) -> svcpulse.weights -> the API -> GET /v1/weights; the loader
fills ClickHouse 18.16 alongside (the stored outcomes are checked there). Faults are real: a stopped
process (refused), a server that resets what it accepts (SO_LINGER 0), nftables in the instance's
namespace dropping 20% of packets, or dropping or rejecting (ICMP) a SYN. The tests share one
pipeline and run in file order; each first waits for the fleet to be healthy again.
"""

from __future__ import annotations

import errno
import itertools
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ebpf_helpers import ROOT, ebpf_unavailable
from netns_fleet import Load, NetnsFleet

from api.main import create_app
from api.queries import registry as reg
from balancer.client import Balancer, WeightFeedClient
from core.settings import Settings
from pipeline.migrate import migrate
from pipeline.store import Store, StoreError, open_store
from svcpulse.services import ClickHouseServer, Tansu, free_port
from tests.integration.helpers import LoaderThread, wait_for
from tests.integration.weights_helpers import serve, weigh_worker

pytestmark = [pytest.mark.ebpf, pytest.mark.services, pytest.mark.slow,
              pytest.mark.skipif(ebpf_unavailable() is not None, reason=ebpf_unavailable() or "")]
SERVICE = "ebpf.web"
RATE = 60  # requests/s over the fleet, one new connection each


@dataclass
class Pipeline:
    fleet: NetnsFleet
    store: Store
    api: str
    load: Load

    def feed(self) -> dict[str, dict[str, Any]]:
        rows = httpx.get(f"{self.api}/v1/weights/{SERVICE}", timeout=10).json()["instances"]
        return {r["instance"]: r for r in rows}

    def wait_until(self, instance: str, condition: Callable[[dict[str, Any]], bool], timeout_s: float,
                   what: str = "") -> dict[str, Any]:
        """The instance's feed row once `condition` holds (polled every 0.5 s), or an AssertionError."""
        deadline, row = time.monotonic() + timeout_s, {}
        while time.monotonic() < deadline:
            row = self.feed()[instance]
            if condition(row):
                return row
            time.sleep(0.5)
        raise AssertionError(f"{instance}: {what or 'condition'} not reached in {timeout_s} s; last: {row}")

    def wait_state(self, instance: str, states: set[str], timeout_s: float) -> dict[str, Any]:
        return self.wait_until(instance, lambda r: r["state"] in states, timeout_s, f"state in {states}")

    def wait_all_healthy(self, timeout_s: float = 120) -> None:
        wait_for(lambda: all(r["state"] == "healthy" for r in self.feed().values()), timeout_s,
                 "the whole fleet healthy", every_s=1)


def _collector(bootstrap: str, port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "collectors.tcplife", "--output", "kafka", "--bootstrap-servers", bootstrap,
           "--ports", str(port), "--host", "ebpf-e2e"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "tracing" not in line:
        proc.kill()
        raise RuntimeError(f"collector did not start: {line}")
    return proc


def _register(store: Store, endpoints: list[str]) -> None:
    stamp = {"source": "api", "deleted": 0, "changed_by": "test"}
    reg.write_services(store, [{"service": SERVICE, "kind": "ip", "description": "plain http.server",
                                "signal": "tcp", "changed_ms": reg.stamp_ms(), **stamp}])
    reg.write_instances(store, [{"service": SERVICE, "instance": e, "static_weight": 100, "version": "",
                                 "enabled": 1, "changed_ms": reg.stamp_ms(), **stamp} for e in endpoints])


def _drop(store: Store, database: str) -> None:
    """Drop the test database; minutes of small inserts leave many parts, slow to remove on a busy host."""
    for attempt in range(5):
        try:
            store.execute(f"DROP DATABASE IF EXISTS {database}")
            break
        except StoreError:
            if attempt == 4:
                raise
            time.sleep(5)
    store.close()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, clickhouse: ClickHouseServer) -> Iterator[Pipeline]:
    broker = Tansu(port=free_port(), workdir=tmp_path_factory.mktemp("tansu"))
    broker.start()
    database = f"ebpf_{uuid.uuid4().hex[:8]}"
    store = open_store(f"clickhouse://127.0.0.1:{clickhouse.port}/{database}")
    migrate(store, log=False)
    with NetnsFleet(size=4, port=free_port()) as fleet:
        collector = _collector(broker.bootstrap, fleet.port)
        settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{database}", feed_open=True,
                            kafka_bootstrap=broker.bootstrap)
        try:
            _register(store, fleet.endpoints)  # before the worker starts: its snapshot of the control tables has it
            with LoaderThread(broker.bootstrap, store), weigh_worker(settings, store), \
                    serve(create_app(settings)) as api, \
                    WeightFeedClient(api, SERVICE, wait_s=5, fallback=fleet.endpoints) as feed:
                assert feed.wait_ready(60), feed.last_error  # the worker joins its group first
                balancer = Balancer(feed, "swrr")
                with Load(balancer, RATE) as load:
                    yield Pipeline(fleet, store, api, load)
        finally:
            collector.send_signal(2)
            collector.wait(timeout=30)
            broker.stop()
            _drop(store, database)


def test_a_healthy_fleet_under_steady_load_raises_no_alarm(pipeline: Pipeline) -> None:
    pipeline.wait_all_healthy()
    started, states, excused, cut = time.monotonic(), set(), [], set()
    while time.monotonic() - started < 60:
        rows = pipeline.feed()
        states |= {(name, r["state"]) for name, r in rows.items()}
        for name, row in rows.items():
            if (row["state"] == "healthy" and row["weight"] >= 80) or (name in cut and "recovering" in row["reason"]):
                continue  # healthy, or healing from a cut excused below
            # A cut is an alarm unless failures explain it: ones the callers saw, or ones the kernel saw (the
            # reason's counts). CI cut one to 73% for 1 reset in 26 connections, after a response the caller
            # had read: a stray reset on a busy 2-core host, not a judge inventing a fault. Latency or
            # retransmit cuts of a healthy fleet, and ejections, stay alarms. 30 s: window, cycle, recovery.
            seen = pipeline.load.failed(name, time.monotonic() - 30)
            what = f"{name}: {row['state']} {row['weight']}: {row['reason']}"
            kernel_saw = re.search(r"connections ok < bar [0-9.]+% \(\d+ (reset|refused|timed out|unreachable)",
                                   row["reason"])
            assert (seen or kernel_saw) and row["state"] != "ejected", f"cut with {seen} failed calls: {what}"
            excused.append(f"after {seen} failed calls: {what}")
            cut.add(name)
        time.sleep(1)
    print("cuts that failures explain:", *excused[:5], sep="\n")
    pipeline.wait_all_healthy(60)  # and such a cut heals
    assert {name for name, _ in states} == set(pipeline.fleet.endpoints)
    sample = next(iter(rows.values()))
    # Under CI load a healthy fleet may show a stray reset (CI saw 1 in 147 connections, likely a 1 s
    # client timeout closing before the answer); what matters is that it stays healthy at weight 100.
    ok_share = re.match(r"from TCP: ([0-9.]+)% of \d+ connections ok", sample["reason"])
    assert sample["signal"] == "tcp" and ok_share and float(ok_share.group(1)) >= 95.0, sample


def test_an_instance_that_resets_what_it_accepts_is_degraded_or_ejected_within_10_s(pipeline: Pipeline) -> None:
    pipeline.wait_all_healthy()
    target = pipeline.fleet.instances[1]
    target.run("reset")
    try:
        started = time.monotonic()
        # Restarting the server as a resetter refuses a few connections first: wait for the resets.
        row = pipeline.wait_until(target.endpoint, lambda r: r["state"] in ("degraded", "ejected") and
                                  " reset)" in r["reason"] and r["weight"] < 50, 10)
        print(f"reset: {row['state']} after {time.monotonic() - started:.1f} s: {row['reason']}")
    finally:
        target.run("http")


def test_random_loss_shows_as_retransmits_and_lowers_the_weight(pipeline: Pipeline) -> None:
    target = pipeline.fleet.instances[2]
    pipeline.wait_state(target.endpoint, {"healthy"}, 90)
    target.nft("in meta l4proto tcp numgen random mod 5 == 0 drop",
               "out meta l4proto tcp numgen random mod 5 == 0 drop")
    try:
        started = time.monotonic()
        # the cut deepens as the window fills with lossy connections: degraded may first show at exactly 90
        row = pipeline.wait_until(target.endpoint, lambda r: r["state"] in {"degraded", "ejected"} and r["weight"] < 90,
                                  20, "degraded or ejected below weight 90")
        print(f"loss: {row['state']} at weight {row['weight']} after {time.monotonic() - started:.1f} s: "
              f"{row['reason']}")
        assert "retransmits/connection" in row["reason"]
        host, port = target.endpoint.rsplit(":", 1)
        retransmits = pipeline.store.execute(
            "SELECT sum(retransmits) FROM tcp_connections WHERE raddr = %(h)s AND rport = %(p)s AND role = 'client' "
            "AND ts_ms >= %(since)s", {"h": host, "p": int(port), "since": int((time.time() - 30) * 1000)})[0][0]
        assert retransmits > 0
    finally:
        target.nft()


def test_a_refused_instance_is_ejected_probed_and_comes_back_through_slow_start(pipeline: Pipeline) -> None:
    target = pipeline.fleet.instances[0]
    wait_for(lambda: not any(r["state"] == "ejected" for r in pipeline.feed().values()), 90,
             "no ejection running (the eject cap is 1 of 4)")
    pipeline.wait_state(target.endpoint, {"healthy"}, 90)
    target.stop()
    stopped = time.monotonic()
    row = pipeline.wait_state(target.endpoint, {"ejected"}, 10)
    ejected_after = time.monotonic() - stopped
    print(f"refused: ejected after {ejected_after:.1f} s: {row['reason']}")
    assert "refused" in row["reason"]
    time.sleep(3)  # the balancer follows the new revision
    window_start = time.monotonic()
    time.sleep(12)
    share, attempts = pipeline.load.share(target.endpoint, window_start, time.monotonic())
    print(f"refused: {share:.2%} of {attempts} new connections went to it while ejected")
    assert attempts > 300 and share <= 0.01

    target.run("http")  # back while still ejected: it returns when the ejection ends, ramping
    row = pipeline.wait_state(target.endpoint, {"slow_start"}, 40)
    ramp = [row["weight"]]
    while row["state"] == "slow_start":
        time.sleep(2)
        row = pipeline.feed()[target.endpoint]
        ramp.append(row["weight"])
    print(f"refused: weights after the ejection: {ramp}")
    # It ramps up; a stray reset under CI load may take a couple of points off one step (ci-local: 30 -> 28).
    assert ramp[0] < 50 and row["state"] == "healthy", ramp
    assert all(later >= earlier - 5 for earlier, later in itertools.pairwise(ramp)) and ramp[-1] > ramp[0] + 40, ramp


def _stored_outcome(pipeline: Pipeline, host: str, port: int, outcome: str, since_ms: int) -> bool:
    return pipeline.store.execute(
        "SELECT count() FROM tcp_connections WHERE raddr = %(h)s AND rport = %(p)s AND role = 'client' "
        "AND outcome = %(o)s AND ts_ms >= %(since)s", {"h": host, "p": port, "o": outcome, "since": since_ms})[0][0] > 0


def test_an_unanswered_syn_is_reported_as_a_timeout(pipeline: Pipeline) -> None:
    target = pipeline.fleet.instances[3]
    host, port = target.address, target.port
    client = socket.socket()
    client.bind(("0.0.0.0", 0))
    client.settimeout(1.5)
    # Only this client's SYNs are dropped: the fleet's load keeps its connections.
    target.nft(f"in tcp sport {client.getsockname()[1]} tcp dport {port} tcp flags & (syn | ack) == syn drop")
    try:
        since = int(time.time() * 1000)
        with pytest.raises(TimeoutError):
            client.connect((host, port))
        client.close()
        wait_for(lambda: _stored_outcome(pipeline, host, port, "timeout", since), 15,
                 "a client connection with outcome 'timeout' in tcp_connections")
    finally:
        client.close()
        target.nft()


def test_a_host_that_does_not_answer_arp_is_reported_as_unreachable(pipeline: Pipeline) -> None:
    """An address on an instance's link where no host answers ARP: the kernel's own ICMP host-unreachable
    ends the connect (asynchronously, as a router's would). An ICMP generated inside the connect call
    itself (an nft reject on a local veth) reaches a socket its caller still holds, which the kernel
    keeps only as a soft error: that connect shows as a timeout instead."""
    absent = pipeline.fleet.instances[3].address.rsplit(".", 1)[0] + ".99"
    port = pipeline.fleet.port
    since = int(time.time() * 1000)
    with pytest.raises(OSError) as failed:
        socket.create_connection((absent, port), timeout=10).close()
    assert failed.value.errno == errno.EHOSTUNREACH, failed.value
    wait_for(lambda: _stored_outcome(pipeline, absent, port, "unreachable", since), 15,
             "a client connection with outcome 'unreachable' in tcp_connections")


def test_bytes_stay_exact_with_health_fields(pipeline: Pipeline) -> None:
    """A 1 MB response through the fleet: both ends' byte counts as exact as before (+SYN/FIN)."""
    target = pipeline.fleet.instances[3]
    (Path(target.docroot) / "mb").write_bytes(b"x" * 1_000_000)
    host, port = target.endpoint.rsplit(":", 1)
    since = int(time.time() * 1000)
    body = httpx.get(f"http://{target.endpoint}/mb", timeout=10).content
    assert len(body) == 1_000_000

    def rx() -> int:
        rows = pipeline.store.execute(
            "SELECT rx_bytes, outcome, srtt_us FROM tcp_connections WHERE raddr = %(h)s AND rport = %(p)s "
            "AND role = 'client' AND ts_ms >= %(since)s AND rx_bytes > 900000",
            {"h": host, "p": int(port), "since": since})
        return rows[0][0] if rows and rows[0][1] == "ok" and rows[0][2] > 0 else 0

    wait_for(lambda: rx() > 0, 15, "the 1 MB connection in tcp_connections")
    headers = rx() - 1_000_000
    assert 100 < headers < 400  # http.server's status line and headers, plus the FIN
