"""Caddy without reloads: the weights reach Caddy as DNS SRV answers it re-reads (docs/caddy.md).

    svcpulse balancer caddy --api http://svcpulse:8000 --service shop.cart --handler cart \\
        --dns 127.0.0.1:5380 [--dns-zone /var/lib/svcpulse/shop.cart.zone.json]

Every admin-API change makes Caddy load its whole configuration again, and that swap can drop a
request (docs/caddy.md, "Connections during a change"). So by default the adapter changes Caddy's
config once, to wire the handler to itself, and from then on changes only what its own DNS server
answers (balancer/srv.py):
- `dynamic_upstreams` `source: srv` names `<service>.svcpulse.` at this adapter, refreshed every
  second, with a grace period: Caddy keeps the last answer while the adapter is away;
- the handler's HTTP transport resolves upstream names at this adapter too, because SRV targets must
  be names (resolvers refuse "127.0.0.1." as a target), so each instance gets one in the zone;
- `round_robin` walks the answer, in which each instance appears in proportion to its weight.
The handler's `upstreams` stay as Caddy's fallback for a lookup with nothing cached (Caddy restarted
while the adapter was down).

Caddy also resolves each new upstream connection's name here, so while a DNS server inside the
adapter is away, such a request fails. With --dns-zone FILE the adapter writes the rotation to FILE
for `svcpulse balancer caddy-dns` (balancer/caddy_dns_server.py), a server of its own that keeps
answering while the adapter restarts; an apply returns once that server answers the new rotation.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path
from typing import Any

from balancer.adapter import BalancerError, routable_weights
from balancer.caddy import CaddyAdapter
from balancer.caddy_dns_server import write_zone
from balancer.client import FeedView
from balancer.srv import SrvServer, Zone, ask_srv, rotation, slots

REFRESH, GRACE = "1s", "10s"  # Caddy re-reads the rotation every second; keeps it 10 s per failed lookup
SERVER_WAIT_S = 2.0  # how long an apply waits for a separate DNS server (it re-reads the file every 0.1 s)


def srv_name(service: str) -> str:
    """The SRV name a service's rotation is served under: "shop.cart" -> "shop.cart.svcpulse." (pure)."""
    labels = [re.sub(r"[^a-z0-9-]+", "-", part.lower()).strip("-") or "x" for part in service.split(".")]
    return ".".join([*labels, "svcpulse", ""])


def wiring(handler: dict[str, Any], name: str, resolver: str) -> dict[str, Any]:
    """The handler reading its upstreams from this adapter's DNS; other settings kept (pure)."""
    transport = dict(handler.get("transport") or {"protocol": "http"})
    if transport.get("protocol") != "http":
        raise BalancerError(f"the handler's transport is {transport.get('protocol')!r}: SRV upstreams need 'http'")
    transport["resolver"] = {"addresses": [resolver]}
    dynamic = {"source": "srv", "name": name, "refresh": REFRESH, "grace_period": GRACE, "dial_timeout": "1s",
               "resolver": {"addresses": [resolver]}}
    balancing = {**(handler.get("load_balancing") or {}), "selection_policy": {"policy": "round_robin"}}
    return {**handler, "dynamic_upstreams": dynamic, "transport": transport, "load_balancing": balancing}


def is_wired(handler: dict[str, Any], name: str, resolver: str) -> bool:
    wired = wiring(handler, name, resolver)
    return all(handler.get(key) == wired[key] for key in ("dynamic_upstreams", "transport", "load_balancing"))


class CaddyDnsAdapter(CaddyAdapter):
    """Applies a feed by swapping its DNS answer; touches Caddy's config only to wire the handler."""

    def __init__(self, admin: str, handler: str, service: str, dns_listen: str, timeout_s: float = 10.0,
                 zone_file: Path | None = None) -> None:
        super().__init__(admin, handler, timeout_s)
        self.name, self.dns_listen, self.zone_file = srv_name(service), dns_listen, zone_file
        self.dns: SrvServer | None = None  # started by the first apply: --dry-run binds nothing

    def target(self) -> str:
        return f"Caddy handler {self.url} via DNS SRV {self.name} at {self.resolver}"

    def render(self, view: FeedView) -> str:
        return json.dumps(rotation(slots(routable_weights(view))))

    def apply(self, rendered: str) -> None:
        if self.zone_file is not None:
            self._hand_to_dns_server(self.zone_file, json.loads(rendered))
        else:
            if self.dns is None:
                try:
                    self.dns = SrvServer(self.dns_listen, self.name)
                except OSError as err:
                    raise BalancerError(f"cannot serve DNS for Caddy on tcp/{self.dns_listen}: {err}") from err
            self.dns.publish(json.loads(rendered))  # Caddy reads it at its next refresh
        handler, etag = self._get()
        if not is_wired(handler, self.name, self.resolver):
            answer = self._call("PATCH", json=wiring(handler, self.name, self.resolver), headers={"If-Match": etag})
            if answer.status_code != 200:
                raise BalancerError(f"Caddy refused wiring {self.url} to SRV {self.name}: "
                                    f"{answer.status_code} {answer.text[:500]}")

    def verify(self, rendered: str) -> str:
        if self.zone_file is not None:
            served = self._served()
            if served != list(Zone.of(self.name, json.loads(rendered)).records):
                return f"the DNS server at tcp/{self.dns_listen} does not answer the rendered rotation: {served}"
        elif self.dns is None or self.dns.dials != json.loads(rendered):
            return "the DNS answer is not the rendered rotation"
        return "" if is_wired(self._get()[0], self.name, self.resolver) else f"{self.url} is not wired to {self.name}"

    @property
    def resolver(self) -> str:
        return f"tcp/{self.dns.address if self.dns else self.dns_listen}"

    def _hand_to_dns_server(self, zone_file: Path, dials: list[str]) -> None:
        """Write the zone file and return once the separate server answers it (it polls the file)."""
        try:
            write_zone(zone_file, self.name, dials)
        except OSError as err:
            raise BalancerError(f"cannot write the zone file {zone_file}: {err}") from err
        expected, deadline = list(Zone.of(self.name, dials).records), time.monotonic() + SERVER_WAIT_S
        while (served := self._served()) != expected:
            if time.monotonic() > deadline:
                raise BalancerError(f"the DNS server at tcp/{self.dns_listen} does not answer what was written to "
                                    f"{zone_file} ({served}): is `svcpulse balancer caddy-dns --listen "
                                    f"{self.dns_listen} --zone {zone_file}` running?")
            time.sleep(0.02)

    def _served(self) -> list[tuple[str, int]] | str:
        try:
            return ask_srv(self.dns_listen, self.name)
        except (OSError, ValueError, struct.error) as err:
            return f"no answer: {err}"

    def close(self) -> None:
        if self.dns is not None:
            self.dns.close()
        self.http.close()

    def _accepts(self, handler: dict[str, Any]) -> None:
        pass  # dynamic_upstreams are what this adapter sets
