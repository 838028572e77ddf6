"""Weights as DNS SRV answers: a rotation of upstreams that a proxy re-reads without a config reload.

Caddy reloads its whole configuration on every admin-API change, and a reload can drop a request
(docs/caddy.md). Its `dynamic_upstreams` with `source: srv` instead re-reads an upstream list from a
DNS server every `refresh`, in-process and without a reload. This module is that DNS server: it
answers one SRV name with the feed's weights spelled as a rotation, each routable instance listed
as many times as its share of the slots, interleaved (nginx's smooth weighted round robin), so a
plain `round_robin` over the list sends each instance its weight's share, evenly spread.

Every record gets its own SRV priority (its place in the rotation): resolvers sort by priority and
shuffle only records of equal priority, so the order served is the order used. Answers go over TCP
(DNS's own 2-byte length framing) because a rotation of 100 records does not fit a UDP packet.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from balancer.adapter import split_address

MAX_SLOTS = 100  # rotation length: 1 % resolution, and what Caddy walks per request stays small
TTL_S = 1
TYPE_SRV, CLASS_IN = 33, 1
FAMILIES = {1: socket.AF_INET, 28: socket.AF_INET6}  # A, AAAA
RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP = 1, 2, 3, 4


def slots(weights: Mapping[str, int], most: int = MAX_SLOTS) -> dict[str, int]:
    """How many places each instance gets in the rotation: proportional to its weight, at most `most`
    places in all (largest remainders), and at least one for every positive weight (pure)."""
    positive = {name: w for name, w in weights.items() if w > 0}
    divisor = math.gcd(*positive.values()) if positive else 1
    reduced = {name: w // divisor for name, w in positive.items()}
    total = sum(reduced.values())
    if total <= most:
        return reduced
    exact = {name: w * most / total for name, w in reduced.items()}
    given = {name: max(1, math.floor(share)) for name, share in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (given[name] - exact[name], name))
    for name in by_remainder[:max(0, most - sum(given.values()))]:
        given[name] += 1
    return given


def rotation(counts: Mapping[str, int]) -> list[str]:
    """The instances in smooth weighted round-robin order (nginx's): each appears counts[name] times
    and no instance gets a long run of consecutive places (pure)."""
    current = dict.fromkeys(counts, 0)
    total, order = sum(counts.values()), []
    for _ in range(total):
        for name, count in counts.items():
            current[name] += count
        chosen = max(sorted(current), key=lambda name: current[name])
        current[chosen] -= total
        order.append(chosen)
    return order


def host_label(host: str) -> str:
    """A DNS label standing for an instance's host: resolvers refuse all-numeric names such as
    "127.0.0.1." as SRV targets, so every target is a name in our zone ("10-0-0-7.<zone>"), and this
    server answers its A/AAAA query too (pure)."""
    try:
        return "ip-" + ipaddress.ip_address(host).exploded.replace(".", "-").replace(":", "-")
    except ValueError:
        return "h-" + hashlib.sha1(host.lower().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Zone:
    """Everything the server answers, swapped whole: the SRV rotation and the hosts behind its targets."""

    srv_name: str  # "web.front.svcpulse."
    records: tuple[tuple[str, int], ...] = ()  # (target name, port), in rotation order
    hosts: Mapping[str, str] = field(default_factory=dict)  # target name -> host

    @classmethod
    def of(cls, srv_name: str, dials: list[str]) -> Zone:
        zone = srv_name.lower().rstrip(".") + "."
        records, hosts = [], {}
        for dial in dials:
            host, port = split_address(dial)
            target = f"{host_label(host)}.{zone}"
            records.append((target, port))
            hosts[target] = host
        return cls(zone, tuple(records), hosts)


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split(".")) + b"\0"


def read_question(message: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, qname, qtype, qclass, end of the question) of a DNS query; ValueError if malformed."""
    if len(message) < 12:
        raise ValueError("shorter than a DNS header")
    query_id, flags, questions = struct.unpack("!HHH", message[:6])
    if questions != 1:
        raise ValueError(f"{questions} questions")
    labels, at = [], 12
    while at < len(message) and 0 < message[at] <= 63:
        labels.append(message[at + 1:at + 1 + message[at]].decode("ascii", "replace").lower())
        at += 1 + message[at]
    if at + 5 > len(message) or message[at] != 0:
        raise ValueError("question name is compressed or cut")
    qtype, qclass = struct.unpack("!HH", message[at + 1:at + 5])
    return query_id, flags, ".".join(labels) + ".", qtype, qclass, at + 5


def answer(message: bytes, zone: Zone, resolve: Callable[[str, int], list[str]]) -> bytes:
    """The response to one query (pure but for `resolve`, which looks a host name up): the rotation as
    SRV records, a target's address as A/AAAA, NXDOMAIN outside what the zone holds, FORMERR for garbage."""
    try:
        query_id, flags, qname, qtype, qclass, end = read_question(message)
    except ValueError:
        return struct.pack("!HHHHHH", int.from_bytes(message[:2].ljust(2, b"\0"), "big"), 0x8000 | RCODE_FORMERR,
                           0, 0, 0, 0)
    rcode, records = 0, list[bytes]()
    if qclass != CLASS_IN:
        rcode = RCODE_NOTIMP
    elif qname == zone.srv_name:
        if qtype == TYPE_SRV:
            records = [srv_rdata(place, target, port) for place, (target, port) in enumerate(zone.records)]
    elif qname in zone.hosts:
        if qtype in FAMILIES:
            try:
                records = [socket.inet_pton(FAMILIES[qtype], a) for a in resolve(zone.hosts[qname], qtype)]
            except OSError:
                rcode = RCODE_SERVFAIL
    else:
        rcode = RCODE_NXDOMAIN
    # QR and authoritative; the query's opcode and RD echoed
    header = struct.pack("!HHHHHH", query_id, 0x8400 | (flags & 0x7900) | rcode, 1, len(records), 0, 0)
    return header + message[12:end] + b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", qtype, CLASS_IN, TTL_S, len(data)) + data for data in records)


def query_type(message: bytes) -> int:
    try:
        return read_question(message)[3]
    except ValueError:
        return 0


def srv_rdata(priority: int, target: str, port: int) -> bytes:
    return struct.pack("!HHH", priority, 0, port) + encode_name(target)  # RFC 2782: target not compressed


def resolve_host(host: str, qtype: int) -> list[str]:
    """The host's addresses of the query's family: an IP is itself; a name goes to the system resolver."""
    family = FAMILIES[qtype]
    try:
        address = ipaddress.ip_address(host)
        return [str(address)] if (address.version == 4) == (family == socket.AF_INET) else []
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except socket.gaierror:
        return []  # no address of this family (or none at all): an empty answer
    return sorted({str(info[4][0]) for info in found})


def ask_srv(address: str, srv_name: str, timeout_s: float = 2.0) -> list[tuple[str, int]]:
    """The (target, port) records a DNS server at `address` ("127.0.0.1:5380") answers for `srv_name`
    over TCP, in priority order: how the adapter checks a separate server (balancer/caddy_dns_server.py)
    serves what it wrote. Reads this module's answers (targets uncompressed); OSError or ValueError."""
    query = struct.pack("!HHHHHH", 0x5356, 0x0100, 1, 0, 0, 0) + encode_name(srv_name) + struct.pack(
        "!HH", TYPE_SRV, CLASS_IN)
    host, port = split_address(address)
    with socket.create_connection((host, port), timeout=timeout_s) as connection:
        connection.sendall(struct.pack("!H", len(query)) + query)
        length = struct.unpack("!H", connection.recv(2, socket.MSG_WAITALL))[0]
        response = connection.recv(length, socket.MSG_WAITALL)
    if len(response) < 12 or response[3] & 0x0F:
        raise ValueError(f"DNS answer code {response[3] & 0x0F if len(response) >= 12 else 'cut'}")
    *_, at = read_question(response)
    records = []
    for _ in range(struct.unpack("!H", response[6:8])[0]):
        at += 2  # the answer's name: a pointer to the question's
        kind, _, _, size = struct.unpack("!HHIH", response[at:at + 10])
        if kind == TYPE_SRV:
            priority, _, port_of = struct.unpack("!HHH", response[at + 10:at + 16])
            records.append((priority, _read_name(response[at + 16:at + 10 + size]), port_of))
        at += 10 + size
    return [(target, port_of) for _, target, port_of in sorted(records)]


def _read_name(encoded: bytes) -> str:
    labels, at = [], 0
    while at < len(encoded) and encoded[at]:
        labels.append(encoded[at + 1:at + 1 + encoded[at]].decode("ascii"))
        at += 1 + encoded[at]
    return ".".join(labels) + "."


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class SrvServer:
    """Serves a Zone over DNS-over-TCP on `listen` ("127.0.0.1:5380"); `publish()` swaps it whole for
    the next query."""

    def __init__(self, listen: str, srv_name: str) -> None:
        self.zone, self.dials = Zone.of(srv_name, []), list[str]()
        self.rotations_read = 0  # SRV answers sent since the last publish: Caddy has read the newest one
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    while prefix := self.request.recv(2, socket.MSG_WAITALL):  # DNS over TCP: length, message
                        query = self.request.recv(struct.unpack("!H", prefix)[0], socket.MSG_WAITALL)
                        zone = owner.zone
                        response = answer(query, zone, resolve_host)
                        if zone is owner.zone and response[6:8] != b"\0\0" and query_type(query) == TYPE_SRV:
                            owner.rotations_read += 1  # counted before it is sent: a reader sees it counted
                        self.request.sendall(struct.pack("!H", len(response)) + response)
                except (OSError, struct.error, ValueError):
                    pass  # a client that went away or sent half a frame

        host, _, port = listen.rpartition(":")  # port 0: any free port (tests)
        self.server = _Server((host.strip("[]") or "127.0.0.1", int(port)), Handler)
        self.address = "{}:{}".format(*self.server.server_address[:2])
        threading.Thread(target=self.server.serve_forever, name="srv-dns", daemon=True).start()

    def publish(self, dials: list[str], srv_name: str | None = None) -> None:
        zone = Zone.of(srv_name or self.zone.srv_name, dials)
        self.zone, self.dials, self.rotations_read = zone, list(dials), 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
