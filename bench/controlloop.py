"""The control loop against plain round robin: a 5-instance fleet with one sick instance.

Two runs on real parts (Tansu broker, chdb store, the loader, the API in-process, 5 instrumented
uvicorn instances, 8 client threads through balancer.client.Balancer with smooth weighted round
robin): one with fixed equal weights (round robin), one following the svcpulse weight feed.
After a warm-up, one instance turns sick (50% of calls answer 503, +200 ms); figures cover the
`--measure` seconds from that moment, time-to-shift included:
  time-to-shift  first second from which the sick instance's share stays <= 10% of its share before
  error rate     failed calls / calls over the whole fleet (what callers see)
  p50, p99       client-side call latency over the whole fleet
and again for the window from 15 s after the fault (the steady state once weights have shifted).

    .venv/bin/python bench/controlloop.py [--measure 40]

Against the peers (issue 16, docs/weights.md): every reference policy (bench/policies) and every
scenario (bench/scenarios.py) x 3 seeds in the simulator, tables and plot into artifacts/; and
selected scenarios in real time on this fleet, to check the simulator against real parts:

    .venv/bin/python bench/controlloop.py --peers [--scenarios errors-50,gray] [--workers 2]
    .venv/bin/python bench/controlloop.py --realtime [--scenarios errors-50,slow-200ms,no-fault]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: `bench` is a package

from api.main import create_app
from api.queries.discovery import write_policy
from balancer.client import WeightFeedClient, WeightSource
from core.settings import Settings
from pipeline.loader import Loader, LoaderConfig
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from svcpulse.fleet import Call, EqualWeights, Fleet, Traffic
from svcpulse.services import Tansu, free_port
from weigh.worker import Worker


def time_to_shift(traffic: Traffic, sick: str, before: float, fault_at: float, end: float) -> float | None:
    """Seconds after the fault until the sick share stays <= 10% of before (1 s buckets)."""
    shifted_at = None
    for second in range(int(end - fault_at)):
        calls = traffic.between(fault_at + second, fault_at + second + 1)
        if Traffic.share(calls, sick) <= before / 10:
            shifted_at = second + 1 if shifted_at is None else shifted_at
        else:
            shifted_at = None
    return shifted_at


def _figures(name: str, calls: list[Call], sick: str, before: float, seconds: float) -> dict[str, float]:
    latencies = statistics.quantiles([c.latency_ms for c in calls], n=1000)
    figures = {"error_rate": sum(not c.ok for c in calls) / len(calls), "p50": latencies[499],
               "p99": latencies[989], "p999": latencies[998], "sick_share": Traffic.share(calls, sick)}
    print(f"{name:<12} error rate {figures['error_rate']:6.2%}  p50 {figures['p50']:6.1f} ms  "
          f"p99 {figures['p99']:6.1f} ms  p99.9 {figures['p999']:6.1f} ms  sick share {before:.1%} -> "
          f"{figures['sick_share']:.1%}  ({len(calls)} calls, {len(calls) / seconds:.0f}/s)", flush=True)
    return figures


def run(name: str, fleet: Fleet, source: WeightSource, warmup_s: float,
        measure_s: float) -> tuple[dict[str, float], dict[str, float]]:
    sick = fleet.instances[2]
    with Traffic(source, threads=8) as traffic:
        time.sleep(warmup_s)
        fault_at = time.monotonic()
        before = Traffic.share(traffic.between(fault_at - 5, fault_at), sick.address)
        sick.error_rate, sick.extra_ms = 0.5, 200
        time.sleep(measure_s)
        end = time.monotonic()
    figures = _figures(name, traffic.between(fault_at, end), sick.address, before, measure_s)
    shift = time_to_shift(traffic, sick.address, before, fault_at, end)
    print(f"{'':<12} time-to-shift {'never' if shift is None else f'{shift} s'}; after the first 15 s:", flush=True)
    return figures, _figures("", traffic.between(fault_at + 15, end), sick.address, before, measure_s - 15)


def with_pipeline(body: Callable[[str, Store], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Tansu(port=free_port(), workdir=Path(tmp) / "tansu")
        broker.start()
        store = open_store(f"chdb://{tmp}/chdb/svcpulse")
        migrate(store, log=False)
        # Telemetry alone routes nothing: admit the fleet on loopback (read by the worker when it starts).
        write_policy(store, "bench.svcpulse", ["127.0.0.0/8"], why="the bench fleet on loopback")
        loader = Loader(LoaderConfig(bootstrap=broker.bootstrap, batch_age_s=0.5), store)
        worker = Worker(Settings(kafka_bootstrap=broker.bootstrap), store)  # the weights, from the stream
        threads = [threading.Thread(target=loader.run, daemon=True), threading.Thread(target=worker.run, daemon=True)]
        for thread in threads:
            thread.start()
        try:
            body(broker.bootstrap, store)
        finally:
            loader.stop()
            worker.stop()
            for thread in threads:
                thread.join(timeout=30)
            store.close()
            broker.stop()


def with_api(body: Callable[[str, str], None]) -> None:
    """The pipeline plus the API (weight loop, feed) on a free port: body(bootstrap, api_url)."""

    def serve(bootstrap: str, store: Store) -> None:
        import uvicorn

        port = free_port()
        app = create_app(Settings(feed_open=True, kafka_bootstrap=bootstrap), store=store)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1",
                                               port=port, log_level="warning"))
        api = threading.Thread(target=server.run, daemon=True)
        api.start()
        while not server.started and api.is_alive():
            time.sleep(0.05)
        try:
            body(bootstrap, f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            api.join(timeout=10)

    with_pipeline(serve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--measure", type=float, default=40)
    parser.add_argument("--peers", action="store_true", help="simulate every policy x scenario x 3 seeds")
    parser.add_argument("--realtime", action="store_true", help="run scenarios on the real fleet and the simulator")
    parser.add_argument("--scenarios", help="comma-separated scenario names (bench/scenarios.py); default: all")
    parser.add_argument("--workers", type=int, help="simulator processes (default: one per CPU)")
    args = parser.parse_args()
    if args.peers:
        from bench.peers import main as peers

        peers(args.scenarios, args.workers)
        return
    if args.realtime:
        from bench.realtime import main as realtime

        realtime(args.scenarios)
        return
    results = {}

    def both(bootstrap: str, api_url: str) -> None:
        with Fleet("bench.rr", bootstrap) as fleet:
            results["round robin"] = run("round robin", fleet, EqualWeights(fleet.addresses), args.warmup, args.measure)
        with Fleet("bench.svcpulse", bootstrap) as fleet, \
                WeightFeedClient(api_url, "bench.svcpulse", wait_s=5, fallback=fleet.addresses) as feed:
            results["svcpulse"] = run("svcpulse", fleet, feed, args.warmup, args.measure)

    print(f"5 instances, 8 client threads (swrr); instance 3 turns sick (50% errors, +200 ms) after "
          f"{args.warmup:g} s; figures over the next {args.measure:g} s", flush=True)
    with_api(both)
    for window, n in (("whole window", 0), ("from 15 s on", 1)):
        rr, sp = results["round robin"][n], results["svcpulse"][n]
        print(f"svcpulse vs round robin, {window}: error rate {rr['error_rate'] / max(sp['error_rate'], 1e-9):.1f}x "
              f"lower, p99 {rr['p99'] / sp['p99']:.1f}x lower")

if __name__ == "__main__":
    main()
