"""Shared fixtures: the real services (a Tansu broker and a ClickHouse 18.16 server) started once per
test session by svcpulse.services on free loopback ports, a fresh migrated database per test, and
the embedded chdb store. Tests marked `services` need them; `scripts/test` installs what is missing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from svcpulse.services import ClickHouseServer, Tansu, free_port


def _require(binary_ok: bool, what: str) -> None:
    if not binary_ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is required in CI; run scripts/bootstrap.sh")
        pytest.skip(f"{what} not installed (run scripts/bootstrap.sh)")


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Tansu]:
    """A fresh Tansu broker per test (it starts in ~50 ms), so topics never carry another test's data."""
    tansu = Tansu(port=free_port(), workdir=tmp_path / "tansu")
    tansu.start()
    yield tansu
    tansu.stop()


@pytest.fixture(scope="session")
def clickhouse(services_dir: Path) -> Iterator[ClickHouseServer]:
    _require(bool(shutil.which("clickhouse-server") or Path("/usr/bin/clickhouse-server").exists()),
             "clickhouse-server (Debian)")
    server = ClickHouseServer(port=free_port(), workdir=services_dir / "clickhouse")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ch_store(clickhouse: ClickHouseServer) -> Iterator[Store]:
    """A fresh, migrated database on the real 18.16 server, dropped afterwards."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    store = open_store(f"clickhouse://127.0.0.1:{clickhouse.port}/{database}")
    migrate(store, log=False)
    yield store
    store.execute(f"DROP DATABASE IF EXISTS {database}")
    store.close()


@pytest.fixture(scope="session")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The embedded store (chdb allows one data directory per process, so one per test session)."""
    store = open_store(f"chdb://{tmp_path_factory.mktemp('chdb')}/svcpulse")
    migrate(store, log=False)
    yield store
    store.close()
