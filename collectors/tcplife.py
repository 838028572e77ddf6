"""`svcpulse collect tcp`: one contract `tcp` event per closed TCP connection, from eBPF.

Data path: tracepoint sock:inet_sock_set_state -> collectors/tcplife.bpf.c (ring buffer) -> decode
here -> sink (Kafka topic svcpulse.tcp, or JSON lines on stdout). The BPF program is compiled and
loaded once at start-up (3-5 s); byte counters are read at struct offsets taken from the running
kernel's BTF, so mismatched kernel headers cannot corrupt them. bcc is imported inside run() only:
the rest of svcpulse works on machines without it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from collectors import btf
from collectors.cgroups import CgroupError, CgroupPaths
from collectors.k8s import KubeError, Namer, PathNames, namer_for
from core.settings import Settings
from pipeline.events import Rejection

BPF_SOURCE = Path(__file__).with_name("tcplife.bpf.c")
TRACEPOINTS = (
    Path("/sys/kernel/tracing/events/sock/inet_sock_set_state"),
    Path("/sys/kernel/debug/tracing/events/sock/inet_sock_set_state"),
)
# struct event in tcplife.bpf.c, field for field.
EVENT_FORMAT = struct.Struct("<QQQQQIHH16s16s16sBB6x")
ROLES = ("", "client", "server")
COUNTER_RING_FULL, COUNTER_MAP_FULL = 0, 1

LOST = Counter(
    "svcpulse_tcplife_lost_events_total",
    "Closed TCP connections not reported: ring buffer full or socket map full",
)
EMITTED = Counter("svcpulse_tcplife_events_total", "Closed TCP connections reported")


class Output(Protocol):
    def send(self, kind: str, event: dict[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonLines:
    """One JSON event per line, flushed per line so a pipe reader sees each connection at once."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout.buffer

    def send(self, kind: str, event: dict[str, Any]) -> None:
        self.stream.write(orjson.dumps(event) + b"\n")
        self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def _ip(family: int, raw: bytes) -> str:
    # IPv4 addresses arrive v4-mapped (::ffff:a.b.c.d) in the same 16 bytes as IPv6 ones.
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def decode(raw: bytes, host: str, cgroup_path: Callable[[int], str], wall_offset_ns: int) -> dict[str, Any]:
    """A raw `struct event` -> a contract `tcp` event (pipeline/events.py, TCP_FIELDS)."""
    ts_ns, span_ns, tx, rx, cgroup_id, pid, lport, rport, laddr, raddr, comm, family, role = (
        EVENT_FORMAT.unpack_from(raw)
    )
    return {
        "v": 1,
        "ts_ms": (ts_ns + wall_offset_ns) // 1_000_000,
        "host": host,
        "pid": pid,
        "comm": comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
        "cgroup": cgroup_path(cgroup_id),
        "family": family,
        "laddr": _ip(family, laddr),
        "lport": lport,
        "raddr": _ip(family, raddr),
        "rport": rport,
        "role": ROLES[role] if role < len(ROLES) else "",
        "tx_bytes": tx,
        "rx_bytes": rx,
        "duration_ms": span_ns / 1e6,
    }


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `svcpulse collect tcp`."""
    parser.add_argument("--output", choices=("kafka", "jsonl"), default="kafka",
                        help="kafka: topic svcpulse.tcp via the shared sink; jsonl: JSON lines on stdout")
    parser.add_argument("--bootstrap-servers", "--bootstrap", dest="bootstrap_servers",
                        help="Kafka bootstrap servers (default $SVCPULSE_KAFKA_BOOTSTRAP or 127.0.0.1:19092)")
    parser.add_argument("--spool-dir", default=None, help="Kafka sink's disk spool for broker outages")
    parser.add_argument("--ports", type=_int_list, default=[],
                        help="comma-separated ports: only connections with this local or remote port")
    parser.add_argument("--pids", type=_int_list, default=[], help="comma-separated process ids to report")
    parser.add_argument("--cgroup", default=None,
                        help="only processes in this cgroup v2 path or below it (subtree as of start-up)")
    parser.add_argument("--map-size", type=int, default=65536, help="sockets tracked at once (default 65536)")
    parser.add_argument("--ring-pages", type=int, default=1024,
                        help="ring buffer size in 4 KiB pages, a power of two (default 1024 = 4 MiB)")
    parser.add_argument("--poll-interval", type=float, default=0.1,
                        help="seconds between ring buffer reads; batching keeps CPU low (default 0.1)")
    parser.add_argument("--host", default=socket.gethostname(), help="host label on every event")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port")


def check_args(args: argparse.Namespace) -> str | None:
    """Why the flags cannot work, or None."""
    if any(not 0 < p < 65536 for p in args.ports):
        return "--ports: ports must be 1..65535"
    if any(p <= 0 for p in args.pids):
        return "--pids: process ids must be positive"
    if args.map_size < 1:
        return "--map-size must be at least 1"
    if args.ring_pages < 1 or args.ring_pages & (args.ring_pages - 1):
        return "--ring-pages must be a power of two"
    if args.poll_interval <= 0:
        return "--poll-interval must be positive"
    return None


def preflight() -> str | None:
    """Why eBPF collection cannot start on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (CAP_BPF and CAP_PERFMON): run it with sudo"
    if not btf.VMLINUX.exists():
        return f"no kernel BTF at {btf.VMLINUX}: the kernel needs CONFIG_DEBUG_INFO_BTF=y"
    if not any(path.exists() for path in TRACEPOINTS):
        return ("tracepoint sock:inet_sock_set_state not found: needs kernel >= 4.16 and tracefs "
                "(mount -t tracefs nodev /sys/kernel/tracing)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc Python module not found: apt-get install python3-bpfcc; scripts/bootstrap.sh --no-apt"
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not build.exists():
        return f"no kernel headers for bcc at {build}: run scripts/bootstrap.sh"
    return None


def load(args: argparse.Namespace, offsets: dict[str, int], cgroup_ids: list[int]) -> Any:
    """Compile and attach the BPF program, then fill the filter maps."""
    from bcc import BPF

    cflags = [
        f"-DOFF_BYTES_ACKED={offsets['bytes_acked']}",
        f"-DOFF_BYTES_RECEIVED={offsets['bytes_received']}",
        f"-DMAP_SIZE={args.map_size}",
        f"-DRING_PAGES={args.ring_pages}",
        f"-DFILTER_PORTS={int(bool(args.ports))}",
        f"-DFILTER_PIDS={int(bool(args.pids))}",
        f"-DFILTER_CGROUPS={int(bool(cgroup_ids))}",
    ]
    bpf = BPF(src_file=str(BPF_SOURCE).encode(), cflags=cflags)
    one = ctypes.c_uint8(1)
    for port in args.ports:
        bpf[b"port_filter"][ctypes.c_uint16(port)] = one
    for pid in args.pids:
        bpf[b"pid_filter"][ctypes.c_uint32(pid)] = one
    for cgroup_id in cgroup_ids:
        bpf[b"cgroup_filter"][ctypes.c_uint64(cgroup_id)] = one
    return bpf


def open_output(args: argparse.Namespace) -> Output:
    if args.output == "jsonl":
        return JsonLines()
    from collectors.sink import open_sink  # lazily: the shared sink is another module's concern

    return open_sink(args.bootstrap_servers or Settings().kafka_bootstrap, spool_dir=args.spool_dir)


class Collector:
    """The consume loop: ring buffer -> decode -> output, plus lost-event accounting."""

    def __init__(self, bpf: Any, output: Output, host: str, cgroup_path: Callable[[int], str],
                 names: Namer | None = None) -> None:
        self.bpf, self.output, self.host, self.cgroup_path = bpf, output, host, cgroup_path
        self.names = names or PathNames()  # cgroup path -> (workload, workload_kind), cached per path
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.emitted = self.lost = self.rejected = self._counted = 0
        self.stopping = False
        self.error: str | None = None
        self.counters = bpf[b"counters"]
        bpf[b"events"].open_ring_buffer(self.on_event)

    def on_event(self, _ctx: Any, data: int, size: int) -> int:
        if self.stopping:
            return 0
        try:
            raw = ctypes.string_at(data, size)
            event = decode(raw, self.host, self.cgroup_path, self.wall_offset_ns)
            event["workload"], event["workload_kind"] = self.names(event["cgroup"])
            self.output.send("tcp", event)
            self.emitted += 1
        except BrokenPipeError:  # e.g. `... --output jsonl | head`: the reader is gone
            self.stop()
        except Rejection as err:  # the sink validates: one odd event must not stop the collector
            self.rejected += 1
            if self.rejected == 1:
                print(f"svcpulse collect tcp: event rejected: {err.reason}", file=sys.stderr, flush=True)
        except Exception as err:  # a ctypes callback must not raise: bcc would only print it
            self.stop(f"output failed: {type(err).__name__}: {err}")
        return 0

    def stop(self, error: str | None = None) -> None:
        self.stopping = True
        self.error = self.error or error

    def tick(self) -> None:
        """Once per loop: counters to Prometheus; wall clock re-read in case NTP stepped it."""
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        lost = sum(self.counters.sum(ctypes.c_int(i)).value for i in (COUNTER_RING_FULL, COUNTER_MAP_FULL))
        if lost > self.lost:
            LOST.inc(lost - self.lost)
            self.lost = lost
        EMITTED.inc(self.emitted - self._counted)
        self._counted = self.emitted

    def run(self, interval: float, stop: threading.Event) -> None:
        # Reading in batches every `interval` costs far less CPU than waking per event; the ring
        # buffer (--ring-pages) absorbs the events that arrive in between.
        while not self.stopping and not stop.is_set():
            self.bpf.ring_buffer_consume()
            self.tick()
            stop.wait(interval)
        self.stopping = self.error is not None  # drain what is left unless the output broke
        self.bpf.ring_buffer_consume()
        self.tick()


def _fail(message: str, code: int = 1) -> int:
    print(f"svcpulse collect tcp: {message}", file=sys.stderr, flush=True)
    return code


def _cgroups(required: bool) -> CgroupPaths | None:
    """The id -> path cache; without a cgroup2 mount every path is "" unless --cgroup needs one."""
    try:
        return CgroupPaths()
    except (CgroupError, OSError):
        if required:
            raise
        return None


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """`svcpulse collect tcp`: trace until SIGINT/SIGTERM (or `stop` is set); 0 on a clean stop.

    Signal handlers are installed only on the main thread; an embedding caller that runs this in
    another thread stops it with `stop`.
    """
    problem = check_args(args)
    if problem:
        return _fail(problem, 2)
    problem = preflight()
    if problem:
        return _fail(problem)
    try:
        offsets = btf.member_offsets("tcp_sock", ("bytes_acked", "bytes_received"))
        cgroups = _cgroups(required=bool(args.cgroup))
        cgroup_ids = cgroups.subtree_ids(args.cgroup) if cgroups and args.cgroup else []
    except (btf.BTFError, CgroupError, OSError) as err:
        return _fail(str(err))
    if args.metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(args.metrics_port)
        except OSError as err:
            return _fail(f"--metrics-port {args.metrics_port}: {err.strerror}")
    try:
        bpf = load(args, offsets, cgroup_ids)
    except Exception as err:  # bcc raises plain Exception for compile and attach failures
        return _fail(f"BPF program failed to load: {str(err).splitlines()[0] if str(err) else err!r}")
    try:
        output = open_output(args)
    except Exception as err:  # ImportError before the sink exists, or a broker refusing us
        bpf.cleanup()
        return _fail(f"cannot open {args.output} output: {err}")
    return _trace(args, bpf, output, cgroups, offsets, stop or threading.Event())


def _trace(args: argparse.Namespace, bpf: Any, output: Output, cgroups: CgroupPaths | None,
           offsets: dict[str, int], stop: threading.Event) -> int:
    try:
        names = namer_for(Settings())
    except KubeError as err:
        output.close()
        bpf.cleanup()
        return _fail(str(err))
    collector = Collector(bpf, output, args.host, cgroups.path if cgroups else lambda _id: "", names)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: collector.stop())
    print(f"svcpulse collect tcp: tracing (tcp_sock.bytes_acked@{offsets['bytes_acked']}, "
          f"bytes_received@{offsets['bytes_received']}, output {args.output})", file=sys.stderr, flush=True)
    try:
        collector.run(args.poll_interval, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(BrokenPipeError):
            output.close()
        bpf.cleanup()
        names.close()
    print(f"svcpulse collect tcp: stopped, {collector.emitted} connections reported, {collector.lost} lost",
          file=sys.stderr, flush=True)
    return _fail(collector.error) if collector.error else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="svcpulse collect tcp", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
