"""Keep a real HAProxy backend's server weights in step with the svcpulse weight feed (docs/haproxy.md).

    svcpulse balancer haproxy --api http://svcpulse:8000 --service shop.cart \\
        --socket /run/haproxy/admin.sock --backend cart

The feed is followed by long-poll (balancer.client.WeightFeedClient). Each feed instance "host:port"
is matched to the backend's server with that address and port (`show servers state`); its weight
is set with `set server <backend>/<server> weight N`. A weight of 0 puts the server in drain state
(no new requests, open ones finish); a later non-zero weight makes it ready again. Only servers
that svcpulse drained (admin state exactly "forced drain") are made ready again, so a server an
operator put in maintenance by hand stays there. Servers the feed does not list are left alone.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from balancer.client import WeightFeedClient, WeightSource
from core.settings import Settings

log = logging.getLogger("svcpulse.haproxy")

MAX_WEIGHT = 256  # HAProxy's largest server weight
FORCED_DRAIN = 0x08  # srv_admin_state bit for "set server ... state drain"


class RuntimeApiError(RuntimeError):
    """HAProxy refused a command or its socket is unreachable; the message says which."""


@dataclass(frozen=True)
class Server:
    name: str
    address: str  # "addr:port", as the feed names instances
    weight: int
    admin_state: int


def runtime(socket_path: str, command: str, timeout_s: float = 5.0) -> str:
    """One runtime API command over the stats socket (HAProxy closes it after answering)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout_s)
            conn.connect(socket_path)
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as err:
        raise RuntimeApiError(f"HAProxy runtime API at {socket_path}: {err}") from err
    return b"".join(chunks).decode()


def parse_servers_state(text: str) -> list[Server]:
    """Servers from `show servers state <backend>` (columns named by its "# ..." header line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line[2:].split() for line in lines if line.startswith("# ")), None)
    if header is None:
        raise RuntimeApiError(f"unexpected answer to 'show servers state': {text.strip()[:200]!r}")
    servers = []
    for line in lines:
        if line.startswith("#") or len(line.split()) < len(header):
            continue  # the format version line, or a truncated row
        row = dict(zip(header, line.split(), strict=False))
        servers.append(Server(row["srv_name"], f"{row['srv_addr']}:{row['srv_port']}", int(row["srv_uweight"]),
                              int(row["srv_admin_state"])))
    return servers


def haproxy_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """Feed weights on HAProxy's 0..256 scale: scaled down together only when one exceeds 256
    (a gray release can publish weights in the thousands); a positive weight stays >= 1."""
    top = max(weights.values(), default=0)
    if top <= MAX_WEIGHT:
        return dict(weights)
    return {k: max(1, round(w * MAX_WEIGHT / top)) if w > 0 else 0 for k, w in weights.items()}


def plan(backend: str, servers: Sequence[Server], weights: Mapping[str, int]) -> list[str]:
    """The runtime commands that bring `servers` to `weights` (pure; empty when already there)."""
    scaled = haproxy_weights(weights)
    commands = []
    for server in servers:
        target = scaled.get(server.address)
        if target is None:
            continue
        ref = f"{backend}/{server.name}"
        drained = bool(server.admin_state & FORCED_DRAIN)
        if target == 0:
            if not drained:
                commands.append(f"set server {ref} state drain")
            continue
        if server.weight != target:
            commands.append(f"set server {ref} weight {target}")
        if server.admin_state == FORCED_DRAIN:
            commands.append(f"set server {ref} state ready")
    return commands


class HAProxySync:
    """Applies the feed's current weights to one backend; `sync()` is one pass, `run()` loops."""

    def __init__(self, feed: WeightSource, socket_path: str, backend: str) -> None:
        self.feed, self.socket_path, self.backend = feed, socket_path, backend

    def sync(self) -> list[str]:
        """One pass: read the servers, apply what differs; returns the commands sent."""
        weights = self.feed.current().weights
        servers = parse_servers_state(runtime(self.socket_path, f"show servers state {self.backend}"))
        unmatched = set(weights) - {s.address for s in servers}
        if unmatched:
            log.warning("feed instances with no server in backend %s: %s", self.backend, sorted(unmatched))
        commands = plan(self.backend, servers, weights)
        for command in commands:
            answer = runtime(self.socket_path, command).strip()
            if answer:  # HAProxy answers successful set commands with an empty line
                raise RuntimeApiError(f"{command!r}: {answer}")
            log.info("%s", command)
        return commands

    def run(self, stop: threading.Event, check_s: float = 0.5, resync_s: float = 10.0) -> None:
        """Sync on every new feed revision and every resync_s (HAProxy reloads reset weights)."""
        last_key, last_sync = None, 0.0
        while not stop.wait(check_s):
            view = self.feed.current()
            if not view.weights or (view.key == last_key and time.monotonic() - last_sync < resync_s):
                continue
            try:
                self.sync()
                last_key, last_sync = view.key, time.monotonic()
            except RuntimeApiError as err:
                log.warning("%s (retrying)", err)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", required=True, help="svcpulse API base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--service", required=True, help="service whose feed to follow, e.g. shop.cart")
    parser.add_argument("--socket", required=True, help="HAProxy stats socket (stats socket ... level admin)")
    parser.add_argument("--backend", required=True, help="HAProxy backend whose servers to weight")
    parser.add_argument("--token",
                        help="bearer token (viewer); default $SVCPULSE_TOKEN")
    parser.add_argument("--resync", type=float, default=10.0, help="re-apply at least every N s (default 10)")
    parser.add_argument("--once", action="store_true", help="apply the current feed once and exit")


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    with WeightFeedClient(args.api, args.service, token=args.token or Settings().token or None) as feed:
        if not feed.wait_ready(timeout=10):
            print(f"svcpulse balancer haproxy: no feed for {args.service} from {args.api}: {feed.last_error}")
            return 1
        sync = HAProxySync(feed, args.socket, args.backend)
        print(f"[haproxy] following {args.service} into backend {args.backend} via {args.socket}", flush=True)
        if args.once:
            print(f"[haproxy] {len(sync.sync())} command(s) applied", flush=True)
            return 0
        sync.run(stop or _stop_on_sigterm(), resync_s=args.resync)
    return 0


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a clean stop under systemd/docker
    return stop
