"""`svcpulse collect tcp`: one contract `tcp` event per closed TCP connection, from eBPF.

Data path: tracepoints sock:inet_sock_set_state, tcp:tcp_retransmit_skb, tcp:tcp_receive_reset and
tcp:tcp_send_reset -> collectors/tcplife.bpf.c (ring buffer) -> collectors/tcpstream.py (a batch per read)
-> collectors/tcpevent.py (decode, outcome) -> sink (Kafka topic svcpulse.tcp, or JSON lines on stdout).
Failed connects (refused, timed out, unreachable) are events too. The BPF program is compiled and loaded
once at start-up (3-5 s); kernel struct fields (bytes, srtt, socket errors) are read at offsets taken from
the running kernel's BTF, so mismatched kernel headers cannot corrupt them. bcc is imported inside run()
only: the rest of svcpulse works on machines without it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from collectors import btf
from collectors.cgroups import CgroupError, CgroupPaths
from collectors.k8s import KubeError, namer_for
from collectors.tcpevent import BPF_SOURCE, check_layout
from collectors.tcpstream import Collector, JsonLines, Output, SinkOutput
from core.settings import Settings

TRACEFS = (Path("/sys/kernel/tracing/events"), Path("/sys/kernel/debug/tracing/events"))
TRACEPOINTS = ("sock/inet_sock_set_state", "tcp/tcp_retransmit_skb", "tcp/tcp_receive_reset", "tcp/tcp_send_reset",
               "tcp/tcp_destroy_sock")
# Kernel struct fields read at close, at offsets from BTF: (struct, members).
KERNEL_FIELDS = (("tcp_sock", ("bytes_acked", "bytes_received", "srtt_us")), ("sock", ("sk_err", "sk_err_soft")))


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
    missing = [tp for tp in TRACEPOINTS if not any((root / tp).exists() for root in TRACEFS)]
    if missing:
        return (f"tracepoint {', '.join(missing).replace('/', ':')} not found: needs kernel >= 4.16 and tracefs "
                "(mount -t tracefs nodev /sys/kernel/tracing)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc Python module not found: apt-get install python3-bpfcc; scripts/bootstrap.sh --no-apt"
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not build.exists():
        return f"no kernel headers for bcc at {build}: run scripts/bootstrap.sh"
    return None


def kernel_offsets() -> dict[str, int]:
    """Byte offset of every kernel struct field the program reads, from the running kernel's BTF."""
    vmlinux = btf.BTF.load()
    offsets: dict[str, int] = {}
    for struct_name, members in KERNEL_FIELDS:
        offsets.update(btf.member_offsets(struct_name, members, vmlinux))
    return offsets


def load(args: argparse.Namespace, offsets: dict[str, int], cgroup_ids: list[int]) -> Any:
    """Compile and attach the BPF program, check the event layout, then fill the filter maps."""
    from bcc import BPF

    cflags = [
        *(f"-DOFF_{name.upper()}={offset}" for name, offset in offsets.items()),
        f"-DMAP_SIZE={args.map_size}",
        f"-DRING_PAGES={args.ring_pages}",
        f"-DFILTER_PORTS={int(bool(args.ports))}",
        f"-DFILTER_PIDS={int(bool(args.pids))}",
        f"-DFILTER_CGROUPS={int(bool(cgroup_ids))}",
    ]
    bpf = BPF(src_file=str(BPF_SOURCE).encode(), cflags=cflags)
    try:
        check_layout(bpf[b"event_layout"].Leaf)
    except Exception:
        bpf.cleanup()
        raise
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

    return SinkOutput(open_sink(args.bootstrap_servers or Settings().kafka_bootstrap, spool_dir=args.spool_dir))


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
        offsets = kernel_offsets()
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
    fields = ", ".join(f"{name}@{offset}" for name, offset in offsets.items())
    print(f"svcpulse collect tcp: tracing (BTF offsets {fields}; output {args.output})", file=sys.stderr, flush=True)
    try:
        collector.run(args.poll_interval, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(BrokenPipeError):
            output.close()
        collector.ring.close()
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
