"""Keep a real HAProxy backend's server weights in step with the svcpulse weight feed (docs/haproxy.md).

    svcpulse balancer haproxy --api http://svcpulse:8000 --service shop.cart \\
        --socket /run/haproxy/admin.sock --backend cart

One adapter of the shared loop (balancer/loop.py: long-poll, last known good, backoff, --dry-run,
/metrics). Each feed instance "host:port" is matched to the backend's server with that address and
port (`show servers state`); its weight is set with `set server <backend>/<server> weight N`.
A weight of 0 puts the server in drain state (no new requests, open ones finish); a later non-zero
weight makes it ready again. Only servers
that svcpulse drained (admin state exactly "forced drain") are made ready again, so a server an
operator put in maintenance by hand stays there. Servers the feed does not list are left alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from balancer import loop
from balancer.adapter import Adapter, BalancerError, routable_weights, scale_down
from balancer.client import FeedView
from balancer.loop import add_loop_flags

log = logging.getLogger("svcpulse.haproxy")

MAX_WEIGHT = 256  # HAProxy's largest server weight
FORCED_DRAIN = 0x08  # srv_admin_state bit for "set server ... state drain"


class RuntimeApiError(BalancerError):
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
    """Feed weights on HAProxy's 0..256 scale (scaled down together only when one exceeds 256)."""
    return scale_down(weights, MAX_WEIGHT)


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


class HAProxyAdapter(Adapter):
    """One backend's server weights through the runtime API socket."""

    kind = "haproxy"

    def __init__(self, socket_path: str, backend: str) -> None:
        self.socket_path, self.backend = socket_path, backend

    def target(self) -> str:
        return f"backend {self.backend} via {self.socket_path}"

    def render(self, view: FeedView) -> str:
        routable_weights(view)  # refuses a feed that routes nothing
        return json.dumps(haproxy_weights(view.weights), sort_keys=True, indent=1)

    def apply(self, rendered: str) -> None:
        weights: dict[str, int] = json.loads(rendered)
        servers = self._servers()
        unmatched = set(weights) - {s.address for s in servers}
        if unmatched:
            log.warning("feed instances with no server in backend %s: %s", self.backend, sorted(unmatched))
        for command in plan(self.backend, servers, weights):
            answer = runtime(self.socket_path, command).strip()
            if answer:  # HAProxy answers successful set commands with an empty line
                raise RuntimeApiError(f"{command!r}: {answer}")
            log.info("%s", command)

    def verify(self, rendered: str) -> str:
        return "; ".join(plan(self.backend, self._servers(), json.loads(rendered)))

    def _servers(self) -> list[Server]:
        return parse_servers_state(runtime(self.socket_path, f"show servers state {self.backend}"))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", required=True, help="HAProxy stats socket (stats socket ... level admin)")
    parser.add_argument("--backend", required=True, help="HAProxy backend whose servers to weight")
    add_loop_flags(parser)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    return loop.run(args, HAProxyAdapter(args.socket, args.backend), stop)
