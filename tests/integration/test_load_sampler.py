"""The load sampler on this machine's real cgroup files and /proc, through to a real Kafka broker."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from collectors import load
from collectors.load import CgroupReader, Sampler, Target, parse_target
from collectors.workload import names_of
from pipeline.events import validate
from svcpulse.services import Tansu


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def own_v2_path() -> str:
    return next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))


def test_self_target_follows_proc_self_cgroup() -> None:
    target = parse_target("self=10.0.0.5:8080")
    assert target.path == own_v2_path() and target.instance == "10.0.0.5:8080"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in filter(None, controllers.split(",")):
            assert target.v1[controller] == path


def test_own_cgroup_values_are_sane() -> None:
    sampler = Sampler([parse_target("self=me:1")], host="test-host")
    assert sampler.sample() == []  # the first round only primes the CPU counters
    burn(0.5)
    events = {e["cgroup"] or "host": validate("load", e) for e in sampler.sample()}
    host, mine = events["host"], events[own_v2_path()]
    cpus = os.cpu_count() or 1
    # this process burnt ~one core; the cgroup and the host both include it
    assert 0.5 <= mine["cpu_cores"] <= cpus + 0.1, mine
    assert 0.5 <= host["cpu_cores"] <= cpus + 0.1, host
    assert host["cpu_limit_cores"] == cpus
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert host["mem_limit_bytes"] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert 0 < host["mem_bytes"] < host["mem_limit_bytes"]
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss = int(status["VmRSS"].split()[0]) * 1024
    assert mine["mem_bytes"] >= rss / 2  # the cgroup holds at least this process (plus page cache)
    assert mine["mem_limit_bytes"] == 0 or mine["mem_limit_bytes"] >= mine["mem_bytes"]
    assert (mine["instance"], mine["host"], host["instance"]) == ("me:1", "test-host", "")
    assert (mine["workload"], mine["workload_kind"]) == names_of(own_v2_path()) != ("", "")
    assert (host["workload"], host["workload_kind"]) == ("", "")  # the whole node is no workload


def test_cgroup_reader_matches_the_files_it_reads() -> None:
    reader = CgroupReader()
    target = Target("/")
    usage_usec = next(
        int(line.split()[1]) for line in (reader.v2 / "cpu.stat").read_text().splitlines()
        if line.startswith("usage_usec")
    )  # fmt: skip
    reading = reader.read(target)
    assert reading is not None
    assert usage_usec / 1e6 <= reading.cpu_seconds < usage_usec / 1e6 + 5
    assert reader.read(Target("/no/such/cgroup")) is None


def test_pure_cgroup_v2_layout(tmp_path: Path) -> None:
    """A unified-only host's files (cpu.max, memory.current/max), laid out in a scratch tree."""
    group = tmp_path / "system.slice" / "api.service"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (group / "cpu.max").write_text("150000 100000\n")
    (group / "memory.current").write_text("104857600\n")
    (group / "memory.max").write_text("max\n")
    mountinfo = f"41 23 0:38 / {tmp_path} rw,relatime - cgroup2 cgroup2 rw\n"
    reading = CgroupReader(mountinfo).read(parse_target("/system.slice/api.service=h:1"))
    assert reading == load.Reading(2.5, 1.5, 104857600, 0)
    (group / "cpu.max").write_text("max 100000\n")
    (group / "memory.max").write_text("536870912\n")
    reading = CgroupReader(mountinfo).read(Target("/system.slice/api.service"))
    assert (reading.cpu_limit_cores, reading.mem_limit_bytes) == (0.0, 536870912)


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    load.configure(parser)
    return parser.parse_args(list(argv))


def test_cli_jsonl(capsys: pytest.CaptureFixture[str]) -> None:
    code = load.run(args_for("--output", "jsonl", "--interval", "0.2", "--count", "2", "--cgroup", "self=a:1",
                             "--host", "n1"))  # fmt: skip
    assert code == 0
    events = [validate("load", json.loads(line)) for line in capsys.readouterr().out.splitlines()]
    assert [(e["cgroup"] == "", e["instance"]) for e in events] == [(True, ""), (False, "a:1")] * 2


def test_cli_rejects_relative_cgroup(capsys: pytest.CaptureFixture[str]) -> None:
    assert load.run(args_for("--output", "jsonl", "--cgroup", "system.slice")) == 2
    assert "absolute cgroup path" in capsys.readouterr().err


@pytest.mark.services
def test_cli_kafka(broker: Tansu, tmp_path: Path) -> None:
    flags = ["--interval", "0.2", "--count", "1", "--cgroup", "self=svc:9", "--host", "n7"]
    code = load.run(args_for("--bootstrap-servers", broker.bootstrap, "--spool-dir", str(tmp_path / "s"), *flags))
    assert code == 0
    consumer = KafkaConsumer(
        "svcpulse.load",
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        group_id="t",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=15000,
    )
    got = []
    for message in consumer:
        got.append((message.key, validate("load", json.loads(message.value))))
        if len(got) == 2:
            break
    consumer.close()
    assert sorted(e["instance"] for _, e in got) == ["", "svc:9"]
    assert all(key == b"n7" for key, _ in got)
