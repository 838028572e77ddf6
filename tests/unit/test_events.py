import json

import pytest

from pipeline import events
from tests.factories import FACTORIES, rpc_event, tcp_event


@pytest.mark.parametrize("kind", ["rpc", "tcp", "load"])
def test_valid_events_round_trip(kind: str) -> None:
    event = FACTORIES[kind](3)
    assert events.decode(kind, events.encode(kind, event)) == event


def test_unknown_fields_are_dropped_not_rejected() -> None:
    assert "extra" not in events.validate("rpc", {**rpc_event(1), "extra": {"deep": 1}})


def test_integer_accepted_where_a_number_is_expected() -> None:
    decoded = events.validate("rpc", rpc_event(1, latency_ms=12))
    assert decoded["latency_ms"] == 12.0 and isinstance(decoded["latency_ms"], float)


@pytest.mark.parametrize(("change", "reason"), [
    ({"latency_ms": "12"}, "field 'latency_ms': expected number, got string"),
    ({"ts_ms": 1.5}, "field 'ts_ms': expected integer, got number"),
    ({"ts_ms": True}, "field 'ts_ms': expected integer, got boolean"),
    ({"callee": None}, "field 'callee': expected string, got null"),
    ({"status": "fine"}, "field 'status': expected one of 'ok', 'error', 'timeout', got 'fine'"),
    ({"side": ["client"]}, "field 'side': expected string, got array"),
    ({"v": 2}, "field 'v': expected one of 1, got 2"),
    ({"latency_ms": -1}, "field 'latency_ms': expected 0..None, got -1.0"),
    ({"interface": "x" * 600}, "field 'interface': expected at most 512 characters, got 600"),
])
def test_rejections_name_field_expected_and_got(change: dict, reason: str) -> None:
    with pytest.raises(events.Rejection) as caught:
        events.validate("rpc", rpc_event(1, **change))
    assert caught.value.reason == reason


def test_missing_required_field() -> None:
    event = tcp_event(1)
    del event["rx_bytes"]
    with pytest.raises(events.Rejection, match="field 'rx_bytes': required, missing"):
        events.validate("tcp", event)


def test_port_out_of_range_and_nan() -> None:
    with pytest.raises(events.Rejection, match=r"field .rport.: expected 0\.\.65535, got 70000"):
        events.validate("tcp", tcp_event(1, rport=70000))
    with pytest.raises(events.Rejection, match="expected a finite number"):
        events.validate("tcp", tcp_event(1, duration_ms=float("nan")))
    with pytest.raises(events.Rejection, match="not valid JSON"):  # NaN is no JSON: both parsers agree
        events.decode("tcp", json.dumps(tcp_event(1, duration_ms=float("nan"))).encode())


def test_ts_ms_is_bounded_by_the_tables_datetime_and_by_the_window() -> None:
    with pytest.raises(events.Rejection, match=r"field 'ts_ms': expected 1\.\.4294967295999, got 4294967296000"):
        events.validate("rpc", rpc_event(1, ts_ms=4_294_967_296_000))  # the hostile event of issue 9
    assert events.validate("rpc", rpc_event(1, ts_ms=events.MAX_TS_MS))["ts_ms"] == events.MAX_TS_MS
    now = 1_795_000_000_000
    window = events.plausible_window(now, max_age_s=7 * 86_400, max_future_s=3600)
    assert window == (now - 7 * 86_400_000, now + 3_600_000)
    events.validate("rpc", rpc_event(1, ts_ms=now + 3_600_000), window)
    with pytest.raises(events.Rejection, match=r"ts_ms.*plausibility window.*got 1795003600001 = 2026-11-18"):
        events.validate("rpc", rpc_event(1, ts_ms=now + 3_600_001), window)
    with pytest.raises(events.Rejection, match="plausibility window"):
        events.decode("rpc", events.encode("rpc", rpc_event(1, ts_ms=now - 8 * 86_400_000)), window=window)


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("callee", "shop.cart", True), ("callee", "unknown_service:python", True), ("callee", "a/b@v2", True),
    ("callee", "", False), ("callee", "<img src=x onerror=alert(1)>", False), ("callee", "shop cart", False),
    ("callee", ".hidden", False), ("callee", "shop\ncart", False), ("callee", "sh\u043ep", False),  # a Cyrillic o
    ("caller", "", True), ("caller", "shop\x00", False),
    ("instance", "10.0.0.1:8080", True), ("instance", "[fe80::1%eth0]:80", True), ("instance", "", True),
    ("instance", "203.0.113.66:443\r\n", False), ("instance", "a b:1", False),
    ("interface", "GET /items/{id}", True), ("interface", "/pkg.Svc/Get", True), ("interface", "GET /é", True),
    ("interface", "", False), ("interface", "GET /x\u202e", False), ("interface", "GET\t/x", False),
    ("interface", "a\u200bb", False),
])
def test_names_follow_their_grammar(field: str, value: str, ok: bool) -> None:
    if ok:
        assert events.validate("rpc", rpc_event(1, **{field: value}))[field] == value
    else:
        with pytest.raises(events.Rejection, match=f"field '{field}': expected .*, got "):
            events.validate("rpc", rpc_event(1, **{field: value}))


def test_json_schema_carries_the_bounds_and_grammars() -> None:
    import re

    properties = events.json_schema("rpc")["properties"]
    assert properties["ts_ms"]["maximum"] == events.MAX_TS_MS
    callee = re.compile(properties["callee"]["pattern"])
    assert callee.search("shop.cart") and not callee.search("<img>") and not callee.search("")
    assert re.compile(properties["caller"]["pattern"]).search("")


@pytest.mark.parametrize(("raw", "reason"), [
    (b"[1, 2]", "expected a JSON object, got array"),
    (b"{not json", "message is not valid JSON"),
    (b'{"v": "\xff\xfe"}', "message is not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "exceeds the 65536-byte limit"),
    (b"[" * 30_000 + b"]" * 30_000, "nests too deeply"),
])
def test_hostile_messages_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(events.Rejection, match=reason.replace("(", r"\(")):
        events.decode("rpc", raw)


def test_dead_letter_keeps_original_bytes_exactly() -> None:
    for raw in (b'{"broken": ', b"\xff\x00binary"):
        dead = events.dead_letter("why", "svcpulse.rpc", 2, 41, raw, 123)
        assert events.dead_letter_payload(events.decode("dlq", events.encode("dlq", dead))) == raw


@pytest.mark.parametrize("kind", list(events.SCHEMAS))
def test_json_schema_lists_every_field_and_which_are_required(kind: str) -> None:
    schema = events.json_schema(kind)
    assert schema["required"] == [f.name for f in events.SCHEMAS[kind] if f.required]
    assert list(schema["properties"]) == [f.name for f in events.SCHEMAS[kind]]
    for field in events.SCHEMAS[kind]:
        assert ("default" in schema["properties"][field.name]) == (not field.required)


def test_tcp_health_fields_are_optional_with_defaults() -> None:
    old_emitter = tcp_event(1)  # an event without the connection-health fields
    for name in ("outcome", "connect_ms", "retransmits", "srtt_us", "resets_in", "resets_out"):
        old_emitter.pop(name, None)
    event = events.validate("tcp", old_emitter)
    assert (event["outcome"], event["connect_ms"], event["retransmits"], event["srtt_us"]) == ("", 0.0, 0, 0)
    with pytest.raises(events.Rejection, match="field 'outcome': expected one of"):
        events.validate("tcp", {**old_emitter, "outcome": "exploded"})
    with pytest.raises(events.Rejection, match="field 'retransmits'"):
        events.validate("tcp", {**old_emitter, "retransmits": -1})


def test_the_contract_doc_lists_every_field() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "contract.md").read_text()
    for kind, fields in events.SCHEMAS.items():
        section = doc.split(f"({kind})")[1].split("\n## ")[0]
        assert [f.name for f in fields] == [line.split("`")[1] for line in section.splitlines()
                                            if line.startswith("| `")], kind


def test_dead_letter_of_a_huge_or_escape_heavy_message_stays_under_the_dlq_limit() -> None:
    for raw in (b"x" * 2_000_000, b'"' * 600_000, b"\x01" * 300_000):
        dead = events.dead_letter("too big", "svcpulse.rpc", 0, 1, raw, 1)
        wire = events.encode("dlq", dead)
        assert len(wire) <= events.MAX_DLQ_MESSAGE_BYTES
        kept = events.dead_letter_payload(events.decode("dlq", wire))
        assert raw.startswith(kept) and len(kept) == min(len(raw), events.MAX_DEAD_LETTER_PAYLOAD)
        assert ("payload cut" in dead["reason"]) == (len(raw) > events.MAX_DEAD_LETTER_PAYLOAD)
