"""A small simulated fleet emitting contract-valid events, so a fresh `svcpulse up` has data to show.

shop.frontend calls shop.checkout (3 instances, one of them degraded: more errors, +120 ms) and
shop.catalog (2 instances, one a canary version); each call is seen from both sides, every few
calls opens and closes a TCP connection, and every instance reports its load every 5 s.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass

from pipeline import events
from pipeline.kafka import make_producer
from pipeline.topics import KEY_FIELD, TOPIC_BY_KIND


@dataclass(frozen=True)
class DemoInstance:
    service: str
    address: str
    version: str
    error_rate: float
    latency_ms: float


FLEET = (
    DemoInstance("shop.checkout", "127.0.0.11:8080", "v1.4.2", 0.002, 18.0),
    DemoInstance("shop.checkout", "127.0.0.12:8080", "v1.4.2", 0.003, 20.0),
    DemoInstance("shop.checkout", "127.0.0.13:8080", "v1.4.2", 0.08, 140.0),  # the sick one
    DemoInstance("shop.catalog", "127.0.0.21:8080", "v2.0.0", 0.001, 6.0),
    DemoInstance("shop.catalog", "127.0.0.22:8080", "v2.1.0-rc1", 0.004, 7.5),  # a canary
)
INTERFACES = {"shop.checkout": ("POST /orders", "GET /orders/{order_id}"),
              "shop.catalog": ("GET /items/{item_id}", "GET /items")}


def rpc_events(instance: DemoInstance, rng: random.Random, now_ms: int, host: str) -> list[events.Event]:
    """One call seen by the client (frontend) and by the server (the instance)."""
    latency = max(0.3, rng.lognormvariate(0, 0.35) * instance.latency_ms)
    failed = rng.random() < instance.error_rate
    common = {"v": 1, "ts_ms": now_ms, "caller": "shop.frontend", "callee": instance.service,
              "interface": rng.choice(INTERFACES[instance.service]), "instance": instance.address,
              "status": "error" if failed else "ok", "code": "503" if failed else "200",
              "version": instance.version, "host": host, "cgroup": ""}
    return [{**common, "side": "server", "latency_ms": round(latency, 3)},
            {**common, "side": "client", "latency_ms": round(latency + rng.uniform(0.2, 1.5), 3)}]


def tcp_event(instance: DemoInstance, rng: random.Random, now_ms: int, host: str) -> events.Event:
    address, port = instance.address.rsplit(":", 1)
    return {"v": 1, "ts_ms": now_ms, "host": host, "pid": 4242, "comm": "frontend",
            "cgroup": "/system.slice/shop-frontend.service", "family": 4, "laddr": "127.0.0.1",
            "lport": rng.randint(32768, 60999), "raddr": address, "rport": int(port), "role": "client",
            "tx_bytes": rng.randint(200, 40_000), "rx_bytes": rng.randint(500, 400_000),
            "duration_ms": round(rng.expovariate(1 / 800), 3)}


def load_event(instance: DemoInstance, rng: random.Random, now_ms: int, host: str,
               calls_per_s: float) -> events.Event:
    cpu = 0.05 + calls_per_s * instance.latency_ms / 1000 * 0.35 * rng.uniform(0.9, 1.1)
    return {"v": 1, "ts_ms": now_ms, "host": host, "cgroup": f"/demo/{instance.address}",
            "instance": instance.address, "cpu_cores": round(cpu, 4), "cpu_limit_cores": 2.0,
            "mem_bytes": int(rng.uniform(180, 220) * 2**20), "mem_limit_bytes": 512 * 2**20}


class DemoFleet:
    """Emits ~calls_per_s calls per second across the fleet until stop() (run it in a thread)."""

    def __init__(self, bootstrap: str, calls_per_s: float = 60.0, seed: int = 7) -> None:
        self.bootstrap = bootstrap
        self.calls_per_s = calls_per_s
        self.rng = random.Random(seed)
        self.host = socket.gethostname()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        producer = make_producer(self.bootstrap, linger_ms=50)
        next_load = 0.0
        try:
            while not self._stop.wait(0.1):
                now_ms = int(time.time() * 1000)
                emitted: list[tuple[str, events.Event]] = []
                for _ in range(max(1, int(self.calls_per_s / 10))):
                    instance = self.rng.choice(FLEET)
                    emitted += [("rpc", e) for e in rpc_events(instance, self.rng, now_ms, self.host)]
                    if self.rng.random() < 0.2:
                        emitted.append(("tcp", tcp_event(instance, self.rng, now_ms, self.host)))
                if time.monotonic() >= next_load:
                    per_instance = self.calls_per_s / len(FLEET)
                    emitted += [("load", load_event(i, self.rng, now_ms, self.host, per_instance)) for i in FLEET]
                    next_load = time.monotonic() + 5
                for kind, event in emitted:
                    producer.send(TOPIC_BY_KIND[kind], key=str(event[KEY_FIELD[kind]]).encode(),
                                  value=events.encode(kind, event))
        finally:
            producer.close(timeout=5)
