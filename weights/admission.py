"""Who may create a routable endpoint (pure): the registry, or a discovery policy an operator turned on.

Telemetry describes endpoints; it does not create them. Anyone who can write to `svcpulse.rpc` can
claim that `shop.cart` has an instance at `203.0.113.66:443`, so an observed instance reaches the feed
only when:

- the registry holds it (written through the API by an operator or an automation token), or
- its service has a discovery policy (`PUT /v1/discovery/{service}`, admin) that admits it: the
  address is an IP inside one of the policy's CIDRs, the port is one of its ports (none listed = any),
  and — unless the policy says otherwise — the instance reported itself (a server-side event), so a
  client cannot route traffic to an address by merely claiming it called it. A policy-admitted
  instance leaves the feed `forget_ms` after its last admitted report, like any observation.

Everything else observed is "observed, not routable": listed by the API and the console with the
reason, never published in the feed. Registry rows written by older versions' automatic discovery
(`source = "discovered"`) count as observations, not as registrations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from weights.model import STATIC_WEIGHT

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Key = tuple[str, str]  # (service, instance)
LEGACY_DISCOVERED = "discovered"  # registry `source` of rows older versions wrote from telemetry
POLICY_SOURCE = "policy"  # `source` of the registry-shaped rows admission makes for admitted instances
NOT_ROUTABLE = "observed, not routable"


@dataclass(frozen=True)
class DiscoveryPolicy:
    """What an operator allows telemetry to add to one service's feed."""

    service: str
    networks: tuple[IpNetwork, ...]
    ports: frozenset[int] = frozenset()  # empty: any port
    server_side_only: bool = True

    def refusal(self, instance: str, server_seen: bool) -> str | None:
        """None when the policy admits `instance`, else why not (shown to operators)."""
        address = parse_endpoint(instance)
        if address is None:
            return f"{NOT_ROUTABLE}: not an IP:port, which a discovery policy could admit"
        ip, port = address
        if not any(ip.version == net.version and ip in net for net in self.networks):
            listed = ", ".join(str(net) for net in self.networks)
            return f"{NOT_ROUTABLE}: {ip} is outside the discovery policy's ranges ({listed})"
        if self.ports and port not in self.ports:
            return f"{NOT_ROUTABLE}: port {port} is not among the policy's ports {sorted(self.ports)}"
        if self.server_side_only and not server_seen:
            return f"{NOT_ROUTABLE}: only clients reported it; the policy admits server-side reports only"
        return None


@dataclass(frozen=True)
class Verdict:
    routable: bool
    source: str  # the registry row's source ("api", ...), "policy", or "observed"
    reason: str


@dataclass(frozen=True)
class Admission:
    """One cycle's decision: the routable instances (registry-shaped rows) and why the rest are not."""

    routable: list[dict[str, Any]]
    feed_services: frozenset[str]  # registered services (a feed even with no instance) + those with an admitted one
    not_routable: dict[Key, str] = field(default_factory=dict)

    def observations(self, observed: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The observed rows of routable instances only: what the engine may judge."""
        keys = {(r["service"], r["instance"]) for r in self.routable}
        return [row for row in observed if (row["service"], row["instance"]) in keys]


def parse_endpoint(instance: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """'10.0.0.7:8080' or '[::1]:8080' -> (address, port); None for host names and anything else."""
    host, sep, port = instance.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None
    try:
        return ipaddress.ip_address(host), int(port)
    except ValueError:
        return None


def parse_policy(row: Mapping[str, Any]) -> DiscoveryPolicy:
    """A stored `discovery_policies` row -> DiscoveryPolicy (the API validated it when it was written)."""
    return DiscoveryPolicy(
        service=str(row["service"]),
        networks=tuple(ipaddress.ip_network(c, strict=False) for c in row["cidrs"]),
        ports=frozenset(int(p) for p in row["ports"]),
        server_side_only=bool(row["server_side_only"]),
    )


def is_registration(row: Mapping[str, Any]) -> bool:
    """A live registry row an operator or automation made (not an older version's auto-discovery)."""
    return not row.get("deleted") and row.get("source") != LEGACY_DISCOVERED


@dataclass(frozen=True)
class Authority:
    """What operators made: registered instances, and the services that publish a feed."""

    instances: Mapping[Key, Mapping[str, Any]]  # live registrations by (service, instance)
    services: frozenset[str]  # registered or holding a registered instance: they publish a feed, maybe empty
    policies: Mapping[str, DiscoveryPolicy]

    @property
    def operator_made(self) -> frozenset[str]:
        """Services an operator made, by registration or by turning on discovery (exempt from the caps)."""
        return self.services | frozenset(self.policies)


def authority(registry_instances: Iterable[Mapping[str, Any]], registry_services: Iterable[Mapping[str, Any]],
              policies: Mapping[str, DiscoveryPolicy]) -> Authority:
    instances = {(r["service"], r["instance"]): r for r in registry_instances if is_registration(r)}
    services = {r["service"] for r in registry_services if is_registration(r)}
    return Authority(instances, frozenset(services | {s for s, _ in instances}), policies)


def judge(instance: str, server_seen: bool, registered: Mapping[str, Any] | None,
          policy: DiscoveryPolicy | None) -> Verdict:
    """Is one instance of a service routable, by which authority, and if not, why not."""
    if registered is not None and is_registration(registered):
        return Verdict(True, str(registered.get("source") or "api"), "registered")
    if policy is None:
        return Verdict(False, "observed", f"{NOT_ROUTABLE}: not registered and its service has no "
                       "discovery policy")
    refusal = policy.refusal(instance, server_seen)
    if refusal:
        return Verdict(False, "observed", refusal)
    return Verdict(True, POLICY_SOURCE, "admitted by the discovery policy")


def admit(observed: Iterable[Mapping[str, Any]], made: Authority, now_ms: int, forget_ms: int) -> Admission:
    """Registered instances always; observed ones the service's policy admits, seen within forget_ms.

    `observed` rows are per (service, instance, side) with `last_ms` (weights query); a row older
    than forget_ms no longer counts, which is how admitted instances expire.
    """
    sides: dict[Key, set[str]] = {}
    for row in observed:
        if int(row["last_ms"]) >= now_ms - forget_ms:
            sides.setdefault((row["service"], row["instance"]), set()).add(str(row["side"]))
    routable = [dict(row) for row in made.instances.values()]
    not_routable: dict[Key, str] = {}
    for key in sorted(sides.keys() - made.instances.keys()):
        verdict = judge(key[1], "server" in sides[key], None, made.policies.get(key[0]))
        if verdict.routable:
            routable.append(_admitted_row(*key))
        else:
            not_routable[key] = verdict.reason
    # A policy alone publishes no feed: until an instance is admitted, balancers keep their fallback
    # (404), as they do for any unknown service; the admitted instances then start without slow start.
    return Admission(routable, made.services | {r["service"] for r in routable}, not_routable)


def _admitted_row(service: str, instance: str) -> dict[str, Any]:
    """A registry-shaped row for a policy-admitted instance (full static weight, version from calls)."""
    return {"service": service, "instance": instance, "static_weight": STATIC_WEIGHT, "version": "", "enabled": 1,
            "source": POLICY_SOURCE}
