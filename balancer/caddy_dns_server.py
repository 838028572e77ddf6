"""`svcpulse balancer caddy-dns`: the Caddy adapter's DNS server as a process of its own (docs/caddy.md).

    svcpulse balancer caddy-dns --listen 127.0.0.1:5380 --zone /var/lib/svcpulse/shop.cart.zone.json
    svcpulse balancer caddy --service shop.cart ... --dns 127.0.0.1:5380 \\
        --dns-zone /var/lib/svcpulse/shop.cart.zone.json

Caddy resolves the name of every new upstream connection at the adapter's DNS server (SRV targets
must be names, balancer/srv.py). With the server inside the adapter, a request that needs a new
upstream connection fails (502) while the adapter is away: restarted, upgraded or crashed. Caddy's
grace period covers only the SRV lookup, and Go's resolver caches nothing. So this server runs on
its own, next to Caddy: the adapter writes each rotation to the zone file (atomically) and this
server answers from it. It keeps answering the last rotation while the adapter is away.
It re-reads the file within POLL_S of a change. A file it cannot read keeps the last good rotation,
and it says why.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

from balancer.adapter import split_address
from balancer.loop import stop_on_sigterm
from balancer.srv import SrvServer

POLL_S = 0.1  # the adapter's apply waits for the new answer, so this bounds its apply time
NO_ZONE_YET = "zone-file-not-written-yet.svcpulse."  # answered NXDOMAIN for every name until the file exists


def write_zone(path: Path, srv_name: str, dials: list[str]) -> None:
    """Replace the zone file whole (rename), so the server never reads half a rotation."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"name": srv_name, "dials": dials}))
    os.replace(partial, path)


def read_zone(path: Path) -> tuple[str, list[str]]:
    """(SRV name, dials) of a zone file; ValueError (or OSError) says what is wrong with it."""
    zone = json.loads(path.read_text())
    if not isinstance(zone, dict) or not isinstance(zone.get("name"), str) or not isinstance(zone.get("dials"), list):
        raise ValueError('not {"name": "<srv name>", "dials": ["host:port", ...]}')
    for dial in zone["dials"]:
        split_address(str(dial))  # raises on anything that is not host:port
    return zone["name"], [str(dial) for dial in zone["dials"]]


class ZoneFollower:
    """Publishes the zone file to the server each time the file is replaced."""

    def __init__(self, server: SrvServer, path: Path) -> None:
        self.server, self.path = server, path
        self.seen: tuple[int, int, int] | None = None  # inode, size, mtime of the file last read

    def check(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return  # not written yet, or being replaced: the last rotation stays
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if seen == self.seen:
            return
        self.seen = seen
        try:
            name, dials = read_zone(self.path)
        except (OSError, ValueError) as err:
            print(f"[caddy-dns] {self.path}: {err}; still answering the last rotation", flush=True)
            return
        self.server.publish(dials, name)
        print(f"[caddy-dns] answering {name} with a rotation of {len(dials)} ({len(set(dials))} instances)",
              flush=True)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:5380", metavar="HOST:PORT",
                        help="where to serve DNS over TCP; the adapter's --dns and Caddy dial it (default "
                             "127.0.0.1:5380)")
    parser.add_argument("--zone", required=True, type=Path, metavar="FILE",
                        help="the zone file `svcpulse balancer caddy --dns-zone FILE` writes")


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    stop = stop or stop_on_sigterm()
    try:
        server = SrvServer(args.listen, NO_ZONE_YET)
    except OSError as err:
        print(f"[caddy-dns] cannot serve DNS on tcp/{args.listen}: {err}", flush=True)
        return 1
    follower = ZoneFollower(server, args.zone)
    print(f"[caddy-dns] serving DNS on tcp/{server.address} from {args.zone} (re-read within {POLL_S} s of a "
          "change); point the adapter's --dns here", flush=True)
    try:
        while not stop.is_set():
            follower.check()
            stop.wait(POLL_S)
    finally:
        server.close()
    return 0
