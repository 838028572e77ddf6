"""bench/otlp: the OTLP receiver's throughput into Kafka on one core, and its request latency under load.

Starts a Tansu broker and `svcpulse otlp` (confluent-kafka sink) as a separate process pinned to one
core (--core), then drives it over OTLP/HTTP from this process (pinned elsewhere) with raw keep-alive
HTTP/1.1 connections and pre-encoded ExportTraceServiceRequest bodies:
  1. throughput, for protobuf and for JSON: --spans spans in requests of --batch spans, closed loop on
     --connections connections; spans/s = spans / (first request sent -> the receiver's sink reports
     every event acknowledged by Kafka), and the receiver's CPU seconds per second (<= 1: one core);
  2. latency: an open loop of --rate requests/s of 100 protobuf spans each for --seconds; p50/p99/max
     measured from each request's scheduled send time (no coordinated omission).
Targets (issue 12): >= 50,000 spans/s per core with protobuf; p99 at 1,000 requests/s x 100 spans.
Figures are provisional on a shared machine: the load average is printed with them.
Usage: .venv/bin/python bench/otlp.py [--spans N] [--batch N] [--rate R] [--seconds S] [--core C]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svcpulse.services import Tansu, free_port
from tests.otlp.spans import request, resource_spans, span

ROOT = Path(__file__).resolve().parents[1]
RESOURCE = {"service.name": "bench.users", "service.version": "1.4.2", "host.name": "node-1",
            "telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry", "process.pid": 4242}
ATTRIBUTES = {"http.request.method": "GET", "http.route": "/users/{id}", "server.address": "10.0.0.5",
              "server.port": 8080, "http.response.status_code": 200, "network.peer.address": "10.0.0.9",
              "network.peer.port": 51234, "url.path": "/users/42", "url.scheme": "http",
              "user_agent.original": "python-httpx/0.28.1", "network.protocol.version": "1.1"}


def body(spans: int, encoding: str) -> bytes:
    """One export request of `spans` server spans like an SDK sends (11 attributes each), ending now."""
    message = request(resource_spans(RESOURCE, [span("server", attributes=ATTRIBUTES) for _ in range(spans)]))
    return message.SerializeToString() if encoding == "protobuf" else json_format.MessageToJson(message).encode()


class Connection:
    """A keep-alive HTTP/1.1 connection posting to /v1/traces; post() returns the status code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, payload: bytes, content_type: str) -> int:
        head = (f"POST /v1/traces HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        self.writer.write(head + payload)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        return status


def sent_to_kafka(metrics_url: str) -> float:
    found = re.search(r'^svcpulse_sink_sent_total\{kind="rpc"\} (\S+)$', httpx.get(metrics_url).text, re.M)
    return float(found.group(1)) if found else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def closed_loop(port: int, payload: bytes, content_type: str, requests: int, connections: int) -> None:
    remaining = [requests]

    async def worker() -> None:
        connection = await Connection.open(port)
        while remaining[0] > 0:
            remaining[0] -= 1
            status = await connection.post(payload, content_type)
            assert status == 200, status

    await asyncio.gather(*(worker() for _ in range(connections)))


def throughput(port: int, pid: int, encoding: str, spans: int, batch: int, connections: int) -> tuple[float, float]:
    payload = body(batch, encoding)
    content_type = "application/x-protobuf" if encoding == "protobuf" else "application/json"
    metrics = f"http://127.0.0.1:{port}/metrics"
    requests = max(1, spans // batch)
    base, cpu0, t0 = sent_to_kafka(metrics), cpu_seconds(pid), time.monotonic()
    asyncio.run(closed_loop(port, payload, content_type, requests, connections))
    while sent_to_kafka(metrics) < base + requests * batch:
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    return requests * batch / elapsed, (cpu_seconds(pid) - cpu0) / elapsed


async def open_loop(port: int, payload: bytes, rate: float, seconds: float) -> tuple[list[float], float]:
    """Latencies (ms) of requests scheduled every 1/rate s, each on an idle connection (opened as needed),
    and the request rate the receiver sustained (requests / first send -> last answer)."""
    idle: list[Connection] = []
    latencies: list[float] = []

    async def one(scheduled: float) -> None:
        connection = idle.pop() if idle else await Connection.open(port)
        status = await connection.post(payload, "application/x-protobuf")
        latencies.append((time.monotonic() - scheduled) * 1000)
        assert status == 200, status
        idle.append(connection)

    tasks, start = [], time.monotonic() + 0.1
    for n in range(int(rate * seconds)):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.wait(tasks, timeout=seconds + 30)  # a saturated receiver must not hold the bench for long
    for task in tasks:
        task.cancel()
    unanswered = len(tasks) - len(latencies)  # counted as "longer than the run": they push p99 up, honestly
    return sorted(latencies) + [float("inf")] * unanswered, len(latencies) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=300_000, help="spans per throughput run (JSON: a tenth)")
    parser.add_argument("--batch", type=int, default=512, help="spans per request (the SDKs' default batch)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--core", type=int, default=0, help="the core the receiver is pinned to")
    args = parser.parse_args()
    others = (os.sched_getaffinity(0) - {args.core}) or {args.core}
    os.sched_setaffinity(0, others)
    with tempfile.TemporaryDirectory(prefix="otlp-bench-") as scratch:
        broker = Tansu(port=free_port(), workdir=Path(scratch) / "tansu")
        broker.start()
        port = free_port()
        env = {**os.environ, "SVCPULSE_KAFKA_CLIENT": "confluent"}
        receiver = subprocess.Popen(
            [str(ROOT / ".venv/bin/svcpulse"), "otlp", "--open", "--http-port", str(port), "--grpc-port", "0",
             "--bootstrap", broker.bootstrap, "--spool-dir", f"{scratch}/spool"],
            env=env, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, {args.core}))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline and receiver.poll() is None, "the receiver did not start"
                    time.sleep(0.2)
            throughput(receiver_port := port, receiver.pid, "protobuf", 20_000, args.batch, args.connections)  # warm
            print(f"OTLP receiver on core {args.core}, {args.batch} spans per request, {args.connections} connections")
            for encoding, spans in (("protobuf", args.spans), ("json", args.spans // 10)):
                rate, cores = throughput(receiver_port, receiver.pid, encoding, spans, args.batch, args.connections)
                per_span_us = cores / rate * 1e6
                print(f"  {encoding:8s} {rate:9,.0f} spans/s into Kafka, {cores:.2f} cores used: {per_span_us:.1f} us "
                      f"CPU per span = {1e6 / per_span_us:,.0f} spans/s per busy core (target >= 50,000 with "
                      f"protobuf)  load average {os.getloadavg()[0]:.1f}")
            latencies, sustained = asyncio.run(open_loop(port, body(100, "protobuf"), args.rate, args.seconds))
            p = [latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.99)]
            print(f"  latency at {args.rate:,.0f} requests/s x 100 spans for {args.seconds:g} s (sustained "
                  f"{sustained:,.0f}/s): p50 {p[0]:.1f} ms, p99 {p[1]:.1f} ms, max {latencies[-1]:.1f} ms  "
                  f"load average {os.getloadavg()[0]:.1f}")
        finally:
            receiver.terminate()
            receiver.wait(timeout=60)
            broker.stop()


if __name__ == "__main__":
    main()
