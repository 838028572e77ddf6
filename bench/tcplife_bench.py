"""Cost of `svcpulse collect tcp` at 1k, 5k and 20k new loopback connections per second, with failed
connects in the mix, side by side with the collector before connection health (the baseline).

For each rate and each collector: start it (--output jsonl to /dev/null), open and close loopback
connections at that rate for ~10 s from worker processes (every `--refused-every`th connect goes to
a port nothing listens on: refused), then stop the collector and print
  - the rate achieved (the generator shares the machine's cores with the collector),
  - collector CPU as % of one core (utime + stime from /proc/<pid>/stat over the load window),
  - connections reported vs expected (2 sockets per accepted connection, 1 per refused connect) and lost,
  - in-kernel BPF time per program run (kernel.bpf_stats_enabled, charged to the workload).
The baseline is the collector at git commit --baseline (collectors/tcplife.py and .bpf.c, run from a
temporary directory against this tree's other modules); --baseline '' skips it.
With --kafka the collector sends to a local Tansu broker through the shared sink instead, and the
sink's Prometheus counters (sent / dropped by the time the load ends) are printed too.
Targets: <= 5% of a core at 5k/s; zero lost at 20k/s. Needs root and bcc. Loopback only, bounded.
Usage: .venv/bin/python bench/tcplife_bench.py [--seconds 10] [--rates 1000,5000,20000] [--workers 2]
       [--refused-every 10] [--baseline 561a738] [--kafka]
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


def start_collector(entry: list[str], output: list[str], metrics_port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, *entry, *output, "--host", "bench", "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "tracing" not in line:
        proc.kill()
        sys.exit(f"collector did not start: {line.strip()}")
    return proc


def measure(rate: int, args: argparse.Namespace, entry: list[str], output: list[str]) -> dict[str, float]:
    metrics_port = free_port()
    before = set(bpf_progs())
    proc = start_collector(entry, output, metrics_port)
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
        results = [done.get(timeout=seconds * 3 + 60) for _ in gens]  # a busy machine starts them late
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
    return {
        "target": rate, "achieved": (accepted + refused) / max(r[2] for r in results), "cpu_pct": 100 * cpu / wall,
        "expected": 2 * accepted + refused, "refused": refused, "reported": int(summary[1]) if summary else -1,
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
    parser.add_argument("--refused-every", type=int, default=10,
                        help="every Nth connect goes to a closed port (refused); 0 = none")
    parser.add_argument("--baseline", default="561a738",
                        help="git commit of the collector to compare with ('' = none); default: before health")
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


def baseline_entry(ref: str, workdir: Path) -> list[str] | None:
    """The collector as it was at git `ref`, written to `workdir` (its other imports come from this tree)."""
    for name in ("tcplife.py", "tcplife.bpf.c"):
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:collectors/{name}"], capture_output=True)
        if shown.returncode:
            print(f"baseline {ref}: {shown.stderr.decode().strip()}; skipped", file=sys.stderr)
            return None
        (workdir / name).write_bytes(shown.stdout)
    return [str(workdir / "tcplife.py")]


def run_all(args: argparse.Namespace, output: list[str]) -> int:
    stats_before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")  # per-program run time, restored below
    with tempfile.TemporaryDirectory(prefix="ebpf-bench-") as workdir:
        collectors = [("connection health", ["-m", "collectors.tcplife"])]
        old = baseline_entry(args.baseline, Path(workdir)) if args.baseline else None
        if old:
            collectors.append((f"baseline {args.baseline}", old))
        try:
            _table(args, output, collectors)
        finally:
            STATS_SYSCTL.write_text(stats_before)
    return 0


def _table(args: argparse.Namespace, output: list[str], collectors: list[tuple[str, list[str]]]) -> None:
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start, {args.seconds:.0f} s per rate, "
          f"{args.workers} generator processes, 1 in {args.refused_every} connects refused, "
          f"collector {' '.join(output)}")
    sink_head = "  sink sent / dropped" if args.kafka else ""
    print(f"{'collector':<19} {'target/s':>9} {'achieved/s':>10} {'CPU':>7} {'CPU us/conn':>11} {'expected':>9} "
          f"{'reported':>9} {'lost':>5} {'BPF ns/run':>10} {'load avg':>8}{sink_head}")
    for rate in (int(r) for r in args.rates.split(",")):
        for name, entry in collectors:
            r = measure(rate, args, entry, output)
            sink = f"  {r['sink_sent']:.0f} / {r['sink_dropped']:.0f}" if args.kafka else ""
            per_conn = 1e4 * r["cpu_pct"] / max(r["achieved"], 1)  # CPU seconds per connection, in us
            print(f"{name:<19} {r['target']:>9} {r['achieved']:>10.0f} {r['cpu_pct']:>6.1f}% {per_conn:>11.1f} "
                  f"{r['expected']:>9} {r['reported']:>9} {r['lost']:>5} {r['ns_per_run']:>10.0f} "
                  f"{os.getloadavg()[0]:>8.2f}{sink}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
