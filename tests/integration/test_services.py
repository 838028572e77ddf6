"""`svcpulse services` starts real services, reports them, and stops only what it started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from svcpulse.services import Tansu, free_port, port_open

pytestmark = pytest.mark.services


def svcpulse(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "svcpulse", "services", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_start_status_stop_on_configured_ports(tmp_path: Path, clickhouse: object) -> None:
    kafka_port, clickhouse_port = free_port(), free_port()
    out = svcpulse("start", "--kafka-port", str(kafka_port), "--clickhouse-port", str(clickhouse_port), cwd=tmp_path)
    assert f"SVCPULSE_KAFKA_BOOTSTRAP=127.0.0.1:{kafka_port}" in out
    try:
        assert port_open(kafka_port) and port_open(clickhouse_port)
        status = svcpulse("status", cwd=tmp_path)  # no port flags: the recorded ports are used
        assert status.count("running") == 2 and str(clickhouse_port) in status
    finally:
        svcpulse("stop", cwd=tmp_path)
    assert not port_open(kafka_port) and not port_open(clickhouse_port)


def test_stop_leaves_a_process_it_did_not_start_alone(tmp_path: Path) -> None:
    foreign = Tansu(port=free_port(), workdir=tmp_path / "elsewhere")
    foreign.start()
    try:
        (tmp_path / ".svcpulse/services/tansu").mkdir(parents=True)
        # A stale pid file naming someone else's process must not get it killed.
        (tmp_path / ".svcpulse/services/tansu/tansu.pid").write_text(f"{foreign.pid()} 1\n")
        svcpulse("stop", cwd=tmp_path)
        assert foreign.running()
    finally:
        foreign.stop()
