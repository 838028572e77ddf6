"""The msgspec fast path accepts only what the one judge accepts, with the same values (pipeline/fastdecode.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline import events
from pipeline.fastdecode import contract_event, contract_values
from pipeline.transform import judge
from tests.factories import FACTORIES, rpc_event

NOW = 1_795_000_000_000
WINDOW = events.plausible_window(NOW, 7 * 86_400, 3600)


def _mutations(kind: str) -> list[bytes]:
    """Valid events and every way each field can be wrong or at its edge, as raw JSON."""
    base = FACTORIES[kind](1, ts_ms=NOW)
    odd_values: list[Any] = [None, True, 0, -1, 1.5, 1e308, 2**63, 2**64, "", "x" * 5000, "10.0.0.1:80\n",
                             "shop.cart", "a b", "\u202e", "\x00", [], {}, events.MAX_TS_MS, NOW + 3_600_001]
    raws = [json.dumps(FACTORIES[kind](i, ts_ms=NOW - i)).encode() for i in range(50)]
    for field in events.SCHEMAS[kind]:
        for value in odd_values:
            raws.append(json.dumps({**base, field.name: value}).encode())
        raws.append(json.dumps({k: v for k, v in base.items() if k != field.name}).encode())
    encoded = events.encode(kind, base)
    raws += [
        encoded[:-1] + b',"extra":1}',  # unknown field: the judge takes it, the fast path leaves it to the judge
        encoded[:-1] + b',"extra":1e400}',  # orjson refuses this number, msgspec would only skip it
        encoded[:-1] + b',"v":2}',  # a duplicate key: the last one wins for both
        encoded.replace(b"1.", b"1e400", 1), encoded.replace(b":1,", b":NaN,", 1),
        encoded.replace(b'"node-', b'"\\ud800node-', 1), encoded.replace(b'"node-', b'"\\u00e9node-', 1),
        b"[" * 5000 + b"]" * 5000, b"null", b"{}", b"\xff\xfe", json.dumps(base).encode("utf-16"),
    ]
    return raws


def _loader_path(kind: str, raw: bytes) -> tuple[list[tuple[type, Any]] | None, events.TimeWindow]:
    """The loader's fast path (values in contract order, with the plausibility window)."""
    values = contract_values(kind, raw, WINDOW)
    return (None if values is None else [(type(v), v) for v in values]), WINDOW


def _weigh_path(kind: str, raw: bytes) -> tuple[list[tuple[type, Any]] | None, events.TimeWindow | None]:
    """The weigh worker's fast path (the event as a dict, no window)."""
    event = contract_event(kind, raw)
    return (None if event is None else [(type(v), v) for v in event.values()]), None


@pytest.mark.parametrize("path", [_loader_path, _weigh_path], ids=["loader", "weigh"])
@pytest.mark.parametrize("kind", ["tcp", "rpc", "load"])
def test_the_fast_path_never_accepts_what_the_judge_refuses(kind: str, path: Any) -> None:
    fast_accepted = 0
    for raw in _mutations(kind):
        fast, window = path(kind, raw)
        try:
            judged: events.Event | None = judge(kind, raw, window)
        except events.Rejection:
            judged = None
        if fast is None:
            continue
        fast_accepted += 1
        assert judged is not None, f"fast path accepted what the judge refuses: {raw[:120]!r}"
        assert fast == [(type(v), v) for v in judged.values()], raw[:120]
    assert fast_accepted >= 50, "the fast path must take the ordinary events"


def test_the_weigh_workers_event_has_the_contracts_keys() -> None:
    raw = events.encode("rpc", rpc_event(1, ts_ms=NOW))
    assert contract_event("rpc", raw) == events.validate("rpc", rpc_event(1, ts_ms=NOW))


def test_a_valid_event_takes_the_fast_path_and_the_window_applies() -> None:
    raw = events.encode("rpc", rpc_event(1, ts_ms=NOW))
    assert contract_values("rpc", raw, WINDOW) == tuple(events.validate("rpc", rpc_event(1, ts_ms=NOW)).values())
    assert contract_values("rpc", events.encode("rpc", rpc_event(1, ts_ms=NOW - 8 * 86_400_000)), WINDOW) is None
