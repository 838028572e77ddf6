"""The `svcpulse` command: one entry point, a subcommand per job (see docs/cli.md for examples).

Imports are lazy: a command loads only the modules it runs, so a node installed with one role's
extra (e.g. `pip install 'svcpulse[collector]'` for `svcpulse collect tcp`) never imports chdb,
pyarrow, FastAPI or the ClickHouse driver. Subcommands whose flags live in their own module
(collect, balancer, dashboards) are configured only when chosen on the command line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.settings import Settings
from svcpulse import commands

Subparsers = argparse._SubParsersAction  # what add_subparsers returns (argparse names no public type)

EPILOG = "Every command prints what it does; see docs/cli.md for worked examples."


def _add(sub: Subparsers, name: str, summary: str, example: str,
         run: Callable[[argparse.Namespace, Settings], int]) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary, description=summary, epilog=f"example:\n  {example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="store URL (clickhouse://host:port/db or chdb:///path/db); "
                        "default $SVCPULSE_STORE_URL")


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers; default $SVCPULSE_KAFKA_BOOTSTRAP")


def _metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve /metrics (Prometheus), /readyz and /healthz on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="metrics listen address (0.0.0.0 in a container, for the scraper)")


def _module_command(module: str, takes_settings: bool = False) -> Callable[[argparse.Namespace, Settings], int]:
    """run(args) (or run(args, settings)) of a module imported only when its command runs."""
    if takes_settings:
        return lambda args, settings: importlib.import_module(module).run(args, settings)
    return lambda args, _: importlib.import_module(module).run(args)


def _configure(parser: argparse.ArgumentParser, module: str, argv: Sequence[str] | None, *path: str) -> None:
    """Add the module's flags when the command line chose this subcommand (argv None: every one)."""
    if argv is None or list(path) == [a for a in argv if not a.startswith("-")][: len(path)]:
        importlib.import_module(module).configure(parser)
    else:  # not chosen: parse anything, it is never run
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="svcpulse", description=__doc__, epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_local_run(sub)
    _add_data_path(sub)
    _add_control_plane(sub, argv)
    _add_maintenance(sub)
    _add_balancers(sub, argv)
    _add_node_and_dashboards(sub, argv)
    return parser


def _add_local_run(sub: Subparsers) -> None:
    """`up` (everything embedded) and `services` (the local real servers)."""
    up = _add(sub, "up", "run everything embedded: broker, chdb store, loader, API, demo fleet",
              "svcpulse up --port 8000", commands.up)
    up.add_argument("--data-dir", type=Path, default=Path("svcpulse-data"), help="where chdb keeps data")
    up.add_argument("--host", default="127.0.0.1", help="API listen address")
    up.add_argument("--port", type=int, default=8000, help="API port (0 = any free port)")
    up.add_argument("--no-demo", action="store_true", help="do not start the demo fleet")
    up.add_argument("--no-ebpf", action="store_true", help="do not start the eBPF collector even as root")
    up.add_argument("--otlp-http-port", type=int, default=4318, help="OTLP/HTTP receiver port (0 = any free port)")
    up.add_argument("--otlp-grpc-port", type=int, default=4317, help="OTLP/gRPC receiver port (0 = any free port)")
    up.add_argument("--no-otlp", action="store_true", help="do not start the OTLP receiver")
    up.add_argument("--duration", type=float, default=0, help="stop after N seconds (0 = until Ctrl-C)")

    services = _add(sub, "services", "start, stop or show the local real services (Tansu, ClickHouse or a "
                    "ClickHouse cluster with ZooKeeper)",
                    "svcpulse services start --cluster && svcpulse services status", commands.services)
    services.add_argument("action", choices=("start", "stop", "status"))
    services.add_argument("--cluster", action="store_true", help="start: ZooKeeper and 4 ClickHouse servers "
                          "(2 shards x 2 replicas) instead of one server (see docs/scaling.md)")
    services.add_argument("--dir", type=Path, default=Path(".svcpulse/services"), help="work directory")
    services.add_argument("--kafka-port", type=int, help="broker port (start default 19092; else as started)")
    services.add_argument("--clickhouse-port", type=int, help="ClickHouse native port (start default 19000)")


def _add_data_path(sub: Subparsers) -> None:
    """`migrate` and `load`: the schema and the loader from Kafka into ClickHouse."""
    migrate = _add(sub, "migrate", "apply pending schema migrations (a no-op when up to date)",
                   "svcpulse migrate --store clickhouse://127.0.0.1:19000/svcpulse", commands.migrate)
    _store_flags(migrate)
    migrate.add_argument("--cluster", help="ClickHouse cluster name: Replicated + Distributed tables ON CLUSTER "
                         "(default $SVCPULSE_CLICKHOUSE_CLUSTER; see docs/scaling.md)")

    load = _add(sub, "load", "load events from Kafka into ClickHouse until SIGTERM",
                "svcpulse load --bootstrap 127.0.0.1:19092 --store clickhouse://127.0.0.1:19000/svcpulse",
                commands.load)
    _kafka_flags(load)
    _store_flags(load)
    load.add_argument("--group", help="consumer group (default svcpulse-loader)")
    load.add_argument("--batch-rows", type=int, help="flush at this many rows (default 100000)")
    load.add_argument("--batch-age", type=float, help="flush at this age in seconds (default 1.0)")
    load.add_argument("--kafka-client", choices=("kafka-python", "confluent"),
                      help="Kafka client library (default kafka-python; confluent is faster)")
    load.add_argument("--processes", help="loader processes in the consumer group: N or auto (one per core); "
                      "default $SVCPULSE_LOADER_PROCESSES (1)")
    _metrics_flags(load)


def _add_control_plane(sub: Subparsers, argv: Sequence[str] | None) -> None:
    """`api`, `weigh` and `otlp`: serving, computing the feed, receiving OpenTelemetry."""
    api = _add(sub, "api", "serve the HTTP API (weights, queries, console, /metrics)",
               "svcpulse api --port 8000 --store clickhouse://127.0.0.1:19000/svcpulse", commands.api)
    _store_flags(api)
    _kafka_flags(api)
    api.add_argument("--host", help="listen address (default 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen port (default 8000)")

    weigh = _add(sub, "weigh", "compute routing weights from the rpc stream and publish them to svcpulse.weights",
                 "svcpulse weigh --bootstrap 127.0.0.1:19092 --store clickhouse://127.0.0.1:19000/svcpulse",
                 commands.weigh)
    _kafka_flags(weigh)
    _store_flags(weigh)
    weigh.add_argument("--group", help="consumer group of the workers (default svcpulse-weigh)")
    weigh.add_argument("--no-history", action="store_true", help="do not write weight_history (no ClickHouse)")
    _metrics_flags(weigh)

    otlp = _add(sub, "otlp", "receive OpenTelemetry traces (OTLP/HTTP and gRPC) as rpc events (docs/otlp.md)",
                "svcpulse otlp --host 0.0.0.0 --bootstrap 127.0.0.1:19092",
                _module_command("otlp.command", takes_settings=True))
    _configure(otlp, "otlp.command", argv, "otlp")


def _add_maintenance(sub: Subparsers) -> None:
    """`dlq`, `retention` and `schema`."""
    dlq = _add(sub, "dlq", "inspect, export or replay dead-lettered messages",
               "svcpulse dlq export --out dead.jsonl && svcpulse dlq replay --from-file dead.jsonl",
               commands.dlq)
    dlq.add_argument("action", choices=("show", "export", "replay"))
    _kafka_flags(dlq)
    dlq.add_argument("--out", type=Path, help="export: file to write (JSON lines)")
    dlq.add_argument("--from-file", type=Path, help="replay: fixed dead letters from an export")
    dlq.add_argument("--limit", type=int, default=20, help="show: how many to print")

    retention = _add(sub, "retention", "drop day partitions older than each table's retention",
                     "svcpulse retention --dry-run", commands.retention)
    _store_flags(retention)
    retention.add_argument("--dry-run", action="store_true", help="only print what would be dropped")

    schema = _add(sub, "schema", "export the event contract as JSON Schema files",
                  "svcpulse schema export schemas/", commands.schema)
    schema.add_argument("action", choices=("export",))
    schema.add_argument("dir", type=Path)


def _add_balancers(sub: Subparsers, argv: Sequence[str] | None) -> None:
    """`balancer KIND`: one adapter per load balancer, each its module's own flags."""
    balancer = sub.add_parser("balancer", help="keep a load balancer's weights in step with the feed")
    kinds = balancer.add_subparsers(dest="balancer", required=True, metavar="KIND")
    for module, name, summary, example in (
        ("balancer.haproxy", "haproxy", "set HAProxy server weights from the feed (runtime API socket; "
         "docs/haproxy.md)", "--socket /run/haproxy/admin.sock --backend cart"),
        ("balancer.nginx", "nginx", "write an nginx upstream block from the feed, test, reload (docs/nginx.md)",
         "--upstream cart --file /etc/nginx/svcpulse/cart.conf"),
        ("balancer.caddy", "caddy", "route a Caddy reverse_proxy by the weights, with no reload (docs/caddy.md)",
         "--admin http://127.0.0.1:2019 --handler cart"),
        ("balancer.envoy", "envoy-eds", "write an EDS file for Envoy's filesystem config source (docs/envoy.md)",
         "--file /etc/envoy/eds/shop.cart.json")):
        kind = _add(kinds, name, summary, f"svcpulse balancer {name} --api http://127.0.0.1:8000 "
                    f"--service shop.cart {example}", _module_command(module))
        _configure(kind, module, argv, "balancer", name)
    dns = _add(kinds, "caddy-dns", "serve the Caddy adapter's DNS answers from its --dns-zone file, apart from "
               "the adapter so its restarts lose no request (docs/caddy.md)", "svcpulse balancer caddy-dns "
               "--listen 127.0.0.1:5380 --zone /var/lib/svcpulse/shop.cart.zone.json",
               _module_command("balancer.caddy_dns_server"))
    _configure(dns, "balancer.caddy_dns_server", argv, "balancer", "caddy-dns")


def _add_node_and_dashboards(sub: Subparsers, argv: Sequence[str] | None) -> None:
    """`collect tcp|load` (node collectors) and `dashboards build|push`."""
    collect = sub.add_parser("collect", help="run a collector on this node (eBPF TCP, cgroup load)")
    collectors = collect.add_subparsers(dest="collector", required=True, metavar="COLLECTOR")
    tcp_parser = _add(collectors, "tcp", "record every TCP connection with eBPF (root; see docs/collect-tcp.md)",
                      "svcpulse collect tcp --output jsonl", _module_command("collectors.tcplife"))
    _configure(tcp_parser, "collectors.tcplife", argv, "collect", "tcp")
    load_parser = _add(collectors, "load", "sample CPU and memory per cgroup and host (docs/collect-load.md)",
                       "svcpulse collect load --output jsonl --interval 5 --count 1",
                       _module_command("collectors.load"))
    _configure(load_parser, "collectors.load", argv, "collect", "load")

    boards = sub.add_parser("dashboards", help="Grafana dashboards as code: build the JSON, push it to Grafana")
    actions = boards.add_subparsers(dest="dashboards", required=True, metavar="ACTION")
    build = _add(actions, "build", "write the dashboard JSON and Grafana provisioning files (docs/dashboards.md)",
                 "svcpulse dashboards build --out dashboards/", _module_command("dashboards.build"))
    _configure(build, "dashboards.build", argv, "dashboards", "build")
    push = _add(actions, "push", "install the dashboards (and datasources) into a Grafana with grafana-client",
                "svcpulse dashboards push --url http://127.0.0.1:3000 --token $GRAFANA_TOKEN",
                _module_command("dashboards.push"))
    _configure(push, "dashboards.push", argv, "dashboards", "push")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args: Any = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("kafka", "httpx", "httpcore"):  # one line per request or poll drowns what matters
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.run(args, Settings())
    except KeyboardInterrupt:
        return 130
    except commands.UserError as err:
        print(f"svcpulse {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
