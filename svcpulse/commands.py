"""What each `svcpulse` subcommand does; cli.py only declares the flags."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading

from core.settings import Settings
from pipeline import dlq as dead_letters
from pipeline import events, metrics
from pipeline.loader import Loader, LoaderConfig
from pipeline.migrate import migrate as apply_migrations
from pipeline.retention import apply_retention, retention_days
from pipeline.store import Store, StoreError, open_store
from svcpulse import loadgroup
from svcpulse.services import ClickHouseServer, ServiceError, Tansu


class UserError(RuntimeError):
    """A problem the user can fix (bad flag, unreachable service): printed as one line, exit 2."""


def _store(args: argparse.Namespace, settings: Settings) -> Store:
    url = getattr(args, "store", None) or settings.store_url
    try:
        return open_store(url)
    except (ValueError, StoreError) as err:
        raise UserError(str(err)) from None


def _bootstrap(args: argparse.Namespace, settings: Settings) -> str:
    return getattr(args, "bootstrap", None) or settings.kafka_bootstrap


def _max_age_s(settings: Settings) -> int:
    """The oldest event the loader (and a DLQ replay) accepts: SVCPULSE_EVENT_MAX_AGE_S, else the retention."""
    return settings.event_max_age_s or settings.retention_days_raw * 86_400


def services(args: argparse.Namespace, settings: Settings) -> int:
    managed = [Tansu(port=args.kafka_port or 19092, workdir=args.dir / "tansu"),
               ClickHouseServer(port=args.clickhouse_port or 19000, workdir=args.dir / "clickhouse")]
    try:
        for service, port_flag in zip(managed, (args.kafka_port, args.clickhouse_port), strict=True):
            if port_flag is None:
                service.adopt_recorded_port()
            if args.action == "start":
                print(f"[services] starting {service.name} on 127.0.0.1:{service.port} ...", flush=True)
                service.start()
            elif args.action == "stop":
                service.stop()
            print(service.status())
    except ServiceError as err:
        raise UserError(str(err)) from None
    if args.action == "start":
        print(f"export SVCPULSE_KAFKA_BOOTSTRAP={managed[0].bootstrap}")
        print(f"export SVCPULSE_STORE_URL={managed[1].url}")
        print("next: svcpulse migrate && svcpulse load & svcpulse api")
    return 0


def migrate(args: argparse.Namespace, settings: Settings) -> int:
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
    store = _store(args, settings)
    loader = Loader(config, store)
    if args.metrics_port:
        metrics.serve(args.metrics_host, args.metrics_port, loader.progress.verdict)
        print(f"[load] metrics at http://{args.metrics_host}:{args.metrics_port}/metrics, readiness at /readyz")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loader.stop())  # finish the batch (one attempt), commit, leave
    print(f"[load] {config.bootstrap} ({config.kafka_client}) -> {store.dialect}:{store.database} "
          f"(batches of {config.batch_rows} rows or {config.batch_age_s} s); SIGTERM stops cleanly", flush=True)
    loader.run()
    store.close()
    print(f"[load] stopped after loading {loader.rows_loaded} rows")
    return 0


def api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.main import create_app

    overrides = {"store_url": args.store, "kafka_bootstrap": args.bootstrap,
                 "api_host": args.host, "api_port": args.port}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v})
    print(f"[api] http://{settings.api_host}:{settings.api_port}/  (OpenAPI at /docs)", flush=True)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning")
    return 0


def dlq(args: argparse.Namespace, settings: Settings) -> int:
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

    args.dir.mkdir(parents=True, exist_ok=True)
    for kind in events.SCHEMAS:
        path = args.dir / f"{kind}.schema.json"
        path.write_text(json.dumps(events.json_schema(kind), indent=2) + "\n")
        print(f"[schema] wrote {path}")
    return 0


def up(args: argparse.Namespace, settings: Settings) -> int:
    from svcpulse.embedded import run_embedded

    try:
        return run_embedded(args, stop=_stop_on_signals())
    except (ServiceError, StoreError, OSError) as err:  # OSError: a port in use
        raise UserError(str(err)) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


