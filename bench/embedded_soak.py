"""bench/embedded_soak: `svcpulse up` under extra load for a long time; its memory must stay bounded.

Runs `svcpulse up` (demo fleet on, eBPF as root unless --no-ebpf) as a user would, and sends it
--rate extra rpc events per second for --minutes through the collectors' sink (disk spool on, as a
node's collector would run), each event numbered. Every --every seconds it prints the RSS of every
process of the run (the `svcpulse up` Python process with chdb inside, the broker proxy, the current
broker generation) and their total, the in-process chdb's tracked memory and caches (the API's /metrics),
where the `svcpulse up` process's anonymous memory is (chdb's jemalloc: resident, and allocated = je_used;
glibc malloc's heap, and the free part of it), with the broker generation and the events acknowledged. At the
end it waits until the loader has committed everything, stops `svcpulse up`, opens its chdb store
and counts the numbered events: lost = acknowledged - distinct loaded; duplicates = rows - distinct.
Targets (issue 13): total <= 1.5 GB and flat after warm-up; 0 lost. 2,000 events/s for 30 minutes,
or an accelerated run pushing >= 10,000,000 events (e.g. --rate 20000 --minutes 9).
Usage: .venv/bin/python bench/embedded_soak.py [--minutes 30] [--rate 2000] [--roll-mb 256] [--no-ebpf]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.sink import KafkaSink, open_sink
from pipeline.store import open_store
from pipeline.topics import LOADED_TOPICS
from svcpulse.kafka_wire import Connection, WireError
from svcpulse.rolling_broker import rss_mb

BROKER_LINE = re.compile(r"broker \(Tansu\) on (\S+?)[,\s]")
ROLL_LINE = re.compile(r"broker generation (\d+)")
CONSOLE_LINE = re.compile(r"web console\s+(http://\S+)/")
PIPELINE_METRICS_LINE = re.compile(r"(http://\S+/metrics) \(loader, weigh\)")
LOADER_COUNTS = re.compile(
    r"^(svcpulse_loader_(?:dead_letters|redelivered_skipped|insert_failures|offset_gaps)_total\S*) (\S+)$", re.M)
STORE_MEMORY = re.compile(r'^svcpulse_(?:store_memory|process_malloc)_bytes\{\w+="(\w+)"\} (\S+)$', re.M)
LIMIT_MB = 1536


class Offered:
    """Sends numbered rpc events at a steady rate through a KafkaSink (spooling, like a node's collector)."""

    def __init__(self, bootstrap: str, rate: float, spool_dir: Path, client: str) -> None:
        self.rate, self.sent = rate, 0
        self.sink: KafkaSink = open_sink(bootstrap, spool_dir=str(spool_dir), linger_ms=20, kafka_client=client)
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(0.01):
            due = int((time.monotonic() - started) * self.rate)
            now_ms = int(time.time() * 1000)
            for n in range(self.sent, due):
                self.sink.send("rpc", {
                    "v": 1, "ts_ms": now_ms, "caller": "soak", "callee": f"soak.svc{n % 20}",
                    "interface": f"GET /items/{{id}}/{n % 7}", "instance": f"10.7.0.{n % 5}:8080",
                    "side": "server", "latency_ms": 5.0 + n % 40, "status": "ok", "code": "200",
                    "version": "v1", "host": "soak", "cgroup": f"/soak/{n}"})  # cgroup carries the number
            self.sent = max(self.sent, due)


class Up:
    """`svcpulse up` as a child process; reads its output for the broker address and roll lines."""

    def __init__(self, data_dir: Path, roll_mb: int, ebpf: bool) -> None:
        env = {**os.environ, "SVCPULSE_BROKER_ROLL_MB": str(roll_mb)}
        cmd = [sys.executable, "-m", "svcpulse", "up", "--data-dir", str(data_dir), "--port", "0"]
        self.proc = subprocess.Popen(cmd + ([] if ebpf else ["--no-ebpf"]), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.log = (data_dir.parent / "up.log").open("w")
        self.bootstrap, self.console, self.pipeline_metrics, self.generation = "", "", "", 1
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            if match := BROKER_LINE.search(line):
                self.bootstrap = match[1]
            if match := ROLL_LINE.search(line):
                self.generation = int(match[1])
            if match := CONSOLE_LINE.search(line):
                self.console = match[1]
            if match := PIPELINE_METRICS_LINE.search(line):
                self.pipeline_metrics = match[1]
            if "Ctrl-C stops everything" in line:
                self.ready.set()
        self.ready.set()

    def processes(self) -> dict[str, int]:
        """This run's processes: svcpulse up itself and its children (broker front, broker generation)."""
        found = {"up": self.proc.pid}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(fields[1]) != self.proc.pid:
                continue
            if cmdline[0].endswith(b"tansu"):
                found["broker"] = int(stat.parent.name)
            elif any(arg.endswith(b"broker_front.py") for arg in cmdline):
                found["broker-proxy"] = int(stat.parent.name)
        return found


def store_memory_mb(console: str) -> dict[str, float]:
    """From the API's /metrics, in MB: chdb's tracked memory and caches, its jemalloc's resident and
    allocated bytes, and glibc malloc's heap (in use + free + mmapped); -1 each if unread."""
    try:
        with urllib.request.urlopen(f"{console}/metrics", timeout=10) as answer:
            held = {name: float(value) for name, value in STORE_MEMORY.findall(answer.read().decode())}
    except OSError:
        held = {}
    caches = sum(value for name, value in held.items() if name.endswith("CacheBytes")) if held else -2**20
    malloc = sum(held.get(kind, 0.0) for kind in ("in_use", "free", "mmapped")) if "in_use" in held else -2**20
    return {"chdb": held.get("MemoryTracking", -2**20) / 2**20, "caches": caches / 2**20,
            "jemalloc": held.get("jemalloc_resident", -2**20) / 2**20,
            "jemalloc_allocated": held.get("jemalloc_allocated", -2**20) / 2**20, "malloc": malloc / 2**20,
            "malloc_free": held.get("free", -2**20) / 2**20}


def anon_mb(pid: int) -> float:
    """Anonymous resident memory of a process in MB (chdb's mapped code is the rest of its RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def loaded_past(bootstrap: str, marks: dict[tuple[str, int], int] | None = None) -> dict[tuple[str, int], int]:
    """With `marks` None: every loaded partition's end offset now. Otherwise: the partitions whose
    committed offset (loader group) is still below its mark (the demo keeps producing meanwhile,
    so "caught up" means past what was there when our extra load was delivered)."""
    try:
        with Connection(bootstrap) as conn:
            topics = {t: n for t, n in conn.topics().items() if t in LOADED_TOPICS}
            if marks is None:
                return {(t, p): conn.fetch(t, p, 0, max_bytes=1)[0] for t, n in topics.items() for p in range(n)}
            committed = conn.committed("svcpulse-loader", topics)
            return {tp: mark for tp, mark in marks.items() if committed.get(tp, 0) < mark}
    except WireError:
        return marks or {}


def loader_lag(bootstrap: str) -> int:
    """Offsets of the loaded topics the loader group has not committed yet (-1 when unknown)."""
    try:
        with Connection(bootstrap) as conn:
            topics = {t: n for t, n in conn.topics().items() if t in LOADED_TOPICS}
            committed = conn.committed("svcpulse-loader", topics)
            at = {(t, p): committed.get((t, p), 0) for t, n in topics.items() for p in range(n)}
            return sum(conn.fetch(*tp, offset, max_bytes=1)[0] - offset for tp, offset in at.items())
    except WireError:
        return -1


def loader_counts(url: str) -> str:
    """The loader's dead letters, skipped redeliveries, failed inserts and offset holes the client left
    (refetched, or confirmed on the broker): where an event can go missing."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return ", ".join(f"{name} {value}" for name, value in LOADER_COUNTS.findall(answer.read().decode()))
    except OSError as err:
        return f"unread ({err})"


def count_loaded(data_dir: Path) -> tuple[int, int, list[tuple[int, int, list[Any]]]]:
    """Rows and distinct numbered events loaded, and the first gaps in the numbers (first, last missing,
    with the partition/offset rows loaded on either side: a whole record batch missing shows there)."""
    store = open_store(f"chdb://{data_dir}/chdb/svcpulse")
    numbered = "toUInt64(substring(cgroup, 7))"
    try:
        rows, distinct = store.execute("SELECT count(), uniqExact(cgroup) FROM rpc_calls WHERE caller = 'soak'")[0]
        gaps = [(int(first), int(last)) for first, last in store.execute(
            f"SELECT n + 1, next - 1 FROM (SELECT n, leadInFrame(n) OVER (ORDER BY n ROWS BETWEEN CURRENT ROW AND "
            f"1 FOLLOWING) AS next FROM (SELECT DISTINCT {numbered} AS n FROM rpc_calls WHERE caller = 'soak')) "
            f"WHERE next > n + 1 ORDER BY n LIMIT 10")]
        sides = [(first, last, store.execute(
            f"SELECT _partition, min(_offset), max(_offset) FROM rpc_calls WHERE caller = 'soak' AND {numbered} "
            f"BETWEEN {first - 100} AND {last + 100} GROUP BY _partition ORDER BY _partition")) for first, last in gaps]
        return int(rows), int(distinct), sides
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--roll-mb", type=int, default=256)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--no-ebpf", action="store_true")
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"), default="confluent",
                        help="client of the load generator's sink (confluent keeps the generator cheap)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embedded-soak-"))
    up = Up(work / "data", args.roll_mb, ebpf=not args.no_ebpf)
    if not up.ready.wait(300) or up.proc.poll() is not None:
        print(f"svcpulse up did not start; see {work}/up.log")
        return 1
    offered = Offered(up.bootstrap, args.rate, work / "spool", args.kafka_client)
    producer = threading.Thread(target=offered.run, daemon=True)
    producer.start()
    print(f"[bench/embedded_soak] {args.rate:,.0f} extra events/s for {args.minutes:g} min into `svcpulse up` "
          f"(broker {up.bootstrap}, roll at {args.roll_mb} MB); work dir {work}")
    peak = watch(args, up, offered)
    return finish(args, up, offered, producer, work, peak)


def watch(args: argparse.Namespace, up: Up, offered: Offered) -> float:
    """Print RSS per process every --every seconds for --minutes; returns the peak total after warm-up."""
    print(f"{'t_s':>6} {'acked':>11} {'loader_lag':>10} {'gen':>4} {'up_MB':>7} {'proxy_MB':>8} {'broker_MB':>9} "
          f"{'total_MB':>8} {'chdb_MB':>7} {'caches_MB':>9} {'up_anon':>7} {'jemalloc':>8} {'je_used':>7} "
          f"{'malloc':>6} {'m_free':>6}  load")
    started, peak = time.monotonic(), 0.0
    while time.monotonic() - started < args.minutes * 60 and up.proc.poll() is None:
        time.sleep(args.every)
        rss = {name: rss_mb(pid) for name, pid in up.processes().items()}
        total = sum(rss.values())
        elapsed = time.monotonic() - started
        held = store_memory_mb(up.console)
        if elapsed > 120:  # warm-up: chdb's caches and the first generation fill
            peak = max(peak, total)
        print(f"{elapsed:6.0f} {offered.sink.stats()['sent']:11,} {loader_lag(up.bootstrap):10,} {up.generation:4} "
              f"{rss.get('up', 0):7.0f} {rss.get('broker-proxy', 0):8.0f} {rss.get('broker', 0):9.0f} {total:8.0f} "
              f"{held['chdb']:7.0f} {held['caches']:9.0f} {anon_mb(up.proc.pid):7.0f} {held['jemalloc']:8.0f} "
              f"{held['jemalloc_allocated']:7.0f} {held['malloc']:6.0f} {held['malloc_free']:6.0f}  "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    return peak


def finish(args: argparse.Namespace, up: Up, offered: Offered, producer: threading.Thread, work: Path,
           peak: float) -> int:
    offered.stop.set()
    producer.join()
    print(f"offered {offered.sent:,}; waiting for the sink to deliver and the loader to commit ...", flush=True)
    delivered = offered.sink.flush(600)
    stats = offered.sink.stats()
    offered.sink.close()
    marks, deadline = loaded_past(up.bootstrap), time.monotonic() + 600
    while (behind := loaded_past(up.bootstrap, marks)) and time.monotonic() < deadline:
        time.sleep(2)
    print(f"loader caught up: {not behind}; {loader_counts(up.pipeline_metrics)}; stopping svcpulse up", flush=True)
    up.proc.send_signal(signal.SIGINT)
    up.proc.wait(300)
    rows, distinct, gaps = count_loaded(work / "data")
    acked = stats["sent"]
    print(f"extra events acknowledged {acked:,} (sink: all delivered={delivered}, spooled {stats['spooled']:,}, "
          f"dropped {stats['dropped']:,}); broker generations {up.generation}")
    print(f"events lost               {acked - distinct:,}")
    print(f"duplicates                {rows - distinct:,}")
    for first, last, sides in gaps:
        print(f"  missing numbers {first:,}-{last:,}; loaded around them (partition, offsets): {sides}")
    print(f"peak total RSS after warm-up {peak:,.0f} MB (limit {LIMIT_MB:,} MB); load average {os.getloadavg()}")
    print(f"log of svcpulse up: {work}/up.log")
    return 0 if acked == distinct and peak <= LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
