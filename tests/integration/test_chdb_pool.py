"""The embedded store's session pool (pipeline/store/embedded.py) on real chdb: statements of several
callers run side by side, inserts and reads together stay exact, and closing waits for none and
answers later calls with a StoreError (chdb allows one data directory per process: these tests open
more stores over the test session's directory)."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.store import Store, StoreError, open_store
from pipeline.store.embedded import ChdbStore

SLOW_QUERY = "SELECT sum(sleepEachRow(0.05)) FROM numbers(40) SETTINGS max_block_size = 1"  # ~2 s


def running(store: Store, marker: str) -> int:
    return store.execute("SELECT count() FROM system.processes "
                         f"WHERE query LIKE '%{marker}%' AND query NOT LIKE '%system.processes%'")[0][0]


def test_a_read_runs_while_another_statement_is_running(chdb_store: Store) -> None:
    slow = threading.Thread(target=chdb_store.execute, args=(SLOW_QUERY,), daemon=True)
    slow.start()
    seen = 0
    deadline = time.monotonic() + 30
    while not seen and slow.is_alive() and time.monotonic() < deadline:
        seen = running(chdb_store, "sleepEachRow")  # one store, a second session: answered meanwhile
    slow.join(30)
    assert seen == 1  # one session at a time would answer only once the slow statement was over (0)


def test_inserts_and_reads_side_by_side_lose_nothing(chdb_store: Store) -> None:
    chdb_store.execute("CREATE TABLE IF NOT EXISTS pool_rows (writer UInt8, n UInt32) ENGINE = MergeTree ORDER BY n")
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for start in range(0, 2000, 100):
                chdb_store.insert("pool_rows", ["writer", "n"], [[writer] * 100, list(range(start, start + 100))])
        except BaseException as err:  # reported below, in the test's thread
            failures.append(err)

    writers = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        assert chdb_store.execute("SELECT count() FROM pool_rows")[0][0] <= 4000
    for thread in writers:
        thread.join()
    assert not failures
    assert chdb_store.execute("SELECT writer, count(), uniqExact(n) FROM pool_rows GROUP BY writer ORDER BY writer") \
        == [(1, 2000, 2000), (2, 2000, 2000)]


def test_close_closes_every_session_once_and_later_calls_fail_cleanly(chdb_store: Store) -> None:
    assert isinstance(chdb_store, ChdbStore)
    store = open_store(f"chdb://{chdb_store.directory}?pool=2")
    assert store.execute("SELECT 1") == [(1,)]
    store.close()
    store.close()  # a second close does nothing
    with pytest.raises(StoreError, match="closed"):
        store.execute("SELECT 1")
    assert chdb_store.execute("SELECT 1") == [(1,)]  # the other store's sessions are untouched
