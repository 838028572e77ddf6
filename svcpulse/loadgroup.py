"""`svcpulse load --processes N|auto`: N loader processes in one consumer group, supervised by this one.

Python runs one core per process, so a loader scales on one machine by processes, as it does across
machines: each child is a full `svcpulse load` (its own consumer, batch and commits) and the group
shares the partitions among them. The supervisor forwards SIGTERM/SIGINT, waits for every child and
exits with the worst exit code; a child dies with the supervisor (PR_SET_PDEATHSIG), so a kill -9 of
the supervisor is a crash of the whole group, which redelivery handles like any crash.
With --metrics-port P, child i serves /metrics and /readyz on P + i.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys


def count(processes: str) -> int:
    """"auto" = one per core this process may run on; else a positive integer."""
    if processes == "auto":
        return len(os.sched_getaffinity(0))
    if not processes.isdigit() or int(processes) < 1:
        raise ValueError(f"--processes {processes!r}: expected a positive integer or auto")
    return int(processes)


def _child_argv(args: argparse.Namespace, index: int) -> list[str]:
    argv = [sys.executable, "-m", "svcpulse", "load", "--processes", "1"]
    for flag, value in (("--bootstrap", args.bootstrap), ("--store", args.store), ("--group", args.group),
                        ("--batch-rows", args.batch_rows), ("--batch-age", args.batch_age),
                        ("--kafka-client", args.kafka_client), ("--metrics-host", args.metrics_host)):
        if value:
            argv += [flag, str(value)]
    if args.metrics_port:
        argv += ["--metrics-port", str(args.metrics_port + index)]
    return argv


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run(args: argparse.Namespace, processes: int) -> int:
    children = [subprocess.Popen(_child_argv(args, i), preexec_fn=_die_with_parent) for i in range(processes)]
    print(f"[load] {processes} loader processes in one consumer group: pids "
          f"{' '.join(str(c.pid) for c in children)}; SIGTERM stops them all", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    return max(child.wait() for child in children)
