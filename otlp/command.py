"""`svcpulse otlp`: the receiver as a process until SIGTERM; `embedded()` runs it inside `svcpulse up`.

Events go through the collectors' sink with its disk spool, so a Kafka outage costs no span: the
spool fills, and replays in order when Kafka is back (docs/sink.md).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from collectors.sink import KafkaSink, open_sink
from core.settings import Settings
from otlp.guard import Guard
from otlp.ingest import Ingest
from otlp.mapping import Limits
from otlp.server import Receiver, in_thread
from svcpulse.commands import UserError

# Large batches and a short linger: one batch is in flight at a time and the receiver feeds ~50k/s.
SINK_OPTIONS = {"client_id": "svcpulse-otlp", "batch_records": 10_000, "linger_ms": 5, "memory_queue": 200_000}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default $SVCPULSE_OTLP_HOST, 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="OTLP/HTTP port (default 4318; 0 = any free port)")
    parser.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317; 0 = any free port)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers; default $SVCPULSE_KAFKA_BOOTSTRAP")
    parser.add_argument("--spool-dir", help="where events wait while Kafka is away (default "
                        "$SVCPULSE_OTLP_SPOOL_DIR)")
    parser.add_argument("--open", action="store_true", default=None,
                        help="accept spans without a token (default $SVCPULSE_OTLP_OPEN, false)")


def receiver(settings: Settings, sink: KafkaSink) -> Receiver:
    limits = Limits(max_spans=settings.otlp_max_spans, max_attributes=settings.otlp_max_attributes)
    guard = Guard.from_users_file(settings.users_file, settings.otlp_open, settings.otlp_rate_spans_per_s,
                                  settings.otlp_max_spans)
    return Receiver(Ingest(sink, guard, limits), settings.otlp_host, settings.otlp_http_port,
                    settings.otlp_grpc_port, settings.otlp_max_request_bytes)


def run(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {"otlp_host": args.host, "otlp_http_port": args.http_port, "otlp_grpc_port": args.grpc_port,
                 "kafka_bootstrap": args.bootstrap, "otlp_spool_dir": args.spool_dir, "otlp_open": args.open}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    sink = open_sink(settings.kafka_bootstrap, settings.otlp_spool_dir, **SINK_OPTIONS)
    # uvicorn handles SIGTERM/SIGINT while serving, then re-raises them to the handlers it found: make
    # those no-ops, so the re-raised signal cannot kill the process before the sink is closed below.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        asyncio.run(_serve(receiver(settings, sink), settings))
    except OSError as err:
        raise UserError(str(err)) from None
    finally:
        print("[otlp] stopping: delivering what is queued (the rest stays in the spool) ...", flush=True)
        sink.close()
    stats = sink.stats()
    print(f"[otlp] stopped; {stats['sent']} events delivered to Kafka, {stats['spool_records']} left in "
          f"{settings.otlp_spool_dir}")
    return 0


async def _serve(server: Receiver, settings: Settings) -> None:
    await server.start()
    access = "open to anyone" if settings.otlp_open else f"tokens of ingest users in {settings.users_file!r}"
    print(f"[otlp] OTLP/HTTP {server.http_url}/v1/traces  OTLP/gRPC {server.grpc_target}  ({access})\n"
          f"[otlp] rpc events -> Kafka {settings.kafka_bootstrap} (spool {settings.otlp_spool_dir}); "
          f"metrics {server.http_url}/metrics; SIGTERM stops", flush=True)
    await server.wait()  # uvicorn turns SIGTERM/SIGINT into a graceful exit
    await server.stop()


@contextmanager
def embedded(settings: Settings) -> Iterator[Receiver]:
    """The receiver and its own sink, serving from a thread until the block ends."""
    sink = open_sink(settings.kafka_bootstrap, settings.otlp_spool_dir, **SINK_OPTIONS)
    try:
        with in_thread(receiver(settings, sink)) as running:
            yield running
    finally:
        sink.close()
