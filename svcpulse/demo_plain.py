"""The demo's service that runs no svcpulse code: steered from callers' TCP connections alone.

legacy.web is three `python -m http.server` processes (the standard library's, nothing of svcpulse
inside). shop.frontend calls them through the Balancer following the feed, with a plain httpx client
(no interceptor: no rpc event exists for legacy.web). The service is registered with signal "tcp",
so its weights come from what `collect tcp` sees of those connections. To show the loop at work, the
third instance crashes for OUTAGE_S every CYCLE_S: its port refuses, the feed ejects it within
seconds, probes it at ~1%, and it slow-starts back after restarting. Needs the eBPF collector (root).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

from balancer.client import Balancer, WeightFeedClient
from svcpulse.fleet import paced_calls
from svcpulse.services import free_port

log = logging.getLogger("svcpulse.demo")
SERVICE = "legacy.web"
CYCLE_S, OUTAGE_S = 120.0, 40.0  # the flaky instance is down 40 s of every 2 minutes


class PlainFleet:
    def __init__(self, api_base: str, token: str, calls_per_s: float = 15.0, size: int = 3) -> None:
        self.api_base, self.token, self.calls_per_s = api_base, token, calls_per_s
        self.ports = [free_port() for _ in range(size)]
        self._docroot = Path(tempfile.mkdtemp(prefix="svcpulse-legacy-"))
        (self._docroot / "index.html").write_text("legacy.web: no svcpulse code in here\n")
        self._servers: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def start(self) -> bool:
        """Start the servers, register the service and call it; False (all stopped) if it cannot register."""
        for port in self.ports:
            self._serve(port)
        try:
            self._register()
        except httpx.HTTPError as err:
            log.warning("demo: %s not started: registering it failed: %s", SERVICE, err)
            self.stop()
            return False
        for target in (self._drive, self._flap):
            thread = threading.Thread(target=target, name=f"demo-{SERVICE}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return True

    def _serve(self, port: int) -> None:
        # -I: isolated mode; the standard library's server, started as its own process.
        self._servers[port] = subprocess.Popen(
            [sys.executable, "-I", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
             str(self._docroot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _crash(self, port: int) -> None:
        server = self._servers.pop(port, None)
        if server is not None:
            server.kill()
            server.wait(timeout=10)

    def _register(self) -> None:
        body = {"kind": "ip", "signal": "tcp", "instances": self.addresses,
                "description": "plain http.server, no svcpulse code: weights from TCP health",
                "why": "demo: a service steered from its connections alone"}
        answer = httpx.put(f"{self.api_base}/v1/registry/services/{SERVICE}", json=body, timeout=30,
                           headers={"Authorization": f"Bearer {self.token}"})
        answer.raise_for_status()

    def _drive(self) -> None:
        with WeightFeedClient(self.api_base, SERVICE, wait_s=10, fallback=self.addresses) as feed, \
                httpx.Client(timeout=1.0) as client:
            def fetch(instance: str) -> bool:
                try:
                    return client.get(f"http://{instance}/").status_code < 500
                except httpx.HTTPError:
                    return False

            paced_calls(Balancer(feed, picker="swrr"), self._stop, self.calls_per_s, fetch)

    def _flap(self) -> None:
        flaky = self.ports[-1]
        while not self._stop.wait(CYCLE_S - OUTAGE_S):
            log.info("demo: %s instance 127.0.0.1:%d crashes for %.0f s", SERVICE, flaky, OUTAGE_S)
            self._crash(flaky)
            if self._stop.wait(OUTAGE_S):
                return
            self._serve(flaky)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        for port in list(self._servers):
            self._crash(port)
