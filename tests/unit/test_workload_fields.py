"""The optional contract fields `workload` and `workload_kind`: emitters that leave them out (older
collectors, other languages) get them derived from the cgroup by the loader's transform, on its fast
path and on its judge path alike; a name an emitter sets wins."""

from __future__ import annotations

import json

import pytest

from pipeline import events
from pipeline.transform import COLUMNS, Message, transform
from tests.factories import FACTORIES

UID = "7d5e2c1a-3b4f-4a6e-9c8d-0123456789ab"
CID = "4f9a1c5e2b7d8a90c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192"
POD_PATH = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/" \
           f"cri-containerd-{CID}.scope"
TOPICS = {"rpc": "svcpulse.rpc", "tcp": "svcpulse.tcp", "load": "svcpulse.load"}


def old_event(kind: str, cgroup: str) -> dict[str, object]:
    """An event as an emitter from before the workload fields writes it."""
    event = {**FACTORIES[kind](4), "cgroup": cgroup}
    del event["workload"], event["workload_kind"]
    return event


def stored(kind: str, raw: bytes) -> dict[str, object]:
    found = transform(Message(TOPICS[kind], 0, 1, 1_764_000_000_000, None, raw))
    assert isinstance(found, tuple), found
    return dict(zip(COLUMNS[kind], found[1], strict=True))


@pytest.mark.parametrize("kind", ["rpc", "tcp", "load"])
def test_the_loader_names_old_events_from_their_cgroup_on_both_paths(kind: str) -> None:
    event = old_event(kind, POD_PATH)
    fast = stored(kind, json.dumps(event).encode())
    judged = stored(kind, json.dumps({**event, "an_unknown_field": 1}).encode())  # the fast path refuses extras
    for row in (fast, judged):
        assert (row["workload"], row["workload_kind"]) == (f"pod:{UID}", "pod")
        assert row["cgroup"] == POD_PATH
    assert fast == judged


@pytest.mark.parametrize("kind", ["rpc", "tcp", "load"])
def test_a_name_the_emitter_set_wins_and_no_cgroup_stays_unnamed(kind: str) -> None:
    named = {**old_event(kind, POD_PATH), "workload": "shop/checkout", "workload_kind": "deployment"}
    row = stored(kind, json.dumps(named).encode())
    assert (row["workload"], row["workload_kind"]) == ("shop/checkout", "deployment")
    row = stored(kind, json.dumps(old_event(kind, "")).encode())
    assert (row["workload"], row["workload_kind"]) == ("", "")


def test_unprintable_cgroup_names_are_cleaned_and_bounded() -> None:
    row = stored("tcp", json.dumps(old_event("tcp", "/custom/" + "\u202ex" * 300)).encode())
    assert row["workload"] == "x" * 255 and row["workload_kind"] == "cgroup"


@pytest.mark.parametrize(("value", "field"), [("a\tb", "workload"), ("Deployment", "workload_kind"),
                                              ("x" * 256, "workload"), ("my kind", "workload_kind")])
def test_workload_fields_have_a_grammar(value: str, field: str) -> None:
    with pytest.raises(events.Rejection, match=f"field '{field}'"):
        events.validate("rpc", {**FACTORIES["rpc"](1), field: value})


def test_json_schema_exports_them_as_optional_with_defaults() -> None:
    schema = events.json_schema("tcp")
    assert "workload" not in schema["required"]
    assert schema["properties"]["workload"]["default"] == ""
    assert schema["properties"]["workload_kind"]["pattern"] == "^(?:[a-z][a-z0-9_-]*)?$"


def test_root_is_the_host_for_collectors_but_names_nothing_in_an_rpc_event() -> None:
    # tcp and load paths come from the host's cgroup2 mount; an interceptor in a container sees itself at "/"
    assert stored("tcp", json.dumps(old_event("tcp", "/")).encode())["workload"] == "host"
    row = stored("rpc", json.dumps(old_event("rpc", "/")).encode())
    assert (row["workload"], row["workload_kind"]) == ("", "")


def test_interceptors_report_the_configured_workload_or_their_cgroups(monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors.rpc import common

    monkeypatch.setenv("SVCPULSE_WORKLOAD", "shop/checkout")
    monkeypatch.setenv("SVCPULSE_WORKLOAD_KIND", "deployment")
    common.own_workload.cache_clear()
    try:
        config = common.RpcConfig(service="shop.checkout")
        event = common.build_event(config, caller="", callee="shop.checkout", interface="GET /x", instance="",
                                   side="server", started=0.0, status="ok", code="200", version="")
        assert (event["workload"], event["workload_kind"]) == ("shop/checkout", "deployment")
        monkeypatch.delenv("SVCPULSE_WORKLOAD")
        common.own_workload.cache_clear()
        monkeypatch.setattr(common, "own_cgroup", lambda: "/system.slice/shop-checkout.service")
        assert common.own_workload() == ("shop-checkout.service", "unit")
        monkeypatch.setattr(common, "own_cgroup", lambda: "/")
        common.own_workload.cache_clear()
        assert common.own_workload() == ("", "")
    finally:
        common.own_workload.cache_clear()
