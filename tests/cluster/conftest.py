"""The real cluster for the tests in this directory (marked `cluster`): ZooKeeper and 2 shards x 2
replicas of ClickHouse 18.16, started once per test session by `svcpulse services start --cluster`
and stopped by `svcpulse services stop`, on free loopback ports. Each test gets a fresh database
migrated ON CLUSTER; a test that stops servers restarts them before the next one starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import Store
from svcpulse.cluster_services import CLUSTER, LocalCluster
from svcpulse.services import free_port, port_open
from tests.cluster.helpers import heal, migrated_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


def services(action: str, workdir: Path, *flags: str) -> str:
    result = subprocess.run([sys.executable, "-m", "svcpulse", "services", action, "--dir", str(workdir), *flags],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    missing = [what for what, ok in (("zookeeper (Debian)", Path("/usr/share/java/zookeeper.jar").exists()),
                                     ("java", bool(shutil.which("java"))),
                                     ("clickhouse-server", bool(shutil.which("clickhouse-server")
                                                                or Path("/usr/bin/clickhouse-server").exists())))
               if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} required in CI; run scripts/bootstrap.sh")
        pytest.skip(f"{', '.join(missing)} not installed (run scripts/bootstrap.sh)")
    workdir = tmp_path_factory.mktemp("cluster-services")
    try:
        started = services("start", workdir, "--cluster", "--kafka-port", str(free_port()))
        assert f"SVCPULSE_CLICKHOUSE_CLUSTER={CLUSTER}" in started
        status = services("status", workdir)  # no flag: status knows the cluster started here
        assert [line.split()[:2] for line in status.splitlines()[2:]] == [
            [name, "running"] for name in ("zookeeper", "s1r1", "s1r2", "s2r1", "s2r2")], status
        yield LocalCluster(workdir / "cluster")
    finally:
        stopped = services("stop", workdir)
        assert stopped.count("stopped") == 7, stopped  # tansu, the single server (never started), the cluster
        assert not any(port_open(node.port) for node in LocalCluster(workdir / "cluster").nodes)


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> LocalCluster:
    """The session's cluster, every process running and every replica caught up."""
    heal(local_cluster)
    return local_cluster


@pytest.fixture
def cluster_store(cluster: LocalCluster) -> Iterator[Store]:
    with migrated_database(cluster) as store:
        yield store
