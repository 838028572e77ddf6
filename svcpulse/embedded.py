"""`svcpulse up`: the whole system in one process on embedded defaults.

A Tansu broker as a child process, chdb as the store, and in-process the same components a
production deployment runs as services: the loader, a weigh worker (svcpulse weigh) and the API,
plus the demo fleet generating traffic. Ctrl-C (or --duration) stops everything in reverse order.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import logging
import os
import threading
import time

import uvicorn
from prometheus_client import start_http_server

from api.auth import write_demo_users
from api.main import create_app
from collectors.sink import sinks_held
from core.settings import Settings
from otlp import command as otlp_command
from pipeline.loader import Loader, LoaderConfig
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from svcpulse.demo import DemoFleet, admit_demo_fleet
from svcpulse.rolling_broker import RollingBroker
from svcpulse.services import ServiceError, free_port
from weigh.worker import Worker

log = logging.getLogger("svcpulse.up")


def _say(message: str) -> None:
    print(f"[up] {message}", flush=True)


def _thread(name: str, target: object) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads started after this (False where libc is not glibc).

    This one process runs ~200 threads (chdb's pools, the loader, the worker, the API, the collectors);
    glibc gives threads up to 8 arenas per core, each keeping its own freed memory, so RSS crept up by
    ~6 MB a minute in the 31-minute soaks (docs/operations.md). MALLOC_ARENA_MAX, set in the environment
    before start, overrides this."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name or "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = ctypes.CDLL(libc_name)
    return hasattr(libc, "mallopt") and libc.mallopt(M_ARENA_MAX, arenas) == 1


def run_embedded(args: argparse.Namespace, stop: threading.Event, defaults: Settings) -> int:
    """Start everything, wait for `stop` (or --duration), stop everything in reverse order, even on errors."""
    limit_malloc_arenas()
    data_dir = args.data_dir.resolve()
    _say(f"data in {data_dir}")
    with contextlib.ExitStack() as running:  # callbacks run last-registered first
        broker = RollingBroker(data_dir / "tansu", defaults.broker_roll_mb)
        broker.set_hold(lambda: sinks_held(broker.bootstrap))  # in-process producers wait out a roll
        _say(f"starting the Kafka-protocol broker (Tansu) on {broker.bootstrap}"
             + (f", rolled to a fresh generation above {defaults.broker_roll_mb} MB ..." if defaults.broker_roll_mb
                else " (never rolled: SVCPULSE_BROKER_ROLL_MB=0) ..."))
        broker.start()  # its processes die with this one, even on kill -9
        running.callback(broker.stop)
        store_url = f"chdb://{data_dir}/chdb/svcpulse"
        _say(f"opening the embedded store {store_url} ...")
        store = open_store(store_url)
        running.callback(store.close)
        migrate(store)
        if not args.no_demo:  # telemetry alone routes nothing: the demo fleet's policies, before the worker starts
            admit_demo_fleet(store)
        loader = Loader(LoaderConfig(bootstrap=broker.bootstrap, group_id=defaults.group_id, batch_age_s=1.0), store)
        running.callback(_thread("loader", loader.run).join, 30)
        running.callback(loader.stop)
        port = args.port or free_port()
        token = write_demo_users(data_dir / "users.json")  # a fresh demo token each run; only its hash is kept
        settings = Settings(kafka_bootstrap=broker.bootstrap, store_url=store_url, api_host=args.host,
                            api_port=port, users_file=str(data_dir / "users.json"), feed_open=True)
        worker = Worker(settings, store)
        running.callback(_thread("weigh", worker.run).join, 30)
        running.callback(worker.stop)
        base = _serve_api(settings, store, running)
        metrics_port = free_port()
        start_http_server(metrics_port, addr=args.host)  # the loader's and the weigh worker's series
        if not args.no_otlp:  # OpenTelemetry SDKs of any language feed the same tables (docs/otlp.md)
            otlp = running.enter_context(otlp_command.embedded(settings.model_copy(update={
                "otlp_open": True, "otlp_host": args.host, "otlp_http_port": args.otlp_http_port,
                "otlp_grpc_port": args.otlp_grpc_port, "otlp_spool_dir": str(data_dir / "otlp-spool")})))
            _say(f"OTLP in       {otlp.http_url}/v1/traces, gRPC {otlp.grpc_target} (open: no token needed)")
        if not args.no_demo:
            demo = DemoFleet(broker.bootstrap, base, ebpf=not args.no_ebpf, token=token)
            demo.start()
            running.callback(demo.stop)
            _say("demo fleet: shop.frontend -> shop.checkout (3 instances, one sick), shop.catalog (2, one "
                 f"canary), routed by the weight feed; TCP collector {demo.tcp_collector}")
            if demo.plain is not None:
                _say("  + legacy.web: 3 plain http.server processes (no svcpulse code), weighted from TCP "
                     "health alone; one crashes 40 s of every 2 min")
        _say(f"web console  {base}/")
        _say(f"API docs     {base}/docs      metrics {base}/metrics (API), "
             f"http://{args.host}:{metrics_port}/metrics (loader, weigh)")
        _say(f"weight feed  {base}/v1/weights (open); writes: -H 'Authorization: Bearer {token}' (demo admin)")
        _say("Ctrl-C stops everything" + (f"; stopping by itself after {args.duration:g} s" if args.duration else ""))
        stop.wait(args.duration or None)
        _say("stopping ...")
    _say(f"stopped; {loader.rows_loaded} rows loaded this run (kept in {data_dir})")
    return 0


def _serve_api(settings: Settings, store: Store, running: contextlib.ExitStack) -> str:
    """The API under uvicorn in a thread, stopped by `running`; returns its base URL once it listens."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store=store), host=settings.api_host,
                                           port=settings.api_port, log_level="warning"))
    api_thread = _thread("api", server.run)
    running.callback(api_thread.join, 10)
    running.callback(setattr, server, "should_exit", True)
    while not server.started:
        if not api_thread.is_alive():
            raise ServiceError(f"the API could not listen on {settings.api_host}:{settings.api_port}")
        time.sleep(0.05)
    return f"http://{settings.api_host}:{settings.api_port}"
