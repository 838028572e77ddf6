"""GET /v1/weights/{service} latency at a fixed request rate on loopback (p50 / p99), open loop.

The API runs as its own process (`svcpulse api` on a chdb store, one uvicorn worker) serving a
20-instance service whose feed a `svcpulse weigh` process publishes over a Tansu broker. The load
generator is a minimal asyncio HTTP/1.1 keep-alive client (httpx
would cost more CPU than the server on a 2-core box): request i is due at start + i/rate, and its
latency counts from when it was due, so a server falling behind shows up (no coordinated omission).
Runs once with the feed open and once with a viewer bearer token.

    .venv/bin/python bench/feed.py [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api.auth import hash_token
from svcpulse.services import Tansu, free_port

SERVICE = "bench.feed"


async def _connection(port: int, path: str, headers: str, due: list[float], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()
    loop = asyncio.get_running_loop()
    for when in due:
        delay = when - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer: {head[:60]!r}")
        latencies.append((loop.time() - when) * 1000)
    writer.close()


async def load(port: int, path: str, headers: str, rate: float, seconds: float, connections: int = 16) -> list[float]:
    start = asyncio.get_running_loop().time() + 0.2
    due = [start + i / rate for i in range(int(rate * seconds))]
    latencies: list[float] = []
    await asyncio.gather(*(_connection(port, path, headers, due[c::connections], latencies)
                           for c in range(connections)))
    return latencies


def report(label: str, latencies: list[float], seconds: float) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"{label:<22} {len(latencies) / seconds:7.0f} req/s  p50 {q[49]:6.2f} ms  p90 {q[89]:6.2f} ms  "
          f"p99 {q[98]:6.2f} ms  max {max(latencies):7.2f} ms  ({len(latencies)} requests)", flush=True)


def start_api(workdir: Path, token: str, bootstrap: str) -> tuple[subprocess.Popen[bytes], int]:
    users = {"users": [{"name": "bench", "roles": ["viewer", "operator"], "role": "operator",
                        "token_sha256": hash_token(token)}]}
    (workdir / "users.json").write_text(json.dumps(users))
    port, store = free_port(), f"chdb://{workdir}/chdb/svcpulse"
    env = {**os.environ, "SVCPULSE_USERS_FILE": str(workdir / "users.json"), "SVCPULSE_FEED_OPEN": "true"}
    subprocess.run([sys.executable, "-m", "svcpulse", "migrate", "--store", store], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    api = subprocess.Popen([sys.executable, "-m", "svcpulse", "api", "--store", store, "--port", str(port),
                            "--bootstrap", bootstrap], env=env, stdout=subprocess.DEVNULL)
    return api, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    token = "bench-token"
    with tempfile.TemporaryDirectory() as tmp:
        broker = Tansu(port=free_port(), workdir=Path(tmp) / "tansu")
        broker.start()
        weigh = subprocess.Popen([sys.executable, "-m", "svcpulse", "weigh", "--no-history", "--bootstrap",
                                  broker.bootstrap], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api, port = start_api(Path(tmp), token, broker.bootstrap)
        try:
            base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 30
            while True:
                try:
                    instances = [f"10.9.0.{n}:8080" for n in range(1, 21)]
                    httpx.put(f"{base}/v1/registry/services/{SERVICE}", headers=auth, timeout=5,
                              json={"kind": "ip", "instances": instances, "why": "bench"}).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            while httpx.get(f"{base}/v1/weights/{SERVICE}").status_code != 200:
                time.sleep(0.2)
            size = len(httpx.get(f"{base}/v1/weights/{SERVICE}").content)
            print(f"GET /v1/weights/{SERVICE}: 20 instances, {size} bytes; {args.rate:g} req/s for "
                  f"{args.seconds:g} s each, 16 keep-alive connections, API in its own process")
            asyncio.run(load(port, f"/v1/weights/{SERVICE}", "", args.rate, 1.0))  # warm-up
            for label, headers in (("open feed", ""), ("viewer bearer token", f"Authorization: Bearer {token}\r\n")):
                latencies = asyncio.run(load(port, f"/v1/weights/{SERVICE}", headers, args.rate, args.seconds))
                report(label, latencies, args.seconds)
        finally:
            for process in (api, weigh):
                process.terminate()
                process.wait(timeout=30)
            broker.stop()


if __name__ == "__main__":
    main()
