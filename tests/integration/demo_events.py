"""Demo-shaped events for tests: a small fleet with one sick instance and a canary, as contract events.

shop.frontend calls shop.checkout (3 instances; 127.0.0.13 is sick: 8% errors, ~140 ms) and
shop.catalog (2 instances; 127.0.0.22 runs a canary version). Every call is seen by both sides, about
a quarter of the calls open and close a TCP connection (all healthy), and every instance reports its load.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline import events

HOST = "demo-node"
FRONTEND_CGROUP = "/system.slice/shop-frontend.service"  # the caller's calls and connections come from it


@dataclass(frozen=True)
class Instance:
    service: str
    address: str
    version: str
    error_rate: float
    latency_ms: float


FLEET = (
    Instance("shop.checkout", "127.0.0.11:8080", "v1.4.2", 0.002, 18.0),
    Instance("shop.checkout", "127.0.0.12:8080", "v1.4.2", 0.003, 20.0),
    Instance("shop.checkout", "127.0.0.13:8080", "v1.4.2", 0.08, 140.0),
    Instance("shop.catalog", "127.0.0.21:8080", "v2.0.0", 0.001, 6.0),
    Instance("shop.catalog", "127.0.0.22:8080", "v2.1.0-rc1", 0.004, 7.5),
)
SICK = "127.0.0.13:8080"
INTERFACES = {"shop.checkout": ("POST /orders", "GET /orders/{order_id}"),
              "shop.catalog": ("GET /items/{item_id}", "GET /items")}


def call(rng: random.Random, ts_ms: int) -> list[tuple[str, events.Event]]:
    """One call to a random instance as the server and the client saw it, sometimes with its connection."""
    target = rng.choice(FLEET)
    latency = max(0.3, rng.lognormvariate(0, 0.35) * target.latency_ms)
    failed = rng.random() < target.error_rate
    common = {"v": 1, "ts_ms": ts_ms, "caller": "shop.frontend", "callee": target.service,
              "interface": rng.choice(INTERFACES[target.service]), "instance": target.address,
              "status": "error" if failed else "ok", "code": "503" if failed else "200",
              "version": target.version, "host": HOST, "cgroup": ""}
    found: list[tuple[str, events.Event]] = [
        ("rpc", {**common, "side": "server", "latency_ms": round(latency, 3)}),
        ("rpc", {**common, "side": "client", "cgroup": FRONTEND_CGROUP,
                 "latency_ms": round(latency + rng.uniform(0.2, 1.5), 3)})]
    if rng.random() < 0.25:
        address, port = target.address.rsplit(":", 1)
        found.append(("tcp", {"v": 1, "ts_ms": ts_ms, "host": HOST, "pid": 4242, "comm": "frontend",
                              "cgroup": FRONTEND_CGROUP, "family": 4, "laddr": "127.0.0.1",
                              "lport": rng.randint(32768, 60999), "raddr": address, "rport": int(port),
                              "role": "client", "tx_bytes": rng.randint(200, 40_000),
                              "rx_bytes": rng.randint(500, 400_000),
                              "duration_ms": round(rng.expovariate(1 / 800), 3), "outcome": "ok",
                              "connect_ms": round(rng.uniform(0.1, 0.6), 3), "retransmits": int(rng.random() < 0.02),
                              "srtt_us": rng.randint(60, 400), "resets_in": 0, "resets_out": 0}))
    return found


def loads(rng: random.Random, ts_ms: int, calls_per_s: float) -> list[tuple[str, events.Event]]:
    """A load sample per instance: CPU from the calls it serves times their service time."""
    per_instance = calls_per_s / len(FLEET)
    return [("load", {"v": 1, "ts_ms": ts_ms, "host": HOST, "cgroup": f"/demo/{i.address}", "instance": i.address,
                      "cpu_cores": round(0.05 + per_instance * i.latency_ms / 1000 * rng.uniform(0.9, 1.1), 4),
                      "cpu_limit_cores": 2.0, "mem_bytes": int(rng.uniform(180, 220) * 2**20),
                      "mem_limit_bytes": 512 * 2**20}) for i in FLEET]


def backfill(now_ms: int, minutes: int, calls_per_minute: int = 90, seed: int = 11) -> list[tuple[str, events.Event]]:
    """The fleet's calls, connections and load samples spread evenly over the last `minutes`."""
    rng = random.Random(seed)
    produced: list[tuple[str, events.Event]] = []
    for minute in range(minutes, 0, -1):
        start = now_ms - minute * 60_000
        for i in range(calls_per_minute):
            produced += call(rng, start + i * 60_000 // calls_per_minute)
        produced += loads(rng, start, calls_per_minute / 60) + loads(rng, start + 30_000, calls_per_minute / 60)
    return produced
