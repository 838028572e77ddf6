"""Keep a Caddy reverse_proxy's upstreams and weights in step with the svcpulse weight feed (docs/caddy.md).

    svcpulse balancer caddy --api http://svcpulse:8000 --service shop.cart \\
        --admin http://127.0.0.1:2019 --handler cart

Caddy >= 2.8 (lb_policy weighted_round_robin). The handler is found by its "@id" in Caddy's JSON
config (or by a config path starting with "/config/"). Each change is one PATCH of that handler
through the admin API, guarded by the ETag of the GET before it (If-Match), so a concurrent edit is
never overwritten: Caddy swaps the config in-process, with no restart and no `caddy reload`.

Mapping: every feed instance is an upstream, in name order, with its weight in the policy's
`weights` list; ejected, drained and weight-0 instances get weight 0, which Caddy skips (measured:
tests/integration/test_balancers_real.py). Caddy rejects a policy whose weights are all 0, and so
does the render (the last good config stays). Weights are divided by their greatest common divisor:
Caddy's policy counts requests modulo the weights' sum from 0 again after every config change, so a
shorter cycle keeps shares right even when changes come often.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from pathlib import Path
from typing import Any

import httpx

from balancer import loop
from balancer.adapter import Adapter, BalancerError, routable_weights
from balancer.client import FeedView
from balancer.loop import add_loop_flags

POLICY = "weighted_round_robin"


def render_policy(view: FeedView) -> dict[str, list[Any]]:
    """{"upstreams": [dial, ...], "weights": [n, ...]}, aligned and in instance-name order (pure)."""
    routed = routable_weights(view)
    divisor = math.gcd(*routed.values())
    names = sorted(view.weights)
    return {"upstreams": names, "weights": [routed.get(name, 0) // divisor for name in names]}


def merge_handler(handler: dict[str, Any], policy: dict[str, list[Any]]) -> dict[str, Any]:
    """The handler with the feed's upstreams and weights; its other settings (transport, health checks,
    retries, headers, per-upstream max_requests) are kept (pure)."""
    existing = {u.get("dial"): u for u in handler.get("upstreams") or []}
    upstreams = [existing.get(dial, {"dial": dial}) for dial in policy["upstreams"]]
    balancing = {**(handler.get("load_balancing") or {}),
                 "selection_policy": {"policy": POLICY, "weights": policy["weights"]}}
    return {**handler, "upstreams": upstreams, "load_balancing": balancing}


def held_policy(handler: dict[str, Any]) -> dict[str, list[Any]]:
    """What a handler from the admin API holds, in render_policy's shape."""
    selection = (handler.get("load_balancing") or {}).get("selection_policy") or {}
    weights = selection.get("weights", []) if selection.get("policy") == POLICY else []
    return {"upstreams": [u.get("dial") for u in handler.get("upstreams") or []], "weights": weights}


class CaddyAdapter(Adapter):
    kind = "caddy"

    def __init__(self, admin: str, handler: str, timeout_s: float = 10.0) -> None:
        where = handler if handler.startswith("/") else f"/id/{handler}"
        self.admin, self.url = admin.rstrip("/"), admin.rstrip("/") + where
        # One client for the adapter's life: a client per call built a new SSL context every time
        # (~0.1 s of CPU per apply, bench/balancers.py); keep-alive to the admin API comes with it.
        self.http = httpx.Client(timeout=timeout_s)

    def target(self) -> str:
        return f"Caddy handler {self.url}"

    def render(self, view: FeedView) -> str:
        return json.dumps(render_policy(view), indent=1)

    def apply(self, rendered: str) -> None:
        policy = json.loads(rendered)
        for _ in range(3):  # 412: the config changed between our GET and PATCH; read it again
            handler, etag = self._get()
            answer = self._call("PATCH", json=merge_handler(handler, policy), headers={"If-Match": etag})
            if answer.status_code != 412:
                break
        if answer.status_code != 200:
            raise BalancerError(f"Caddy refused the change to {self.url}: {answer.status_code} {answer.text[:500]}")

    def verify(self, rendered: str) -> str:
        held = held_policy(self._get()[0])
        wanted = json.loads(rendered)
        return "" if held == wanted else f"Caddy holds {json.dumps(held)}"

    def _get(self) -> tuple[dict[str, Any], str]:
        answer = self._call("GET")
        if answer.status_code != 200:
            raise BalancerError(f"GET {self.url}: {answer.status_code} {answer.text[:300]} (is the @id right?)")
        handler = answer.json()
        if not isinstance(handler, dict) or handler.get("handler") != "reverse_proxy":
            raise BalancerError(f"{self.url} is not a reverse_proxy handler")
        self._accepts(handler)
        return handler, answer.headers.get("etag", "")

    def _accepts(self, handler: dict[str, Any]) -> None:
        if handler.get("dynamic_upstreams"):
            raise BalancerError(f"{self.url} uses dynamic_upstreams: run with --updates dns, or give it a static "
                                "upstream list")

    def _call(self, method: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, self.url, **kwargs)
        except httpx.HTTPError as err:
            raise BalancerError(f"Caddy admin API at {self.admin}: {err}") from err


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", default="http://127.0.0.1:2019", help="Caddy admin API (default :2019)")
    parser.add_argument("--handler", required=True,
                        help='the reverse_proxy handler: its "@id", or a config path such as '
                             "/config/apps/http/servers/srv0/routes/0/handle/0")
    parser.add_argument("--updates", choices=["dns", "admin"], default="dns",
                        help="dns (default): wire the handler once to SRV answers served by this adapter, then "
                             "change only those (no Caddy reload, no dropped request); admin: PATCH the "
                             "weights through the admin API each time (a config reload per change)")
    parser.add_argument("--dns", default="127.0.0.1:5380", metavar="HOST:PORT",
                        help="where the adapter serves DNS over TCP for Caddy with --updates dns; Caddy dials "
                             "this address (default 127.0.0.1:5380)")
    parser.add_argument("--dns-zone", type=Path, metavar="FILE",
                        help="with --updates dns: write each rotation to FILE for a separate `svcpulse balancer "
                             "caddy-dns --zone FILE` serving at --dns, instead of serving DNS in this process; "
                             "Caddy then keeps opening upstream connections while this adapter restarts")
    add_loop_flags(parser)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    if getattr(args, "updates", "dns") == "admin":
        return loop.run(args, CaddyAdapter(args.admin, args.handler), stop)
    from balancer.caddy_dns import CaddyDnsAdapter  # it builds on this module
    if args.once and args.dns_zone is None:
        print("[caddy] --once needs --updates admin or --dns-zone: otherwise Caddy reads the weights from this "
              "process's DNS server, which must keep running", flush=True)
        return 2
    adapter = CaddyDnsAdapter(args.admin, args.handler, args.service, args.dns, zone_file=args.dns_zone)
    try:
        return loop.run(args, adapter, stop)
    finally:
        adapter.close()
