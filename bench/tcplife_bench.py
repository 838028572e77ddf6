"""Cost of `svcpulse collect tcp` at 1k, 5k and 20k new loopback connections per second, per output,
with failed connects in the mix, side by side with an earlier collector (default: the one before
batched ring-buffer reads, issue 11; 561a738 is the one before connection health).

For each rate, collector and output (JSON lines to /dev/null, and Kafka through the shared sink to a
local Tansu broker with each --clients client; the default client is the sink's default): start the
collector, open and close loopback connections at that rate for ~10 s from worker processes (every
--refused-every'th connect goes to a port nothing listens on: refused), stop the collector and print
  - the rate achieved (the generator shares the machine's cores with the collector),
  - collector CPU as % of one core (utime + stime of all its threads, from /proc/<pid>/stat, over
    the load window), CPU per reported event, and that cost projected to 5,000 connections/s
    (10,000 events/s: loopback connections close two sockets; a loaded machine may not reach it).
    CPU per event is the figure to compare: it does not depend on the rate the generators reached,
    it divides by every event reported (other processes' connections on the host included), and a
    busy machine moves it less than the % of a core,
  - connections reported vs expected (2 sockets per accepted connection, 1 per refused connect) and lost,
  - in-kernel BPF time per program run of that collector (kernel.bpf_stats_enabled, charged to the workload),
  - for Kafka, the sink's counters (sent / dropped by the time the load ends).
The baseline is the collector at git commit --baseline (that commit's collectors/ package, run from a
temporary directory against this tree's other modules); --baseline '' skips it.
Targets (issues 11 and 13): <= 5% of a core at 5k/s with jsonl, and end to end to the broker on the
default path; zero lost at 20k/s. Needs root and bcc. Loopback only, bounded. Prints the load
average: figures taken on a busy machine are provisional.
Usage: .venv/bin/python bench/tcplife_bench.py [--seconds 10] [--rates 1000,5000,20000] [--workers 2]
                                              [--outputs jsonl,kafka] [--clients confluent,kafka-python]
                                              [--refused-every 10] [--baseline 2cea38d]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import unpack
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def cpu_seconds(pid: int) -> float:
    # fields after the ")" of comm: utime and stime are the 12th and 13th (man 5 proc)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def generate(rate: float, seconds: float, refused_every: int, done: mp.Queue) -> None:
    """Open and close loopback connections at `rate`/s for `seconds`, every `refused_every`th one to a
    port nothing listens on; report (accepted, refused, seconds)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    closed = socket.socket()  # bound, never listening: connects to it are answered with a RST
    closed.bind(("127.0.0.1", 0))
    addr, dead, made, refused = listener.getsockname(), closed.getsockname(), 0, 0
    start = time.monotonic()
    limit = int(rate * seconds)
    while made < limit:
        elapsed = time.monotonic() - start
        if elapsed > seconds * 1.5:  # cannot keep up: stop anyway, the figures say so
            break
        due = min(limit, int(rate * elapsed) + 1, made + 500)  # re-check the clock when far behind
        if made >= due:
            time.sleep(0.001)
            continue
        for n in range(made, due):
            if refused_every and n % refused_every == refused_every - 1:
                try:
                    socket.create_connection(dead).close()
                except ConnectionRefusedError:
                    refused += 1
                continue
            client = socket.create_connection(addr)
            server, _peer = listener.accept()
            server.close()  # server closes first: its TIME_WAIT does not pin the client's port
            client.close()
        made = due
    done.put((made - refused, refused, time.monotonic() - start))
    listener.close()
    closed.close()


def bpf_progs() -> dict[int, tuple[int, int]]:
    """Every loaded BPF program: id -> (run_time_ns, run_cnt)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True).stdout
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in json.loads(out or "[]")}


def bpf_prog_stats(ids: set[int]) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the collector's programs, summed (other collectors on the host excluded)."""
    progs = bpf_progs()
    return sum(progs.get(i, (0, 0))[0] for i in ids), sum(progs.get(i, (0, 0))[1] for i in ids)


def scrape(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(m[1]) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def start_collector(entry: list[str], output: list[str], metrics_port: int,
                    env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, *entry, *output, "--host", "bench", "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "tracing" not in line:
        proc.kill()
        sys.exit(f"collector did not start: {line.strip()}")
    return proc


def measure(rate: int, args: argparse.Namespace, entry: list[str], output: list[str],
            env: dict[str, str]) -> dict[str, float]:
    metrics_port = free_port()
    before = set(bpf_progs())
    proc = start_collector(entry, output, metrics_port, env)
    try:
        ids = set(bpf_progs()) - before  # the programs this collector loaded
        time.sleep(0.5)
        return _load(rate, args, proc, ids, metrics_port)
    finally:
        if proc.poll() is None:  # a failed run must not leave a collector tracing behind
            proc.kill()
            proc.wait()


def _load(rate: int, args: argparse.Namespace, proc: subprocess.Popen[str], ids: set[int],
          metrics_port: int) -> dict[str, float]:
    seconds, workers = args.seconds, args.workers
    runtime0, count0 = bpf_prog_stats(ids)
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    done: mp.Queue = mp.Queue()
    gens = [mp.Process(target=generate, args=(rate / workers, seconds, args.refused_every, done))
            for _ in range(workers)]
    for gen in gens:
        gen.start()
    try:
        results = [done.get(timeout=seconds * 6 + 30) for _ in gens]  # a busy machine starves the generators
    finally:
        for gen in gens:
            gen.join(timeout=seconds * 2)
            if gen.is_alive():
                gen.kill()
    time.sleep(0.3)  # let the collector read the last batch inside the window
    cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
    runtime, count = bpf_prog_stats(ids)
    sink = [scrape(metrics_port, f"svcpulse_sink_{n}_total") for n in ("sent", "dropped")]
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    summary = re.search(r"(\d+) connections reported, (\d+) lost", err or "")
    accepted, refused = sum(r[0] for r in results), sum(r[1] for r in results)
    reported = int(summary[1]) if summary else -1
    return {
        "target": rate, "achieved": (accepted + refused) / max(r[2] for r in results), "cpu_pct": 100 * cpu / wall,
        "us_per_event": 1e6 * cpu / max(reported, 1),  # = % of a core at 10,000 events/s (5k connections/s)
        "expected": 2 * accepted + refused, "reported": reported,
        "lost": int(summary[2]) if summary else -1,
        "ns_per_run": (runtime - runtime0) / max(1, count - count0),
        "sink_sent": sink[0], "sink_dropped": sink[1],
    }


def baseline_entry(ref: str, workdir: Path) -> tuple[list[str], dict[str, str]] | None:
    """The collector as it was at git `ref`: that commit's whole collectors/ package, unpacked in
    `workdir` and put first on the path (core/, pipeline/ ... come from this tree). Run as a script, not
    with -m: -m would put the working directory (this tree) first."""
    if not unpack(ref, workdir, "collectors"):
        return None
    return [str(workdir / "collectors" / "tcplife.py")], {"PYTHONPATH": f"{workdir}:{ROOT}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Issue 13's figures before this work (collector CPU at 5k connections/s, idle 2-core machine).
BEFORE = ("earlier runs (docs/collect-tcp.md): issue 13, no refused connects: jsonl 2.9%, kafka via kafka-python ~30%, "
          "via confluent 8.1%; issue 11 before batched reads: jsonl 11.3% = 12.3 us per event")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="1000,5000,20000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--outputs", default="jsonl,kafka", help="jsonl and/or kafka")
    parser.add_argument("--clients", default=Settings().sink_kafka_client,
                        help="Kafka clients of the sink to measure (default: the sink's default)")
    parser.add_argument("--refused-every", type=int, default=10,
                        help="every Nth connect goes to a closed port (refused); 0 = none")
    parser.add_argument("--baseline", default="2cea38d",
                        help="git commit of the collector to compare with ('' = none); default: before batched reads")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("tcplife bench: needs root", file=sys.stderr)
        return 1
    outputs = [("jsonl", ["--output", "jsonl"], {})] if "jsonl" in args.outputs else []
    if "kafka" not in args.outputs:
        return run_all(args, outputs)
    from svcpulse.services import Tansu

    with tempfile.TemporaryDirectory() as workdir:
        broker = Tansu(port=free_port(), workdir=Path(workdir))
        broker.start()
        for client in args.clients.split(","):
            outputs.append((f"kafka {client}", ["--output", "kafka", "--bootstrap-servers", broker.bootstrap],
                            {"SVCPULSE_SINK_KAFKA_CLIENT": client}))
        try:
            return run_all(args, outputs)
        finally:
            broker.stop()


def run_all(args: argparse.Namespace, outputs: list[tuple[str, list[str], dict[str, str]]]) -> int:
    stats_before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")  # per-program run time, restored below
    with tempfile.TemporaryDirectory(prefix="ebpf-bench-") as workdir:
        collectors: list[tuple[str, list[str], dict[str, str]]] = [("this tree", ["-m", "collectors.tcplife"], {})]
        old = baseline_entry(args.baseline, Path(workdir)) if args.baseline else None
        if old:
            collectors.append((f"at {args.baseline}", *old))
        try:
            _table(args, outputs, collectors)
        finally:
            STATS_SYSCTL.write_text(stats_before)
    print(BEFORE)
    print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (figures on a busy machine are "
          "provisional)")
    return 0


def _table(args: argparse.Namespace, outputs: list[tuple[str, list[str], dict[str, str]]],
           collectors: list[tuple[str, list[str], dict[str, str]]]) -> None:
    print(f"cores: {os.cpu_count()}, {args.seconds:.0f} s per rate, {args.workers} generator processes, "
          f"1 in {args.refused_every} connects refused, load average {os.getloadavg()[0]:.2f} at start")
    print(f"{'collector':<15} {'output':<19} {'target/s':>8} {'achieved/s':>10} {'CPU':>6} {'us/event':>8} "
          f"{'at 5k/s':>7} {'expected':>9} {'reported':>9} {'lost':>5} {'BPF ns':>6}  sink sent / dropped")
    ours: dict[str, float] = {}  # output -> this tree's us/event at the 5,000/s rate
    for rate in (int(r) for r in args.rates.split(",")):
        for name, output, env in outputs:
            for collector, entry, collector_env in collectors:
                r = measure(rate, args, entry, output, {**env, **collector_env})
                if rate == 5000 and collector == "this tree":
                    ours[name] = r["us_per_event"]
                sink = f"  {r['sink_sent']:.0f} / {r['sink_dropped']:.0f}" if name.startswith("kafka") else ""
                print(f"{collector:<15} {name:<19} {r['target']:>8} {r['achieved']:>10.0f} {r['cpu_pct']:>5.1f}% "
                      f"{r['us_per_event']:>8.1f} {r['us_per_event']:>6.1f}% {r['expected']:>9} "
                      f"{r['reported']:>9} {r['lost']:>5} {r['ns_per_run']:>6.0f}{sink}", flush=True)
    for name, us in ours.items():  # us/event = % of a core at 10,000 events/s
        verdict = "met" if us <= 5 else "NOT met"
        print(f"at 5k connections/s, {name}: {us:.1f}% of a core (jsonl {ours.get('jsonl', float('nan')):.1f}%); "
              f"target <= 5% end to end: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
