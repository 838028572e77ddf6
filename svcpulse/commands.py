"""What each `svcpulse` subcommand does; cli.py only declares the flags.

Each command imports what it needs inside its function (see cli.py: one role's extra is enough).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from pipeline.store import Store
    from svcpulse.cluster_services import LocalCluster
    from svcpulse.services import ClickHouseServer, Tansu


class UserError(RuntimeError):
    """A problem the user can fix (bad flag, unreachable service): printed as one line, exit 2."""


def _store(args: argparse.Namespace, settings: Settings, session: dict[str, int | str] | None = None) -> Store:
    from pipeline.store import StoreError, open_store

    url = getattr(args, "store", None) or settings.store_url
    try:
        return open_store(url, settings=session)
    except (ValueError, StoreError) as err:
        raise UserError(str(err)) from None


def _bootstrap(args: argparse.Namespace, settings: Settings) -> str:
    return getattr(args, "bootstrap", None) or settings.kafka_bootstrap


def _max_age_s(settings: Settings) -> int:
    """The oldest event the loader (and a DLQ replay) accepts: SVCPULSE_EVENT_MAX_AGE_S, else the retention."""
    return settings.event_max_age_s or settings.retention_days_raw * 86_400


def _drive(service: Tansu | ClickHouseServer, port_flag: int | None, action: str) -> None:
    if port_flag is None:
        service.adopt_recorded_port()
    if action == "start":
        print(f"[services] starting {service.name} on 127.0.0.1:{service.port} ...", flush=True)
        service.start()
    elif action == "stop":
        service.stop()
    print(service.status())


def _drive_cluster(cluster: LocalCluster, action: str) -> None:
    if action == "start":
        cluster.start(progress=True)
    elif action == "stop":
        cluster.stop()
    print("\n".join(cluster.status()))


def services(args: argparse.Namespace, settings: Settings) -> int:
    from svcpulse.cluster_services import CLUSTER, LocalCluster
    from svcpulse.services import ClickHouseServer, ServiceError, Tansu

    tansu = Tansu(port=args.kafka_port or 19092, workdir=args.dir / "tansu")
    single = ClickHouseServer(port=args.clickhouse_port or 19000, workdir=args.dir / "clickhouse")
    cluster = LocalCluster(args.dir / "cluster")
    starting_cluster = args.action == "start" and args.cluster
    # status and stop cover a cluster started in this directory before, without the flag
    with_cluster = args.cluster or (args.action != "start" and cluster.recorded())
    try:
        _drive(tansu, args.kafka_port, args.action)
        if not starting_cluster:
            _drive(single, args.clickhouse_port, args.action)
        if with_cluster:
            _drive_cluster(cluster, args.action)
    except ServiceError as err:
        raise UserError(str(err)) from None
    if args.action == "start":
        print(f"export SVCPULSE_KAFKA_BOOTSTRAP={tansu.bootstrap}")
        print(f"export SVCPULSE_STORE_URL={cluster.store_url() if starting_cluster else single.url}")
        if starting_cluster:
            print(f"export SVCPULSE_CLICKHOUSE_CLUSTER={CLUSTER}")
        print("next: svcpulse migrate && svcpulse load & svcpulse api")
    return 0


def migrate(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.migrate import migrate as apply_migrations
    from pipeline.store import StoreError

    store = _store(args, settings)
    cluster = getattr(args, "cluster", None) or settings.clickhouse_cluster
    if cluster and store.dialect != "clickhouse":
        store.close()
        raise UserError(f"--cluster {cluster}: cluster DDL needs a ClickHouse server store, not {store.dialect}")
    try:
        apply_migrations(store, cluster=cluster)
    except (StoreError, ValueError) as err:
        raise UserError(str(err)) from None
    finally:
        store.close()
    return 0


def load(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import cluster as cluster_ddl
    from pipeline import metrics
    from pipeline.loader import Loader, LoaderConfig
    from svcpulse import loadgroup

    try:
        processes = loadgroup.count(args.processes or settings.loader_processes)
    except ValueError as err:
        raise UserError(str(err)) from None
    if processes > 1:
        return loadgroup.run(args, processes)
    config = LoaderConfig(
        bootstrap=_bootstrap(args, settings),
        group_id=args.group or settings.group_id,
        batch_rows=args.batch_rows or settings.batch_rows,
        batch_age_s=args.batch_age or settings.batch_age_s,
        partitions=settings.partitions,
        kafka_client=args.kafka_client or settings.kafka_client,
        max_age_s=_max_age_s(settings),
        max_future_s=settings.event_max_future_s,
        stall_s=settings.loader_stall_s,
    )
    # On a cluster: synchronous inserts into every shard before the offsets are committed (pipeline/cluster.py).
    store = _store(args, settings, cluster_ddl.LOADER_SETTINGS if settings.clickhouse_cluster else None)
    every_replica = _every_replica(store, settings.clickhouse_cluster) if settings.clickhouse_cluster else None
    loader = Loader(config, store)
    if every_replica:
        from pipeline.rollup_repair import RollupRepair

        loader.guard.source, loader.guard.settings = every_replica
        loader.repair = RollupRepair(store, settings.clickhouse_cluster)
    if args.metrics_port:
        metrics.serve(args.metrics_host, args.metrics_port, loader.progress.verdict)
        print(f"[load] metrics at http://{args.metrics_host}:{args.metrics_port}/metrics, readiness at /readyz")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loader.stop())  # finish the batch (one attempt), commit, leave
    where = f" on cluster {settings.clickhouse_cluster}" if settings.clickhouse_cluster else ""
    if store.json_inserts:  # docs/scaling.md, "JSON lines over HTTP"
        where += f", JSON lines over HTTP port {store.json_inserts.port}"
    print(f"[load] {config.bootstrap} ({config.kafka_client}) -> {store.dialect}:{store.database}{where} "
          f"(batches of {config.batch_rows} rows or {config.batch_age_s} s); SIGTERM stops cleanly", flush=True)
    loader.run()
    store.close()
    print(f"[load] stopped after loading {loader.rows_loaded} rows")
    return 0


def _every_replica(store: Store, cluster: str) -> tuple[Callable[[str], str], str]:
    """On a cluster the redelivery guard reads every replica (pipeline/cluster.py every_replica): what it
    reads and its query settings, once the servers are known to define both clusters it needs."""
    from pipeline import cluster as cluster_ddl
    from pipeline.store import StoreError

    try:
        missing = cluster_ddl.missing_clusters(store, cluster)
    except StoreError as err:
        raise UserError(str(err)) from None
    if missing:
        raise UserError(f"the ClickHouse servers define no cluster {' or '.join(missing)} in remote_servers; "
                        "see docs/scaling.md for the cluster config")
    return cluster_ddl.every_replica(store.database, cluster), cluster_ddl.EVERY_REPLICA_SETTINGS


def api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.main import create_app

    overrides = {"store_url": args.store, "kafka_bootstrap": args.bootstrap,
                 "api_host": args.host, "api_port": args.port}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v})
    print(f"[api] http://{settings.api_host}:{settings.api_port}/  (OpenAPI at /docs)", flush=True)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning")
    return 0


def weigh(args: argparse.Namespace, settings: Settings) -> int:
    from weigh.worker import Worker

    overrides = {"kafka_bootstrap": args.bootstrap, "store_url": args.store, "weigh_group_id": args.group}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v})
    store = None if args.no_history else _store(args, settings)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.metrics_host)
        print(f"[weigh] metrics at http://{args.metrics_host}:{args.metrics_port}/metrics")
    worker = Worker(settings, store)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())  # leave the group: the others take over at once
    history = "no weight_history" if store is None else f"weight_history in {store.dialect}:{store.database}"
    print(f"[weigh] {settings.kafka_bootstrap}: group {settings.weigh_group_id} on svcpulse.rpc -> "
          f"svcpulse.weights every {settings.weigh_tick_s:g} s ({history}); SIGTERM stops cleanly", flush=True)
    worker.run()
    if store is not None:
        store.close()
    print(f"[weigh] stopped after {worker.events} events and {worker.ticks} ticks")
    return 0


def dlq(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import dlq as dead_letters

    bootstrap = _bootstrap(args, settings)
    if args.action == "show":
        shown = list(dead_letters.read_dead_letters(bootstrap, None, limit=args.limit,
                                                          client=settings.kafka_client))
        for event in shown:
            print(f"{event['topic']}[{event['partition']}]@{event['offset']}: {event['reason']}")
        print(f"[dlq] {len(shown)} dead letter(s) shown from {bootstrap} (at most --limit {args.limit})")
    elif args.action == "export":
        if not args.out:
            raise UserError("export needs --out FILE")
        with args.out.open("w", encoding="utf-8") as out:
            written = dead_letters.export(
                dead_letters.read_dead_letters(bootstrap, None, client=settings.kafka_client), out)
        print(f"[dlq] wrote {written} dead letter(s) to {args.out}; fix `payload`, then "
              f"svcpulse dlq replay --from-file {args.out}")
    else:
        try:
            source = (dead_letters.read_export(args.from_file) if args.from_file
                      else dead_letters.read_dead_letters(bootstrap, dead_letters.REPLAY_GROUP,
                                                         client=settings.kafka_client))
            report = dead_letters.replay(bootstrap, source, requeue_invalid=not args.from_file,
                                         client=settings.kafka_client, max_age_s=_max_age_s(settings),
                                         max_future_s=settings.event_max_future_s)
        except (OSError, ValueError) as err:
            raise UserError(str(err)) from None
        print(report.summary())
    return 0


def retention(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.retention import apply_retention, retention_days
    from pipeline.store import StoreError

    keep = retention_days(settings.retention_days_raw, settings.retention_days_rollup,
                          settings.retention_days_load)
    store = _store(args, settings)
    try:
        dropped = apply_retention(store, keep, dt.date.today(), dry_run=args.dry_run,
                                  cluster=settings.clickhouse_cluster)
    except StoreError as err:
        raise UserError(str(err)) from None
    finally:
        store.close()
    verb = "would drop" if args.dry_run else "dropped"
    for table, partition in dropped:
        print(f"[retention] {verb} {table} partition {partition} (keeps {keep[table]} days)")
    print(f"[retention] {verb} {len(dropped)} partition(s)")
    return 0


def schema(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from pipeline import events

    args.dir.mkdir(parents=True, exist_ok=True)
    for kind in events.SCHEMAS:
        path = args.dir / f"{kind}.schema.json"
        path.write_text(json.dumps(events.json_schema(kind), indent=2) + "\n")
        print(f"[schema] wrote {path}")
    return 0


def up(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.store import StoreError
    from svcpulse.embedded import run_embedded
    from svcpulse.services import ServiceError

    try:
        return run_embedded(args, stop=_stop_on_signals(), defaults=settings)
    except (ServiceError, StoreError, OSError) as err:  # OSError: a port in use
        raise UserError(str(err)) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


