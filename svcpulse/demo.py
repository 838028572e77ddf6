"""The demo of `svcpulse up`: real instrumented HTTP services, called through svcpulse's own balancer.

shop.frontend calls shop.checkout (3 instances, one of them sick: 8% errors, +120 ms) and
shop.catalog (2 instances, one a canary version). Every instance is a real uvicorn server wrapped in
the ASGI interceptor (server-side rpc events); every call goes out through the httpx interceptor
(client-side rpc events) to the instance the Balancer picks from the live weight feed, so the console
shows the feedback loop at work: the sick instance's share drops within seconds.
When root, the eBPF tcplife collector records the real connections, and legacy.web joins: a service
that runs no svcpulse code, steered from its connections alone (svcpulse/demo_plain.py). Per-instance CPU cannot be
measured for threads of one process, so each instance's load event is derived from the calls it
served (CPU = calls x service time), which is what capacity estimates read.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from collections import Counter

import httpx

from api.queries.discovery import write_policy
from balancer.client import Balancer, WeightFeedClient
from collectors.rpc.common import RpcConfig
from collectors.rpc.emitter import Emitter
from collectors.rpc.httpx import SvcpulseTransport
from collectors.sink import open_sink
from pipeline.store import Store
from svcpulse.demo_plain import PlainFleet
from svcpulse.fleet import Fleet, paced_calls

log = logging.getLogger("svcpulse.demo")
CALLER = "shop.frontend"
# service -> (version, error rate, extra ms) per instance
FLEET_SPEC = {
    "shop.checkout": (("v1.4.2", 0.002, 0.0), ("v1.4.2", 0.003, 0.0), ("v1.4.2", 0.08, 120.0)),
    "shop.catalog": (("v2.0.0", 0.001, 0.0), ("v2.1.0-rc1", 0.004, 0.0)),
}
LOAD_EVERY_S = 5.0


def admit_demo_fleet(store: Store) -> None:
    """Discovery policies for the demo services: their instances listen on loopback and report themselves."""
    for service in FLEET_SPEC:
        write_policy(store, service, ["127.0.0.0/8"], changed_by="svcpulse up", why="the demo fleet on loopback")


class DemoFleet:
    """Starts the fleets, drives ~calls_per_s per service through the feed, and stops it all."""

    def __init__(self, bootstrap: str, api_base: str, calls_per_s: float = 25.0, ebpf: bool = True,
                 token: str = "") -> None:
        self.bootstrap, self.api_base, self.calls_per_s, self.ebpf = bootstrap, api_base, calls_per_s, ebpf
        self.token = token  # an operator's: registers legacy.web
        self.fleets = {service: self._fleet(service, spec) for service, spec in FLEET_SPEC.items()}
        self._sink = open_sink(bootstrap, linger_ms=50)
        self._emitter = Emitter(self._sink)
        self._stop = threading.Event()
        self._served: Counter[str] = Counter()  # calls per instance since the last load event
        self._threads: list[threading.Thread] = []
        self.tcp_collector = "off"
        self.plain: PlainFleet | None = None

    def _fleet(self, service: str, spec: tuple[tuple[str, float, float], ...]) -> Fleet:
        fleet = Fleet(service, self.bootstrap, size=len(spec), versions=tuple(v for v, _, _ in spec))
        for instance, (_, error_rate, extra_ms) in zip(fleet.instances, spec, strict=True):
            instance.error_rate, instance.extra_ms = error_rate, extra_ms
        return fleet

    def start(self) -> None:
        self._emitter.start()
        for fleet in self.fleets.values():
            fleet.__enter__()
        for service in self.fleets:
            self._spawn(f"demo-{service}", self._drive, service)
        self._spawn("demo-load", self._report_load)
        if self.ebpf:
            self._start_tcplife()

    def _spawn(self, name: str, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _drive(self, service: str) -> None:
        """Call `service` at a steady rate through the balancer that follows its weight feed."""
        fleet = self.fleets[service]
        transport = SvcpulseTransport(RpcConfig(service=CALLER, version="v9.1.0"), callee=service,
                                      routes=["/work"], emitter=self._emitter)
        with WeightFeedClient(self.api_base, service, wait_s=10, fallback=fleet.addresses) as feed, \
                httpx.Client(transport=transport, timeout=2.0) as client:
            def work(instance: str) -> bool:
                try:
                    return client.get(f"http://{instance}/work").status_code < 500
                except httpx.HTTPError:
                    return False

            paced_calls(Balancer(feed, picker="swrr"), self._stop, self.calls_per_s, work, self._served)

    def _report_load(self) -> None:
        host = socket.gethostname()
        while not self._stop.wait(LOAD_EVERY_S):
            served, self._served = self._served, Counter()
            for fleet in self.fleets.values():
                for instance in fleet.instances:
                    rps = served[instance.address] / LOAD_EVERY_S
                    busy_s = (instance.base_ms + instance.extra_ms) / 1000
                    self._sink.send("load", {
                        "v": 1, "ts_ms": int(time.time() * 1000), "host": host, "cgroup": "",
                        "instance": instance.address, "cpu_cores": round(0.02 + rps * busy_s * 0.6, 4),
                        "cpu_limit_cores": 1.0, "mem_bytes": 96 * 2**20, "mem_limit_bytes": 512 * 2**20})

    def _start_tcplife(self) -> None:
        if os.geteuid() != 0:
            self.tcp_collector = "off (eBPF needs root)"
            return
        from collectors import tcplife

        parser = argparse.ArgumentParser()
        tcplife.configure(parser)
        args = parser.parse_args(["--output", "kafka", "--bootstrap", self.bootstrap])
        self.tcp_collector = "on (eBPF tcplife)"
        self._spawn("demo-tcplife", self._run_tcplife, tcplife, args)
        plain = PlainFleet(self.api_base, self.token)
        self.plain = plain if plain.start() else None

    def _run_tcplife(self, tcplife: object, args: argparse.Namespace) -> None:
        code = tcplife.run(args, stop=self._stop)  # type: ignore[attr-defined]
        if code:
            log.warning("the eBPF collector stopped with exit code %s; connections are not recorded", code)

    def stop(self) -> None:
        self._stop.set()
        if self.plain is not None:
            self.plain.stop()
        for thread in self._threads:
            thread.join(timeout=15)
        for fleet in self.fleets.values():
            fleet.__exit__(None, None, None)
        self._emitter.close()
        self._sink.close()
