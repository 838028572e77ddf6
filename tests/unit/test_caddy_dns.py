"""`svcpulse balancer caddy --updates dns`: the rotation, the DNS answers (parsed by dnspython, an
independent implementation; Caddy's Go resolver reads them in tests/integration/test_balancers_real.py)
and the handler wiring."""

from __future__ import annotations

import collections
import json
import re
import socket
import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from balancer import caddy_dns
from balancer.adapter import BalancerError
from balancer.caddy_dns import CaddyDnsAdapter, is_wired, srv_name, wiring
from balancer.caddy_dns_server import NO_ZONE_YET, ZoneFollower, read_zone, write_zone
from balancer.srv import MAX_SLOTS, SrvServer, Zone, answer, ask_srv, host_label, rotation, slots

DIALS = ["10.0.0.1:8080", "10.0.0.2:8080", "backend-3.internal:9000"]


def test_slots_reduce_by_the_gcd_and_stay_within_the_cap() -> None:
    assert slots({"a": 10, "b": 30, "c": 60, "d": 0}) == {"a": 1, "b": 3, "c": 6}
    capped = slots({"a": 1, "b": 997, "c": 333})
    assert sum(capped.values()) == MAX_SLOTS and capped["a"] == 1  # a positive weight keeps a place
    assert capped == {"a": 1, "b": 74, "c": 25}
    assert slots({"a": 37, "b": 41, "c": 22}) == {"a": 37, "b": 41, "c": 22}  # 100 places: exact


def test_rotation_holds_each_instance_by_its_count_and_spreads_them() -> None:
    order = rotation({"a": 1, "b": 3, "c": 6})
    assert collections.Counter(order) == {"a": 1, "b": 3, "c": 6}
    assert max(len(run) for run in "".join(order).replace("a", " ").replace("b", " ").split()) <= 2
    assert rotation({"x": 2, "y": 2}) in (["x", "y", "x", "y"], ["y", "x", "y", "x"])


def query(name: str, kind: str) -> bytes:
    return dns.message.make_query(name, kind, use_edns=0).to_wire()  # Go's resolver sends EDNS0 too


def parse(response: bytes) -> dns.message.Message:
    return dns.message.from_wire(response)


def test_srv_answer_lists_the_rotation_in_priority_order() -> None:
    zone = Zone.of("web.front.svcpulse.", [DIALS[2], DIALS[0], DIALS[2]])
    message = parse(answer(query("web.front.svcpulse.", "SRV"), zone, lambda host, qtype: []))
    assert message.rcode() == dns.rcode.NOERROR and message.flags & dns.flags.AA
    records = sorted(message.answer[0], key=lambda r: r.priority)
    assert [(r.priority, str(r.target), r.port) for r in records] == [
        (0, f"{host_label('backend-3.internal')}.web.front.svcpulse.", 9000),
        (1, "ip-10-0-0-1.web.front.svcpulse.", 8080),
        (2, f"{host_label('backend-3.internal')}.web.front.svcpulse.", 9000)]


def test_targets_resolve_to_their_hosts_and_other_names_do_not_exist() -> None:
    zone = Zone.of("web.front.svcpulse.", DIALS)
    looked_up = []

    def resolve(host: str, qtype: int) -> list[str]:
        looked_up.append(host)
        return ["192.0.2.7"] if qtype == 1 else []

    a = parse(answer(query("ip-10-0-0-1.web.front.svcpulse.", "A"), zone, resolve))
    assert [r.address for r in a.answer[0]] == ["192.0.2.7"] and looked_up == ["10.0.0.1"]
    empty = parse(answer(query("ip-10-0-0-1.web.front.svcpulse.", "AAAA"), zone, resolve))
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer  # an IPv4 host has no AAAA
    other = parse(answer(query("elsewhere.example.", "A"), zone, resolve))
    assert other.rcode() == dns.rcode.NXDOMAIN
    garbage = parse(answer(b"\x12\x34\x01", zone, resolve))
    assert garbage.rcode() == dns.rcode.FORMERR and garbage.id == 0x1234


def test_the_server_answers_over_tcp_and_publish_swaps_the_rotation() -> None:
    server = SrvServer("127.0.0.1:0", "web.front.svcpulse.")
    try:
        host, port = server.address.split(":")
        server.publish(DIALS[:2])
        ask = dns.message.make_query("web.front.svcpulse.", "SRV")
        first = dns.query.tcp(ask, host, port=int(port), timeout=5)
        assert [r.port for r in first.answer[0]] == [8080, 8080] and server.rotations_read == 1
        server.publish([DIALS[2]])
        assert server.rotations_read == 0
        second = dns.query.tcp(ask, host, port=int(port), timeout=5)
        assert [r.port for r in second.answer[0]] == [9000]
        address = dns.query.tcp(dns.message.make_query("ip-10-0-0-1.web.front.svcpulse.", "A"), host,
                                port=int(port), timeout=5)
        assert not address.answer  # 10.0.0.1 left the rotation: its name is gone with it
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(struct.pack("!H", 3) + b"\xff\xff\xff")  # a malformed query gets FORMERR, not a hang
            size = struct.unpack("!H", raw.recv(2))[0]
            assert dns.message.from_wire(raw.recv(size)).rcode() == dns.rcode.FORMERR
    finally:
        server.close()


def test_srv_name_and_wiring_keep_the_handlers_other_settings() -> None:
    assert srv_name("Shop.Cart_v2") == "shop.cart-v2.svcpulse."
    handler = {"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.0.1:80"}],
               "headers": {"request": {"set": {"X-A": ["1"]}}},
               "load_balancing": {"retries": 2, "selection_policy": {"policy": "weighted_round_robin"}},
               "transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 8}}}
    wired = wiring(handler, "shop.cart.svcpulse.", "tcp/127.0.0.1:5380")
    assert wired["upstreams"] == handler["upstreams"] and wired["headers"] == handler["headers"]  # the fallback
    assert wired["load_balancing"] == {"retries": 2, "selection_policy": {"policy": "round_robin"}}
    assert wired["transport"]["keep_alive"] == {"max_idle_conns_per_host": 8}
    assert wired["transport"]["resolver"] == {"addresses": ["tcp/127.0.0.1:5380"]}
    assert wired["dynamic_upstreams"]["source"] == "srv"
    assert not is_wired(handler, "shop.cart.svcpulse.", "tcp/127.0.0.1:5380")
    assert is_wired(wired, "shop.cart.svcpulse.", "tcp/127.0.0.1:5380")
    assert not is_wired(wired, "shop.cart.svcpulse.", "tcp/127.0.0.1:5381")  # moved: wire again
    with pytest.raises(BalancerError, match="fastcgi"):
        wiring({**handler, "transport": {"protocol": "fastcgi"}}, "x.svcpulse.", "tcp/127.0.0.1:5380")


def test_the_separate_server_follows_the_zone_file_and_keeps_the_last_good_rotation(tmp_path: Path) -> None:
    """`svcpulse balancer caddy-dns`: each replaced zone file is answered (dnspython and the adapter's own
    client read it alike); a broken file is reported and the last rotation stays."""
    zone_file = tmp_path / "zone.json"
    server = SrvServer("127.0.0.1:0", NO_ZONE_YET)
    follower = ZoneFollower(server, zone_file)
    try:
        follower.check()  # no file yet: nothing answered
        with pytest.raises(ValueError, match="code 3"):
            ask_srv(server.address, "web.front.svcpulse.")
        write_zone(zone_file, "web.front.svcpulse.", [DIALS[0], DIALS[2], DIALS[0]])
        follower.check()
        expected = list(Zone.of("web.front.svcpulse.", [DIALS[0], DIALS[2], DIALS[0]]).records)
        assert ask_srv(server.address, "web.front.svcpulse.") == expected
        host, port = server.address.split(":")
        parsed = dns.query.tcp(dns.message.make_query("web.front.svcpulse.", "SRV"), host, port=int(port), timeout=5)
        assert [(str(r.target), r.port) for r in sorted(parsed.answer[0], key=lambda r: r.priority)] == expected
        zone_file.write_text('{"name": "web.front.svcpulse.", "dials": ["no port"]}')
        follower.check()
        assert ask_srv(server.address, "web.front.svcpulse.") == expected  # the last good rotation stays
        assert list(tmp_path.iterdir()) == [zone_file]  # no partial file left behind
    finally:
        server.close()
    with pytest.raises(ValueError, match="not host:port"):
        read_zone(zone_file)


def test_with_dns_zone_an_apply_fails_clearly_when_no_server_answers(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caddy_dns, "SERVER_WAIT_S", 0.2)
    adapter = CaddyDnsAdapter("http://127.0.0.1:9", "cart", "web.front", "127.0.0.1:9",
                              zone_file=tmp_path / "zone.json")
    rendered = json.dumps(DIALS[:2])
    with pytest.raises(BalancerError, match=re.escape("is `svcpulse balancer caddy-dns --listen 127.0.0.1:9")):
        adapter.apply(rendered)
    assert read_zone(tmp_path / "zone.json") == ("web.front.svcpulse.", DIALS[:2])  # written for the server
    assert "does not answer the rendered rotation" in adapter.verify(rendered)
    adapter.close()
