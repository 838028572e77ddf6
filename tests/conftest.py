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


def _fresh_database(url: str) -> Iterator[Store]:
    store = open_store(url)
    migrate(store, log=False)
    yield store
    store.execute(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


@pytest.fixture
def ch_store(clickhouse: ClickHouseServer) -> Iterator[Store]:
    """A fresh, migrated database on the real 18.16 server, dropped afterwards."""
    yield from _fresh_database(f"clickhouse://127.0.0.1:{clickhouse.port}/t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["native", "json"])
def loader_store(request: pytest.FixtureRequest, clickhouse: ClickHouseServer) -> Iterator[Store]:
    """ch_store, once as is (the loader inserts columns over the native protocol) and once with the
    server's HTTP port in the URL (the loader streams JSON lines there: pipeline/line_streams.py)."""
    http = f"?http_port={clickhouse.http_port}" if request.param == "json" else ""
    yield from _fresh_database(f"clickhouse://127.0.0.1:{clickhouse.port}/t_{uuid.uuid4().hex[:10]}{http}")



@pytest.fixture(scope="session")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The embedded store (chdb allows one data directory per process, so one per test session)."""
    store = open_store(f"chdb://{tmp_path_factory.mktemp('chdb')}/svcpulse")
    migrate(store, log=False)
    yield store
    store.close()
