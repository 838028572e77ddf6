"""bench --cluster: the same work against one ClickHouse 18.16 server and the local 2 x 2 cluster
(svcpulse.cluster_services: ZooKeeper + 4 servers on this machine), printed side by side from one run.

- `bench/loader.py --cluster`: --events contract rpc events are produced once into a Tansu topic,
  then drained by --loaders `svcpulse load` processes into the single server and, again, into the
  cluster (through its Distributed tables, SVCPULSE_CLICKHOUSE_CLUSTER set). Prints events/s for each
  and the rows/s each shard took. Then the insert path alone (no Kafka): one columnar batch of 500,000
  rows through the Distributed table vs split by the client straight into each shard's local table.
- `bench/query.py --cluster`: the query endpoints' p50/p99 over --rows rows on each, side by side.

All 4 servers and ZooKeeper share this machine's cores with the loaders, so the cluster cannot be
faster here than one server; the figures show the cost of the cluster machinery per event, not the
scale-out a cluster of machines gives. The load average is printed: on a busy machine figures are
provisional.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.batch import columns
from pipeline.cluster import LOADER_SETTINGS
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from pipeline.topics import RPC
from pipeline.transform import COLUMNS, Message, to_row
from svcpulse.cluster_services import CLUSTER, LocalCluster
from svcpulse.services import ClickHouseServer, free_port
from tests.factories import rpc_event


@dataclass
class Target:
    """Where a bench run writes: a store URL, the loaders' environment, and per-shard row counts."""

    name: str
    url: str
    cluster: LocalCluster | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SVCPULSE_CLICKHOUSE_CLUSTER": CLUSTER if self.cluster else ""}

    def open(self) -> Store:
        return open_store(self.url, settings=LOADER_SETTINGS if self.cluster else None)

    def shard_rows(self, table: str) -> dict[str, int]:
        """Rows of `table` on the first replica of each shard (the cluster), or the server's (single)."""
        if not self.cluster:
            return {"server": int(_count(self.url, table))}
        database = self.url.split("/")[3].split("?")[0]
        return {f"shard {shard}": int(_count(f"clickhouse://127.0.0.1:{self.cluster.node(shard, 1).port}/{database}",
                                             f"{table}_local")) for shard in (1, 2)}


def _count(url: str, table: str) -> int:
    store = open_store(url)
    try:
        return int(store.execute(f"SELECT count() FROM {table}")[0][0])
    finally:
        store.close()


@contextmanager
def targets(work: Path, database: str) -> Iterator[tuple[Target, Target]]:
    """A single server and the cluster, each with `database` migrated (ON CLUSTER on the cluster)."""
    single = ClickHouseServer(port=free_port(), workdir=work / "single")
    cluster = LocalCluster(work / "cluster")
    print(f"[bench/cluster] starting one ClickHouse server and the 2 x 2 cluster under {work} ...", flush=True)
    single.start()
    cluster.start()
    try:
        one = Target("single server", f"clickhouse://127.0.0.1:{single.port}/{database}?timeout=600")
        many = Target("2x2 cluster", cluster.store_url(database) + "&timeout=600", cluster)
        for target in (one, many):
            store = target.open()
            migrate(store, log=False, cluster=CLUSTER if target.cluster else "")
            store.close()
        yield one, many
    finally:
        cluster.stop()
        single.stop()


def drain(target: Target, bootstrap: str, total: int, loaders: int, kafka_client: str, batch_rows: int,
          log: Path) -> float:
    """Events/s of `loaders` processes draining the prefilled topic into the target, measured as
    bench/loader.py measures its own (from the loaders' start, group join included)."""
    from bench.loader import drain as drain_rate
    from bench.loader import stop

    command = [sys.executable, "-m", "svcpulse", "load", "--bootstrap", bootstrap, "--store", target.url,
               "--group", f"bench-{target.name.replace(' ', '-')}", "--batch-rows", str(batch_rows),
               "--kafka-client", kafka_client]
    started = time.monotonic()
    with log.open("a") as out:
        running = [subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=target.env)
                   for _ in range(loaders)]
    try:
        return drain_rate(target.url, total, started)
    finally:
        stop(running)


def rpc_batch(count: int) -> list[list[object]]:
    rows = [to_row("rpc", rpc_event(i), Message(RPC, i % 4, i, 0, None, b"")) for i in range(count)]
    return columns(rows)


def insert_paths(cluster_target: Target, rows: int, repeat: int = 3) -> dict[str, float]:
    """Median rows/s of one batch through the Distributed table, and split by the client into each shard's
    local table (first replica, both shards at once): the two ways a loader could write a cluster.
    Alternated `repeat` times, so a busy moment of the machine does not favour one of them."""
    assert cluster_target.cluster is not None
    batch = rpc_batch(rows)
    halves = [[column[shard::2] for column in batch] for shard in (0, 1)]  # by offset parity: same sizes
    store = cluster_target.open()
    shard_stores = [open_store(f"clickhouse://127.0.0.1:{cluster_target.cluster.node(s, 1).port}/{store.database}"
                               "?timeout=600") for s in (1, 2)]

    def through_distributed() -> None:
        store.insert("rpc_calls", COLUMNS["rpc"], batch)

    def straight_to_shards() -> None:
        writers = [threading.Thread(target=s.insert, args=("rpc_calls_local", COLUMNS["rpc"], half))
                   for s, half in zip(shard_stores, halves, strict=True)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()

    paths = {"through the Distributed table": through_distributed, "straight to each shard": straight_to_shards}
    took: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeat):
        for name, insert in paths.items():
            started = time.monotonic()
            insert()
            took[name].append(time.monotonic() - started)
    for each in (store, *shard_stores):
        each.close()
    return {name: rows / sorted(seconds)[len(seconds) // 2] for name, seconds in took.items()}


def load_average() -> str:
    return f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (on {os.cpu_count()} cores; provisional above ~1)"


def compare_loading(events: int, loaders: int, kafka_client: str, batch_rows: int) -> None:
    """bench/loader.py --cluster: the same prefilled topic drained into one server, then into the cluster."""
    import tempfile

    from bench.loader import produce
    from svcpulse.services import Tansu

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-loader-"))
    broker = Tansu(port=free_port(), workdir=work / "tansu")
    broker.start()
    try:
        with targets(work, "bench") as (single, cluster):
            print(f"[bench/cluster] prefilling {RPC} with {events:,} rpc events ...", flush=True)
            produce(broker.bootstrap, events, {}, 0)
            rates, loads = {}, {}
            for target in (single, cluster):
                print(f"[bench/cluster] draining with {loaders} `svcpulse load` ({kafka_client}) into the "
                      f"{target.name} ...", flush=True)
                rates[target.name] = drain(target, broker.bootstrap, events, loaders, kafka_client, batch_rows,
                                           work / "loader.log")
                loads[target.name] = load_average()
            per_shard = cluster.shard_rows("rpc_calls")
            paths = insert_paths(cluster, 500_000)
            loads["insert paths"] = load_average()
    finally:
        broker.stop()
    print(f"events                     {events:,} contract rpc events, prefilled, 4 partitions; "
          f"{loaders} loader process(es), {kafka_client}")
    for name, rate in rates.items():
        print(f"into the {name:<17} {rate:>10,.0f} events/s   load average {loads[name]}")
    seconds = events / rates[cluster.name]
    for shard, rows in per_shard.items():
        print(f"  {shard} took           {rows / seconds:>10,.0f} rows/s ({rows:,} rows)")
    print(f"cluster / single           {rates[cluster.name] / rates[single.name]:.2f}")
    print(f"insert path alone, 500,000 rows in one columnar batch (median of 3, alternated), load average "
          f"{loads['insert paths']}:")
    for name, rate in paths.items():
        print(f"  {name:<29} {rate:>10,.0f} rows/s")
    print(f"load average               {load_average()}")
    print(f"loader log                 {work / 'loader.log'}")


def compare_queries(rows: int, repeat: int, generate: Callable[[Store, int], float],
                    measure: Callable[[Store, int], dict[str, tuple[float, float]]]) -> None:
    """bench/query.py --cluster: the same generated rows and endpoint calls on one server and the cluster."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-query-"))
    found: dict[str, dict[str, tuple[float, float]]] = {}
    with targets(work, "bench") as both:
        for target in both:
            store = open_store(target.url)  # as the API opens it (the cluster profile inserts synchronously)
            print(f"[bench/cluster] {target.name}: generating {rows:,} rpc rows ...", flush=True)
            seconds = generate(store, rows)
            print(f"[bench/cluster] {target.name}: {seconds:.1f} s; calling each endpoint {repeat} times ...",
                  flush=True)
            found[target.name] = measure(store, repeat)
            store.close()
            print(f"[bench/cluster] {target.name}: measured; load average {load_average()}", flush=True)
    single, cluster = found.values()
    print(f"{'endpoint':42s} {'single p50':>10s} {'p99':>8s}   {'cluster p50':>11s} {'p99':>8s}  (ms)")
    for name, (p50, p99) in single.items():
        c50, c99 = cluster[name]
        print(f"{name:42s} {p50:10.1f} {p99:8.1f}   {c50:11.1f} {c99:8.1f}{'  OVER 300 ms' if c99 > 300 else ''}")
    print(f"load average {load_average()}")
