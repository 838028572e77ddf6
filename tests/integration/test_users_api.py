"""Issue 9 §6 through a running API on ClickHouse 18.16: the last admin cannot be demoted, and the users
file is reloaded when it changes (no restart, no signal)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.auth import hash_token
from api.main import create_app
from core.settings import Settings
from pipeline.store import Store
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import USERS, auth, serve, token, write_users

pytestmark = pytest.mark.services


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return write_users(tmp_path / "users.json")


@pytest.fixture
def api(users: Path, ch_store: Store) -> Iterator[httpx.Client]:
    settings = Settings(users_file=str(users), users_reload_s=0.2, kafka_bootstrap="127.0.0.1:9")
    with serve(create_app(settings, store=ch_store)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def test_the_last_admin_cannot_be_demoted(api: httpx.Client) -> None:
    r = api.put("/v1/users/ada/role", json={"role": "operator", "why": "step down"}, headers=auth("ada"))
    assert r.status_code == 409 and "'ada' is the last admin" in r.json()["detail"]
    assert api.get("/v1/users", headers=auth("ada")).status_code == 200, "still an admin"


def test_the_users_file_is_reloaded_when_it_changes(api: httpx.Client, users: Path) -> None:
    assert api.get("/v1/weights", headers=auth("nina")).status_code == 401
    doc = json.loads(users.read_text())
    doc["users"].append({"name": "nina", "roles": ["viewer"], "token_sha256": hash_token(token("nina"))})
    doc["users"] = [u for u in doc["users"] if u["name"] != "vic"]  # vic leaves the team
    users.write_text(json.dumps(doc))
    wait_for(lambda: api.get("/v1/users", headers=auth("ada")).json()[-1]["name"] == "nina", 10, "the reload")
    assert api.get("/v1/audit", headers=auth("nina")).status_code == 200
    assert api.get("/v1/audit", headers=auth("vic")).status_code == 401, "a removed user is refused at once"
    users.write_text("{ broken")
    time.sleep(1.0)  # five reload checks: nothing may change (a non-event has to be waited out)
    names = [u["name"] for u in api.get("/v1/users", headers=auth("ada")).json()]
    assert names == [n for n in USERS if n != "vic"] + ["nina"], "a broken file keeps the users loaded before"
