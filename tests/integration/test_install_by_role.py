"""Extras by role: a node that runs only the collectors installs `svcpulse[collector]` and gets no store,
API or embedded packages, yet its commands run (a fresh venv; pip as users run it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_collector_only_venv_runs_the_collectors_without_chdb_pyarrow_fastapi(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: pip builds in the source tree, which must stay clean
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info",
                                                                "__pycache__", "svcpulse-data", "artifacts"))
    venv = tmp_path / "control-collector-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", f"{source}[collector]"], check=True, timeout=900)
    python, svcpulse = str(venv / "bin/python"), str(venv / "bin/svcpulse")
    for module in ("chdb", "pyarrow", "fastapi", "uvicorn", "clickhouse_driver", "grafana_foundation_sdk"):
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
        assert found.returncode != 0, f"{module} is installed with the collector extra"
    for args in (["--help"], ["collect", "tcp", "--help"], ["collect", "load", "--help"]):
        done = subprocess.run([svcpulse, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stderr)
    sample = subprocess.run([svcpulse, "collect", "load", "--output", "jsonl", "--interval", "0.2", "--count", "1"],
                            capture_output=True, text=True, timeout=120)
    assert sample.returncode == 0, sample.stderr
    events = [json.loads(line) for line in sample.stdout.splitlines() if line.startswith("{")]
    assert events and all(e["v"] == 1 and e["cpu_cores"] >= 0 for e in events)
