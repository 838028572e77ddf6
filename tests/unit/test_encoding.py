"""collectors.encoding (msgspec) must judge and encode every event exactly as the contract does."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.encoding import packer
from pipeline import events
from pipeline.topics import KEY_FIELD
from tests.factories import load_event, rpc_event, tcp_event

VALID = {"tcp": tcp_event(1), "rpc": rpc_event(1), "load": load_event(1)}
# Values that probe every check: types (bool is not an int), bounds, choices, lengths, non-finite floats.
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=70), st.sampled_from(["", "x" * 300, "x" * 5000]),
    st.sampled_from([4, 6, 1, "client", "server", "ok", "timeout", 65535, 65536, -1, 2**63 - 1, 2**63]),
    st.lists(st.integers(), max_size=2),
)


def contract(kind: str, event: dict) -> tuple[str, bytes | None]:
    try:
        return "ok", events.encode(kind, event, orjson.dumps)
    except events.Rejection as err:
        return err.reason, None


def fast(kind: str, event: dict) -> tuple[str, bytes | None]:
    try:
        return "ok", packer(kind, KEY_FIELD.get(kind))(event)[1]
    except events.Rejection as err:
        return err.reason, None


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_events_encode_to_the_same_json_and_key(kind: str) -> None:
    event = {**VALID[kind], "unknown_extra": [1, 2]}  # unknown fields are dropped by both
    key, value = packer(kind, KEY_FIELD[kind])(event)
    assert json.loads(value) == json.loads(contract(kind, event)[1] or b"")
    assert list(json.loads(value)) == [field.name for field in events.SCHEMAS[kind]]  # the contract's order
    assert key == str(event[KEY_FIELD[kind]]).encode()


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_any_one_field_changed_gets_the_contracts_verdict_and_reason(kind: str, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from([field.name for field in events.SCHEMAS[kind]]))
    value = data.draw(ODD_VALUES)
    event = {**VALID[kind], name: value}
    expected_reason, expected = contract(kind, event)
    reason, got = fast(kind, event)
    assert reason == expected_reason
    if expected is not None:
        assert got is not None and json.loads(got) == json.loads(expected)


def test_a_missing_field_and_an_unknown_kind_are_rejected_with_the_contracts_reason() -> None:
    event = {k: v for k, v in VALID["tcp"].items() if k != "pid"}
    assert fast("tcp", event) == contract("tcp", event)
    assert fast("nonsense", {})[0].startswith("unknown event kind")
    assert math.isfinite(json.loads(packer("tcp", "host")({**VALID["tcp"], "duration_ms": 3})[1])["duration_ms"])
