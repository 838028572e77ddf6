"""Dashboards as data (no Grafana server can run here): datasources provisioned, variables present, the
committed JSON current, and `dashboards push` against a stand-in Grafana HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from api.servicemap.nodegraph import edge_frame, node_frame
from dashboards.build import BUILDERS, FOLDER_UID, dashboards, write_all
from dashboards.push import push
from dashboards.sources import API_UID, CLICKHOUSE_UID, api_datasource
from svcpulse.cli import main
from tests.dashboard_checks import datasource_uids, panels

REPO_DASHBOARDS = Path(__file__).parents[2] / "dashboards"
TITLES = {"Service capacity", "RPC health", "Connections", "Load-balancer weights", "Service map"}


def test_five_dashboards_with_service_and_instance_pickers() -> None:
    models = dashboards()
    assert {m["title"].removeprefix("svcpulse / ") for m in models.values()} == TITLES
    for uid, model in models.items():
        assert model["uid"] == uid
        assert [v["name"] for v in model["templating"]["list"]] == ["service", "instance"], uid
        ids = [p["id"] for p in panels(model)]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat"


def test_the_map_is_a_node_graph_fed_with_the_frames_the_api_answers() -> None:
    """The nodeGraph panel's two Infinity queries ask GET /v1/map for format=grafana and read exactly the
    fields api/servicemap/nodegraph.py writes (their values over demo data: tests/integration/
    test_dashboards_data.py). Checked as data: no Grafana server runs here to draw the panel."""
    graph = next(p for p in panels(dashboards()["svcpulse-map"]) if p["type"] == "nodeGraph")
    queries = {t["format"]: t for t in graph["targets"]}
    assert set(queries) == {"node-graph-nodes", "node-graph-edges"}
    node = node_frame({"id": "svc:a", "title": "a", "subtitle": "", "kind": "service", "calls": 10, "rps": 1.0,
                       "success_rate": 0.9, "latency_ms_p99": 5.0, "tcp_rate": 0.0, "tcp_success_rate": None,
                       "color": "#56a64b", "state": "healthy", "state_why": "", "why": [], "instances": {}})
    edge = edge_frame({"id": "svc:a->svc:b", "source": "svc:a", "target": "svc:b", "calls": 10, "rps": 1.0,
                       "error_rate": 0.1, "latency_ms_p99": 5.0, "tcp_rate": 0.0, "tcp_failure_rate": None,
                       "tcp_attempts": 0, "tcp_failed": 0, "tcp_retransmits": 0, "tcp_resets": 0, "color": "#f2495c",
                       "health": "critical", "why": ["calls: 90.0% succeed"]})
    for fmt, frame, root in (("node-graph-nodes", node, "nodes"), ("node-graph-edges", edge, "edges")):
        query = queries[fmt]
        assert query["url"].startswith("/v1/map?format=grafana") and query["root_selector"] == root
        assert [c["selector"] for c in query["columns"]] == list(frame), fmt
    assert {"id", "title", "subtitle", "mainstat", "secondarystat", "color"} <= set(node)
    assert {"id", "source", "target", "mainstat", "secondarystat", "color"} <= set(edge)
    assert {a["field"] for a in graph["options"]["nodes"]["arcs"]} == {k for k in node if k.startswith("arc__")}


def test_every_datasource_a_panel_uses_is_provisioned() -> None:
    provisioned = yaml.safe_load((REPO_DASHBOARDS / "provisioning/datasources/svcpulse.yaml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    assert uids == {API_UID, CLICKHOUSE_UID}
    for uid, model in dashboards().items():
        assert datasource_uids(model) <= uids, uid
    provider = yaml.safe_load((REPO_DASHBOARDS / "provisioning/dashboards/svcpulse.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    assert provider["providers"][0]["folderUid"] == FOLDER_UID


def test_committed_files_are_what_build_writes(tmp_path: Path) -> None:
    """Edit the builders, then run `svcpulse dashboards build`: the committed JSON must not go stale."""
    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    for written in write_all(tmp_path):
        committed = REPO_DASHBOARDS / written.relative_to(tmp_path)
        assert committed.read_text() == written.read_text(), f"{committed} is stale: run svcpulse dashboards build"


class StandInGrafana(BaseHTTPRequestHandler):
    """A stand-in for Grafana's HTTP API (no Grafana server can run here): it records what grafana-client
    sends and answers like Grafana does for folders, datasources and dashboards."""

    requests: ClassVar[list[dict[str, Any]]] = []
    folders: ClassVar[set[str]] = set()
    datasources: ClassVar[set[str]] = set()

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        entry = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        self.requests.append(entry)
        return entry

    def do_GET(self) -> None:
        self._record()
        kind, _, uid = self.path.removeprefix("/api/").partition("/")
        known = self.folders if kind == "folders" else self.datasources
        uid = uid.removeprefix("uid/")
        self._answer(200, {"uid": uid}) if uid in known else self._answer(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = self._record()["body"]
        if self.path == "/api/folders":
            self.folders.add(body["uid"])
        elif self.path == "/api/datasources":
            self.datasources.add(body["uid"])
        uid = body.get("dashboard", body).get("uid")
        self._answer(200, {"uid": uid, "url": f"/d/{uid}", "version": 1, "status": "success"})

    def do_PUT(self) -> None:
        self._record()
        self._answer(200, {"message": "Datasource updated"})

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def grafana() -> Iterator[str]:
    StandInGrafana.requests, StandInGrafana.folders, StandInGrafana.datasources = [], set(), set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_push_creates_the_folder_and_saves_every_dashboard_in_it(grafana: str) -> None:
    saved = push(grafana, "glsa_test", [api_datasource("http://svcpulse-api:8000", "viewer-token")], say=lambda _: None)
    assert saved == list(BUILDERS)
    seen = StandInGrafana.requests
    assert all(r["auth"] == "Bearer glsa_test" for r in seen)
    assert {"method": "POST", "path": "/api/folders"} in [{k: r[k] for k in ("method", "path")} for r in seen]
    created = [r["body"] for r in seen if r["path"] == "/api/datasources"]
    assert [(d["uid"], d["url"], d["secureJsonData"]) for d in created] == [
        (API_UID, "http://svcpulse-api:8000", {"bearerToken": "viewer-token"})]
    boards = [r["body"] for r in seen if r["path"] == "/api/dashboards/db"]
    assert [b["dashboard"]["uid"] for b in boards] == list(BUILDERS)
    assert all(b["folderUid"] == FOLDER_UID and b["overwrite"] is True for b in boards)


def test_push_again_updates_in_place(grafana: str) -> None:
    push(grafana, "t", [api_datasource("http://a:8000", "x")], say=lambda _: None)
    StandInGrafana.requests.clear()
    push(grafana, "t", [api_datasource("http://a:8000", "x")], say=lambda _: None)
    methods = [(r["method"], r["path"]) for r in StandInGrafana.requests]
    assert ("PUT", f"/api/datasources/uid/{API_UID}") in methods
    assert ("POST", "/api/folders") not in methods and ("POST", "/api/datasources") not in methods


def test_push_to_nothing_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "push", "--url", "http://127.0.0.1:9", "--token", "t"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("svcpulse dashboards push: cannot reach Grafana at http://127.0.0.1:9") and err[-1] == "\n"
