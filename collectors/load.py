"""`svcpulse collect load`: CPU and memory of cgroups and of the host, as contract `load` events.

Every --interval seconds, per --cgroup: CPU used in cores = delta(cpu.stat usage_usec) / delta(wall
time), CPU limit = cpu.max quota / period, memory = memory.current, limit = memory.max; and for the
host (cgroup "") from /proc/stat (busy jiffies) and /proc/meminfo (MemTotal - MemAvailable).
The cgroup2 mount comes from /proc/self/mountinfo. On hybrid hosts (cgroup2 at
/sys/fs/cgroup/unified, controllers on v1) the v2 directory has cpu.stat but no cpu.max or
memory.*; those are then read from the v1 cpu, cpuacct and memory hierarchies at the same path, or
at the process's own v1 paths for `pid:N` / `self` targets. A value that no hierarchy offers is 0.

    svcpulse collect load --cgroup /system.slice/api.service=10.0.0.5:8080 --interval 10
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.cgroups import CgroupError, find_cgroup2_mount
from collectors.k8s import KubeError, Namer, PathNames, namer_for
from core.settings import Settings
from pipeline.events import CONTRACT_VERSION

log = logging.getLogger("svcpulse.load")
_UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a huge page-rounded number (9223372036854771712)


@dataclass
class Target:
    """One cgroup to sample: its v2 path, instance label, and v1 paths per controller (hybrid hosts)."""

    path: str
    instance: str = ""
    v1: dict[str, str] = field(default_factory=dict)


def parse_target(spec: str, proc: Path = Path("/proc")) -> Target:
    """`PATH[=INSTANCE]`, where PATH is a cgroup v2 path ("/system.slice/x.service"), `pid:N` or `self`."""
    where, _, instance = spec.partition("=")
    if where == "self" or where.startswith("pid:"):
        pid = "self" if where == "self" else where[4:]
        path, v1 = "", {}
        for line in (proc / pid / "cgroup").read_text().splitlines():
            _, controllers, cg_path = line.split(":", 2)
            if controllers == "":
                path = cg_path
            for controller in controllers.split(","):
                v1[controller] = cg_path
        return Target(path or "/", instance, v1)
    if not where.startswith("/"):
        raise ValueError(f"--cgroup {spec!r}: expected an absolute cgroup path, pid:N or self")
    return Target(where, instance)


def v1_mounts(mountinfo: str) -> dict[str, Path]:
    """Controller -> mount point of each cgroup v1 hierarchy."""
    found: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        parts = tail.split()
        if len(parts) >= 3 and parts[0] == "cgroup":
            for option in parts[2].split(","):
                found.setdefault(option, Path(head.split()[4]))
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass
class Reading:
    cpu_seconds: float  # cumulative CPU time used
    cpu_limit_cores: float
    mem_bytes: int
    mem_limit_bytes: int


class CgroupReader:
    def __init__(self, mountinfo: str | None = None) -> None:
        text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
        self.v2 = find_cgroup2_mount(text)
        self.v1 = v1_mounts(text)

    def _v1_file(self, target: Target, controller: str, name: str) -> str | None:
        mount = self.v1.get(controller)
        if mount is None:
            return None
        return _read(mount / target.v1.get(controller, target.path).lstrip("/") / name)

    def read(self, target: Target) -> Reading | None:
        """The cgroup's counters now, or None when its v2 directory is gone."""
        v2 = self.v2 / target.path.lstrip("/")
        if not v2.is_dir():
            return None
        return Reading(self._cpu_seconds(target, v2), self._cpu_limit(target, v2), *self._memory(target, v2))

    def _cpu_seconds(self, target: Target, v2: Path) -> float:
        stat = _read(v2 / "cpu.stat") or ""
        for line in stat.splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        nanos = self._v1_file(target, "cpuacct", "cpuacct.usage")
        return int(nanos) / 1e9 if nanos else 0.0

    def _cpu_limit(self, target: Target, v2: Path) -> float:
        cpu_max = _read(v2 / "cpu.max")
        if cpu_max:
            quota, period = cpu_max.split()
            return 0.0 if quota == "max" else int(quota) / int(period)
        quota_us = self._v1_file(target, "cpu", "cpu.cfs_quota_us")
        period_us = self._v1_file(target, "cpu", "cpu.cfs_period_us")
        if quota_us and period_us and int(quota_us) > 0:
            return int(quota_us) / int(period_us)
        return 0.0

    def _memory(self, target: Target, v2: Path) -> tuple[int, int]:
        current = _read(v2 / "memory.current")
        if current is not None:
            limit = _read(v2 / "memory.max") or "max"
            return int(current), 0 if limit == "max" else int(limit)
        used = self._v1_file(target, "memory", "memory.usage_in_bytes")
        limit_v1 = int(self._v1_file(target, "memory", "memory.limit_in_bytes") or 0)
        return int(used or 0), 0 if limit_v1 >= _UNLIMITED_V1 else limit_v1


def read_host(proc: Path = Path("/proc")) -> Reading:
    """The whole node: busy CPU time from /proc/stat, used memory from /proc/meminfo."""
    fields = [int(v) for v in (proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is inside user
    busy = sum(fields[:8]) - fields[3] - fields[4]
    meminfo = {}
    for line in (proc / "meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        meminfo[name] = int(rest.split()[0]) * 1024
    total = meminfo["MemTotal"]
    return Reading(busy / os.sysconf("SC_CLK_TCK"), float(os.cpu_count() or 1), total - meminfo["MemAvailable"], total)


class Sampler:
    """Turns successive readings into events: CPU cores = CPU-time delta over wall-time delta."""

    def __init__(self, targets: list[Target], host: str, include_host: bool = True, reader: Any = None,
                 names: Namer | None = None) -> None:
        self.targets, self.host, self.include_host = targets, host, include_host
        self.reader = reader or CgroupReader()
        self.names = names or PathNames()  # cgroup path -> (workload, kind); the host sample has none
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # -> (monotonic time, cpu seconds)
        self._missing: set[str] = set()

    def sample(self) -> list[dict[str, Any]]:
        """Events for everything readable; a cgroup's first sample only primes its CPU counter."""
        readings: list[tuple[Target, Reading]] = []
        if self.include_host:
            readings.append((Target(""), read_host()))
        for target in self.targets:
            reading = self.reader.read(target)
            if reading is None:
                if target.path not in self._missing:
                    log.warning("cgroup %s not found (yet?), skipping it", target.path)
                self._missing.add(target.path)
                continue
            self._missing.discard(target.path)
            readings.append((target, reading))
        now, ts_ms = time.monotonic(), time.time_ns() // 1_000_000
        return [e for t, r in readings if (e := self._event(t, r, now, ts_ms)) is not None]

    def _event(self, target: Target, reading: Reading, now: float, ts_ms: int) -> dict[str, Any] | None:
        key = (target.path, target.instance)
        previous = self._last.get(key)
        self._last[key] = (now, reading.cpu_seconds)
        if previous is None or now <= previous[0]:
            return None
        cores = max(reading.cpu_seconds - previous[1], 0.0) / (now - previous[0])  # < 0: cgroup recreated
        workload, workload_kind = self.names(target.path) if target.path else ("", "")
        return {
            "v": CONTRACT_VERSION,
            "ts_ms": ts_ms,
            "host": self.host,
            "cgroup": target.path,
            "workload": workload,
            "workload_kind": workload_kind,
            "instance": target.instance,
            "cpu_cores": round(cores, 4),
            "cpu_limit_cores": reading.cpu_limit_cores,
            "mem_bytes": reading.mem_bytes,
            "mem_limit_bytes": reading.mem_limit_bytes,
        }


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `svcpulse collect load`."""
    add = parser.add_argument
    add("--bootstrap-servers", "--bootstrap", dest="bootstrap_servers",
        help="Kafka bootstrap servers (default $SVCPULSE_KAFKA_BOOTSTRAP or 127.0.0.1:19092)")  # fmt: skip
    add("--output", choices=("kafka", "jsonl"), default="kafka",
        help="kafka: topic svcpulse.load via the shared sink; jsonl: JSON lines on stdout")  # fmt: skip
    add("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    add("--cgroup", action="append", default=[], metavar="PATH[=INSTANCE]",
        help="cgroup v2 path, pid:N or self; =host:port sets the instance label; repeatable")  # fmt: skip
    add("--no-host", action="store_true", help='do not emit the whole-host sample (cgroup "")')
    add("--host", default=socket.gethostname(), help="host label on every event")
    add("--spool-dir", default=None, help="Kafka sink's disk spool for broker outages")
    add("--count", type=int, default=0, help="stop after this many samples (0 = run until SIGINT/SIGTERM)")


def run(args: argparse.Namespace) -> int:
    try:
        targets = [parse_target(spec) for spec in args.cgroup]
        sampler = Sampler(targets, args.host, include_host=not args.no_host, names=namer_for(Settings()))
    except (OSError, ValueError, CgroupError, KubeError) as err:
        print(f"svcpulse collect load: {err}", file=sys.stderr)
        return 2
    if args.output == "jsonl":
        from collectors.sink_common import JsonlSink

        sink: Any = JsonlSink(sys.stdout)
    else:
        from collectors.sink import open_sink

        sink = open_sink(args.bootstrap_servers or Settings().kafka_bootstrap, spool_dir=args.spool_dir)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sampler.sample()  # prime the CPU counters: the first real sample comes one interval later
        emitted = 0
        while not stop.wait(args.interval):
            for event in sampler.sample():
                sink.send("load", event)
            sink.flush(0) if args.output == "jsonl" else None
            emitted += 1
            if args.count and emitted >= args.count:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sink.close()
        sampler.names.close()
    return 0
