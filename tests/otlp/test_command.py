"""`svcpulse otlp` as a user runs it: it serves both ports, and SIGTERM answers what is in flight, delivers
the queue to Kafka and says so; with Kafka gone, the events wait in the spool and are not lost."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from svcpulse.services import Tansu, free_port
from tests.integration.helpers import wait_for
from tests.otlp.spans import request, resource_spans, span

pytestmark = pytest.mark.services
GOOD = {"http.request.method": "GET", "http.route": "/x", "server.address": "10.0.0.5", "server.port": 80}


def run_receiver(bootstrap: str, spool: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "svcpulse", "otlp", "--open", "--http-port", str(port),
                             "--grpc-port", "0", "--bootstrap", bootstrap, "--spool-dir", str(spool)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:  # not listening yet
            return False

    try:
        wait_for(answers, 60, "svcpulse otlp to answer")
    except BaseException:
        proc.kill()  # a receiver that never answered must not outlive the test
        proc.wait()
        raise
    return proc, url


def post(url: str, spans: int) -> httpx.Response:
    body = request(resource_spans({"service.name": "cli.svc"}, [span("server", attributes=GOOD)] * spans))
    return httpx.post(f"{url}/v1/traces", content=body.SerializeToString(),
                      headers={"content-type": "application/x-protobuf"}, timeout=10)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    return output


def test_sigterm_delivers_what_was_accepted_and_says_so(broker: Tansu, tmp_path: Path) -> None:
    proc, url = run_receiver(broker.bootstrap, tmp_path / "spool")
    try:
        assert post(url, 7).status_code == 200
        output = stop(proc)
    finally:
        proc.kill()
    assert "OTLP/HTTP http://127.0.0.1:" in output and "(open to anyone)" in output
    assert re.search(r"stopped; 7 events delivered to Kafka, 0 left in", output), output


def test_without_kafka_the_sender_is_answered_and_the_events_wait_in_the_spool(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # no broker listens here
    proc, url = run_receiver(nobody, tmp_path / "spool")
    try:
        answer = post(url, 5)
        assert answer.status_code == 200  # answered at once: the sink never waits for Kafka
        output = stop(proc)
    finally:
        proc.kill()
    assert re.search(r"stopped; 0 events delivered to Kafka, 5 left in", output), output
