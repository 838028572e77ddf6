"""Registry transforms: observed rows + registry -> engine windows, discovery, overrides, canary guard."""

from __future__ import annotations

from typing import Any

import pytest

from weights.canary import CanaryGuard, canary_verdict
from weights.inputs import build_windows, normalize_instance, pick_sides, to_overrides
from weights.model import InstanceWindow, Override


def seen(instance: str, side: str = "server", requests: int = 100, **extra: Any) -> dict[str, Any]:
    return {"service": "s", "instance": instance, "side": side, "last_ms": 1, "requests": requests,
            "errors": 0, "timeouts": 0, "p50": 5.0, "p99": 20.0, "version": "v1", **extra}


def registered(instance: str, **extra: Any) -> dict[str, Any]:
    return {"service": "s", "instance": instance, "static_weight": 100, "version": "", "enabled": 1, **extra}


def test_the_server_side_is_preferred_unless_clients_saw_more_calls() -> None:
    rows = [seen("a", "client", 100, p50=9.0), seen("a", "server", 100), seen("b", "server", 0),
            seen("b", "client", 40, errors=40)]
    chosen = pick_sides(rows)
    assert chosen[("s", "a")]["side"] == "server"
    assert chosen[("s", "b")]["side"] == "client", "calls that never reached the server count"


def test_windows_join_registry_and_observations() -> None:
    windows = build_windows([seen("a", errors=3, version="v1")],
                            [registered("a", static_weight=50, version="v2"), registered("ip-only:1", enabled=0)],
                            window_s=10)
    assert windows["s"] == [
        InstanceWindow("a", 100, 3, 0, 5.0, 20.0, 10.0, static_weight=50, version="v2"),
        InstanceWindow("ip-only:1", enabled=False),
    ]


def test_observed_version_is_used_when_the_registry_has_none() -> None:
    assert build_windows([seen("a")], [registered("a")], 10)["s"][0].version == "v1"


def test_override_rows() -> None:
    rows = [{"service": "s", "instance": "a", "drained": 1, "pinned_weight": -1},
            {"service": "s", "instance": "b", "drained": 0, "pinned_weight": 0}]
    assert to_overrides(rows) == {"s": {"a": Override(drained=True), "b": Override(pinned_weight=0)}}


@pytest.mark.parametrize(("raw", "clean"), [(" 10.0.0.1:080 ", "10.0.0.1:80"), ("[::1]:8080", "[::1]:8080"),
                                            ("db-1.internal:5432", "db-1.internal:5432")])
def test_instance_names_are_normalised(raw: str, clean: str) -> None:
    assert normalize_instance(raw) == clean


@pytest.mark.parametrize(("raw", "words"), [("10.0.0.1", "expected host:port"), (":80", "expected host:port"),
                                            ("h:0", "port 1..65535"), ("::1:80", "IPv6"), ("a b:1", "spaces")])
def test_bad_instance_names_say_why(raw: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        normalize_instance(raw)


def fleet(canary_errors: int, canary_p99: float, canary_calls: int = 100) -> list[InstanceWindow]:
    return [InstanceWindow("a", 100, 1, 0, 5, 20, version="v1"), InstanceWindow("b", 300, 3, 0, 5, 40, version="v1"),
            InstanceWindow("c", canary_calls, canary_errors, 0, 5, canary_p99, version="v2")]


def test_canary_guard() -> None:
    guard = CanaryGuard(error_margin=0.02, p99_margin=0.5, min_requests=50)
    assert canary_verdict(fleet(2, 40), "v2", guard) is None
    assert "error rate 4.0% > baseline 1.0% + 2.0%" in (canary_verdict(fleet(4, 40), "v2", guard) or "")
    assert "p99 60 ms > baseline 35 ms + 50%" in (canary_verdict(fleet(0, 60), "v2", guard) or "")
    assert canary_verdict(fleet(40, 900, canary_calls=49), "v2", guard) is None, "too few calls to judge"
