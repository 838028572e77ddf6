"""Rollup rows of an insert that fails after its raw part is written, on the real cluster (ClickHouse 18.16).

A materialized view that throws on one marked event fails the insert after ClickHouse wrote the block's
raw part (a division by zero: not an error about the data, so the loader retries the whole batch
instead of bisecting it). 18.16 pushes a block to its views in name order after the raw part, so the
view's name picks which of the real views ran before the failure:

- "zzz_..." sorts last: every rollup has the block's rows; the retry is dropped as a duplicate, views
  included, so no rollup row is doubled.
- "a_..." sorts first: no rollup has them, and the retry, dropped as a duplicate with its views, never
  adds them. This is the known gap of docs/scaling.md (the same loss as the server the loader inserts
  through being killed between the raw part and the views' parts), kept here as a strict xfail so the
  fix that closes it must remove the mark.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.store import Store
from svcpulse.cluster_services import LocalCluster
from svcpulse.services import Tansu
from tests.cluster import dataset
from tests.cluster.helpers import node_store, raw_totals, start_loader, stop_loaders, sync_replicas
from tests.cluster.rollups import differences
from tests.integration.helpers import produce, wait_for

MARKED_CALLER = "caller-boom"


def add_throwing_view(cluster: LocalCluster, database: str, name: str) -> None:
    """A view on every server's rpc_calls_local that fails the insert of a block holding the marked call."""
    for node in cluster.nodes:
        with node_store(node, database) as store:
            store.execute(f"CREATE TABLE IF NOT EXISTS {database}.throws (x UInt8) ENGINE = Null")
            store.execute(f"CREATE MATERIALIZED VIEW {database}.{name} TO {database}.throws AS "
                          f"SELECT intDiv(1, toUInt8(caller != '{MARKED_CALLER}')) AS x "
                          f"FROM {database}.rpc_calls_local")


def loaded(store: Store, total: int) -> bool:
    totals = raw_totals(store)
    return sum(n for n, _ in totals.values()) == total and sum(u for _, u in totals.values()) == total


GAP = pytest.mark.xfail(strict=True, reason="18.16 skips the views of a retried block it drops as a duplicate and "
                                            "never deduplicates view inserts (docs/scaling.md, 'Not proven here')")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("view", ["zzz_throws_mv", pytest.param("a_throws_mv", marks=GAP)])
def test_rollups_after_an_insert_that_failed_after_its_raw_part(
        cluster: LocalCluster, cluster_store: Store, broker: Tansu, tmp_path: Path, view: str) -> None:
    add_throwing_view(cluster, cluster_store.database, view)
    end_ms = (int(time.time()) // 60 - 1) * 60_000
    items = list(dataset.events(20_000, end_ms))
    items.insert(10_000, ("rpc", dict(dataset.rpc(7, end_ms - 30_000), caller=MARKED_CALLER)))
    log = tmp_path / "loader.log"
    loader = start_loader(broker.bootstrap, cluster.store_url(cluster_store.database), log, "rollups")
    try:
        produce(broker.bootstrap, items)
        wait_for(lambda: loaded(cluster_store, len(items)), 180, "every event once")
        assert "Division by zero: while pushing to view" in log.read_text()  # the insert did fail
    finally:
        stop_loaders(loader)
    sync_replicas(cluster, cluster_store.database, timeout_s=120)
    apart = differences(cluster_store)
    assert not apart, {rollup: rows[:4] for rollup, rows in apart.items()}
