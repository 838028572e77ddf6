"""Repair the rollup rows of a block whose insert failed mid-way, on a ClickHouse cluster.

ClickHouse 18.16 writes a block's raw part, then pushes the block to each materialized view; a server
that dies (or a view that fails) in between leaves raw rows without their rollup rows, and the
loader's retry cannot add them: the raw table drops it as a duplicate and then skips the views, and
view inserts keep no block hashes (docs/scaling.md, "Not proven here", has the source lines).

Guarantee: after a block of the loader's failed, each rollup view that lacks the block's rows on a
shard gets exactly the view's own SELECT over those raw rows, once; a view that has them gets nothing.
A view writes a block all or nothing per shard, so per view and shard the rollup either holds the
block's rows or lacks all of them: the repair compares, per rollup key the block touches, the count
the raw table implies with the count the rollup holds, and inserts only when the gap equals the
block's own count for every key. It waits (tries again after later batches) while a replica of the
shard has parts to fetch (a dead server's part is not readable yet) or the counts do not fit either
case (another insert in flight), and gives up with a warning after give_up_s.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.cluster import SHARDED, local
from pipeline.ddl import CreateView, DropTable, Name, parse
from pipeline.migrate import load_migrations
from pipeline.store import Store, StoreError, open_store

log = logging.getLogger("svcpulse.loader")
_COUNT = re.compile(r"\bcount(State)?\(\)\s+AS\s+(\w+)")
_GROUP_BY = re.compile(r"\bGROUP BY\s+(.+?)\s*$", re.S)
_SOURCE = "__rows__"


@dataclass(frozen=True)
class RollupView:
    """A materialized view over a raw table: its SELECT with the source left open, its target, and how
    to count the raw rows behind its rows (countMerge of its count state, or the sum of its count)."""

    name: str
    raw: str
    target: str
    select: str  # reads FROM __rows__
    keys: str
    count: str

    def over(self, table: Name, condition: str) -> str:
        """The view's SELECT over the rows of `table` that meet `condition` (a PREWHERE: 18.16 loses
        columns of a `SELECT *` subquery nested in an aggregate)."""
        return self.select.replace(_SOURCE, f"{table} PREWHERE {condition}")


def _final_views(database: str) -> list[CreateView]:
    """The views as the migrations leave them: a later migration that drops and re-creates a view
    (0011 re-creates the rpc_edges_* views with a new column) replaces its earlier definition."""
    views: dict[str, CreateView] = {}
    for migration in load_migrations():
        for text in migration.statements(database):
            statement = parse(text)
            if isinstance(statement, DropTable):
                views.pop(statement.name.table, None)
            elif isinstance(statement, CreateView):
                views[statement.name.table] = statement
    return list(views.values())


def rollup_views(database: str) -> list[RollupView]:
    """Every materialized view the migrations leave over a table the loader writes."""
    found = []
    for view in _final_views(database):
        if not (view.materialized and view.target and len(view.sources) == 1):
            continue
        start, end, source = view.sources[0]
        if not (SHARDED.get(source.table) and SHARDED[source.table].key):
            continue
        counted, group = _COUNT.search(view.select), _GROUP_BY.search(view.select)
        if not (counted and group):
            raise ValueError(f"view {view.name}: no count() / countState() AS <column> or no GROUP BY to "
                             "check its rollup rows by (pipeline/rollup_repair.py)")
        merge = "countMerge" if counted[1] else "sum"
        found.append(RollupView(view.name.table, source.table, view.target.table,
                                view.select[:start] + _SOURCE + view.select[end:], group[1],
                                f"{merge}({counted[2]})"))
    return found


@dataclass
class Pending:
    table: str
    ranges: dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> lowest, highest offset
    since: float = 0.0
    shards_done: set[int] = field(default_factory=set)

    def condition(self) -> str:
        """The block's rows, by their Kafka coordinates."""
        return " OR ".join(f"(_topic = '{topic}' AND _partition = {partition} AND _offset BETWEEN {low} AND {high})"
                           for (topic, partition), (low, high) in sorted(self.ranges.items()))


def block_ranges(rows: list[tuple[Any, ...]]) -> dict[tuple[str, int], tuple[int, int]]:
    """The Kafka coordinates of a block's rows (rows end with topic, partition, offset, Kafka time)."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for row in rows:
        key, offset = (row[-4], row[-3]), row[-2]
        low, high = ranges.get(key, (offset, offset))
        ranges[key] = (min(low, offset), max(high, offset))
    return ranges


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # A DateTime column comes back with its time zone, the same value from an expression without it.
    return tuple(value.replace(tzinfo=None) if isinstance(value, datetime) else value for value in row[:-1])


def _counts(store: Store, sql: str) -> dict[tuple[Any, ...], int]:
    return {_key(row): int(row[-1]) for row in store.execute(sql)}


class RollupRepair:
    """The loader's failed blocks whose rollup rows are still to be checked, and the check itself."""

    def __init__(self, store: Store, cluster: str, every_s: float = 2.0, give_up_s: float = 600.0) -> None:
        self.database = store.database
        self.views = rollup_views(self.database)
        self.every_s, self.give_up_s = every_s, give_up_s
        self.pending: list[Pending] = []
        self.replicas: dict[int, list[tuple[str, int]]] = {}
        for shard, host, port in store.execute(
                "SELECT shard_num, host_address, port FROM system.clusters WHERE cluster = %(cluster)s "
                "ORDER BY shard_num, replica_num", {"cluster": cluster}):
            self.replicas.setdefault(int(shard), []).append((host, int(port)))
        self._stores: dict[tuple[str, int], Store] = {}
        self._next = 0.0

    def add(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """A block of `table` whose insert failed (each retry that failed too adds it again: kept once)."""
        ranges = block_ranges(rows)
        if any(item.table == table and item.ranges == ranges for item in self.pending):
            return
        self.pending.append(Pending(table, ranges, since=time.monotonic()))
        log.info("rollup check pending for a failed block of %d %s rows", len(rows), table)

    def tick(self) -> None:
        """Check what is pending, at most every `every_s` seconds; cheap when nothing is."""
        if not self.pending or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        for item in list(self.pending):
            for shard in self.replicas:
                if shard not in item.shards_done and self._check(item, shard):
                    item.shards_done.add(shard)
            if len(item.shards_done) == len(self.replicas):
                self.pending.remove(item)
                log.info("rollup check done for a failed block of %s", item.table)
            elif time.monotonic() - item.since > self.give_up_s:
                self.pending.remove(item)
                log.warning("rollup check of a failed block of %s given up after %.0f s on shard(s) %s (a replica "
                            "kept parts to fetch, or other inserts kept the counts moving): its rollup rows may be "
                            "missing", item.table, self.give_up_s, sorted(set(self.replicas) - item.shards_done))

    def _check(self, item: Pending, shard: int) -> bool:
        """True when every view of the block's table holds its rows on `shard` (after repairing those that
        lacked all of them); False to try again later."""
        try:
            store = self._caught_up(shard)
            if store is None:
                return False
            rows = item.condition()
            lacking = []
            for view in (view for view in self.views if view.raw == item.table):
                verdict = self._lacks(store, view, rows)
                if verdict is None:
                    return False
                if verdict:
                    lacking.append(view)
            for view in lacking:
                raw = local(Name(self.database, view.raw))
                store.execute(f"INSERT INTO {local(Name(self.database, view.target))} {view.over(raw, rows)}")
                log.warning("repaired rollup %s on shard %d: the rows of a failed block of %s were missing",
                            view.target, shard, item.table)
            return True
        except StoreError as err:
            log.warning("rollup check on shard %d failed (%s); trying again", shard, err)
            return False

    def _lacks(self, store: Store, view: RollupView, rows: str) -> bool | None:
        """True: the rollup lacks all the block's rows; False: it has them (or the block has none on this
        shard); None: undecided (the counts fit neither)."""
        keys, count, raw = view.keys, view.count, local(Name(self.database, view.raw))
        block = _counts(store, f"SELECT {keys}, {count} FROM ({view.over(raw, rows)}) GROUP BY {keys}")
        if not block:
            return False
        # The hours the block touches (each minute, ten-minute and hour bucket lies in one): what the raw
        # rows there imply and what the rollup holds, per key (the block's keys are picked out below).
        hours = f"(SELECT DISTINCT toStartOfHour(ts) FROM {raw} WHERE {rows})"
        implied = _counts(store, f"SELECT {keys}, {count} FROM ({view.over(raw, f'toStartOfHour(ts) IN {hours}')}) "
                                 f"GROUP BY {keys}")
        bucket = keys.split(",")[0]
        held = _counts(store, f"SELECT {keys}, {count} FROM {local(Name(self.database, view.target))} "
                              f"WHERE toStartOfHour({bucket}) IN {hours} GROUP BY {keys}")
        gaps = {key: implied.get(key, 0) - held.get(key, 0) for key in block}
        if all(gap == 0 for gap in gaps.values()):
            return False
        if all(gaps[key] == block[key] for key in block):
            return True
        return None

    def _caught_up(self, shard: int) -> Store | None:
        """A replica of the shard with nothing left to fetch (every committed part readable there)."""
        for address in self.replicas[shard]:
            store = self._stores.get(address)
            if store is None:
                store = self._stores[address] = open_store(f"clickhouse://{address[0]}:{address[1]}/"
                                                           f"{self.database}?timeout=60")
            try:
                waiting, readonly = store.execute(
                    "SELECT sum(inserts_in_queue), sum(is_readonly) FROM system.replicas "
                    "WHERE database = %(db)s", {"db": self.database})[0]
            except StoreError:
                continue
            if int(waiting) == 0 and int(readonly) == 0:
                return store
        return None

    def close(self) -> None:
        if self.pending:
            log.warning("stopping with %d failed block(s) whose rollup rows are unchecked", len(self.pending))
        for store in self._stores.values():
            store.close()
