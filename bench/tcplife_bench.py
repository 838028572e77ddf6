"""Cost of `svcpulse collect tcp` at 1k, 5k and 20k new loopback connections per second.

For each rate: start the collector (--output jsonl to /dev/null), open and close loopback
connections at that rate for ~10 s from worker processes, then stop the collector and print
  - the rate achieved (the generator shares the machine's cores with the collector),
  - collector CPU as % of one core (utime + stime from /proc/<pid>/stat over the load window),
  - connections reported vs expected (2 sockets per connection) and lost events,
  - in-kernel BPF time per state change (kernel.bpf_stats_enabled, charged to the workload).
With --kafka the collector sends to a local Tansu broker through the shared sink instead, and the
sink's Prometheus counters (sent / dropped by the time the load ends) are printed too.
Targets: <= 5% of a core at 5k/s; zero lost at 20k/s. Needs root and bcc. Loopback only, bounded.
Usage: .venv/bin/python bench/tcplife_bench.py [--seconds 10] [--rates 1000,5000,20000] [--workers 2] [--kafka]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def cpu_seconds(pid: int) -> float:
    # fields after the ")" of comm: utime and stime are the 12th and 13th (man 5 proc)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def generate(rate: float, seconds: float, done: mp.Queue) -> None:
    """Open and close loopback connections at `rate`/s for `seconds`; report how many were made."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    addr, made = listener.getsockname(), 0
    start = time.monotonic()
    limit = int(rate * seconds)
    while made < limit:
        elapsed = time.monotonic() - start
        if elapsed > seconds * 1.5:  # cannot keep up: stop anyway, the figures say so
            break
        due = min(limit, int(rate * elapsed) + 1)
        if made >= due:
            time.sleep(0.001)
            continue
        for _ in range(due - made):
            client = socket.create_connection(addr)
            server, _peer = listener.accept()
            server.close()  # server closes first: its TIME_WAIT does not pin the client's port
            client.close()
        made = due
    done.put((made, time.monotonic() - start))
    listener.close()


def bpf_prog_stats() -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the collector's tracepoint program, summed."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True).stdout
    progs = [p for p in json.loads(out or "[]") if p.get("name", "").startswith("tracepoint__soc")]
    return sum(p.get("run_time_ns", 0) for p in progs), sum(p.get("run_cnt", 0) for p in progs)


def scrape(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(m[1]) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def start_collector(output: list[str], metrics_port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "collectors.tcplife", *output, "--host", "bench",
           "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "tracing" not in line:
        proc.kill()
        sys.exit(f"collector did not start: {line.strip()}")
    return proc


def measure(rate: int, seconds: float, workers: int, output: list[str]) -> dict[str, float]:
    metrics_port = free_port()
    proc = start_collector(output, metrics_port)
    time.sleep(0.5)
    runtime0, count0 = bpf_prog_stats()
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    done: mp.Queue = mp.Queue()
    gens = [mp.Process(target=generate, args=(rate / workers, seconds, done)) for _ in range(workers)]
    for gen in gens:
        gen.start()
    results = [done.get(timeout=seconds * 3) for _ in gens]
    for gen in gens:
        gen.join()
    time.sleep(0.3)  # let the collector read the last batch inside the window
    cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
    runtime, count = bpf_prog_stats()
    sink = [scrape(metrics_port, f"svcpulse_sink_{n}_total") for n in ("sent", "dropped")]
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    summary = re.search(r"(\d+) connections reported, (\d+) lost", err or "")
    made = sum(r[0] for r in results)
    return {
        "target": rate, "achieved": made / max(r[1] for r in results), "cpu_pct": 100 * cpu / wall,
        "expected": 2 * made, "reported": int(summary[1]) if summary else -1,
        "lost": int(summary[2]) if summary else -1,
        "ns_per_run": (runtime - runtime0) / max(1, count - count0),
        "sink_sent": sink[0], "sink_dropped": sink[1],
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="1000,5000,20000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kafka", action="store_true", help="output to a local Tansu broker via the sink")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("tcplife bench: needs root", file=sys.stderr)
        return 1
    if not args.kafka:
        return run_all(args, ["--output", "jsonl"])
    from svcpulse.services import Tansu

    with tempfile.TemporaryDirectory() as workdir:
        broker = Tansu(port=free_port(), workdir=Path(workdir))
        broker.start()
        try:
            return run_all(args, ["--output", "kafka", "--bootstrap-servers", broker.bootstrap])
        finally:
            broker.stop()


def run_all(args: argparse.Namespace, output: list[str]) -> int:
    stats_before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")  # per-program run time, restored below
    try:
        print(f"cores: {os.cpu_count()}, {args.seconds:.0f} s per rate, {args.workers} generator processes, "
              f"collector {' '.join(output)}")
        print(f"{'target/s':>9} {'achieved/s':>10} {'collector CPU':>13} {'expected':>9} {'reported':>9} "
              f"{'lost':>5} {'BPF ns/call':>11}" + ("  sink sent / dropped" if args.kafka else ""))
        for rate in (int(r) for r in args.rates.split(",")):
            r = measure(rate, args.seconds, args.workers, output)
            sink = f"  {r['sink_sent']:.0f} / {r['sink_dropped']:.0f}" if args.kafka else ""
            print(f"{r['target']:>9} {r['achieved']:>10.0f} {r['cpu_pct']:>12.1f}% {r['expected']:>9} "
                  f"{r['reported']:>9} {r['lost']:>5} {r['ns_per_run']:>11.0f}{sink}", flush=True)
    finally:
        STATS_SYSCTL.write_text(stats_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
