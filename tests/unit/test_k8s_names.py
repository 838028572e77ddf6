"""Pod UID -> namespace/owner through the Kubernetes API, against RECORDED API responses.

No Kubernetes cluster runs here. tests/unit/k8s_responses/ holds responses in the shapes the Kubernetes
API reference documents (PodList v1, ReplicaSet apps/v1, Job batch/v1, Status for 401/403), served over
real HTTPS (a CA made with openssl, as in a pod's service account) by a local server that checks the
bearer token and the node's field selector as the API server would. Not run: a real API server's
RBAC evaluation, watch/relist at scale, token rotation by the kubelet (docs/workloads.md says so).
"""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from collectors.k8s import KubeError, KubeNamer, PathNames, namer_for
from core.settings import Settings

RESPONSES = Path(__file__).parent / "k8s_responses"
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.recorded.signature"


def pod_path(uid: str, qos: str = "burstable") -> str:
    u = uid.replace("-", "_")
    return f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{u}.slice/cri-containerd-{'ab' * 32}.scope"


class FakeApiServer:
    """Serves the recorded responses the way the API server routes them; records every request."""

    def __init__(self, workdir: Path, certificate: tuple[Path, Path]) -> None:
        self.pods: dict[str, Any] = json.loads((RESPONSES / "podlist-node-1.json").read_text())
        self.objects = {
            "/apis/apps/v1/namespaces/shop/replicasets/checkout-7c9d8f6b5": (200, "replicaset-shop-checkout-7c9d8f6b5"),
            "/apis/apps/v1/namespaces/shop/replicasets/cart-5d7f9c8b4": (403, "status-forbidden-replicaset"),
            "/apis/batch/v1/namespaces/batch/jobs/report-28886400": (200, "job-batch-report-28886400"),
        }
        self.requests: list[str] = []
        self.down = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                code, body = server.answer(self.path, self.headers.get("Authorization", ""))
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.account = workdir / "serviceaccount"  # what the kubelet mounts in a pod
        self.account.mkdir()
        (self.account / "token").write_text(TOKEN + "\n")
        cert, key = certificate
        (self.account / "ca.crt").write_bytes(cert.read_bytes())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, authorization: str) -> tuple[int, Any]:
        if self.down:
            return 503, {"kind": "Status", "status": "Failure", "message": "etcdserver: request timed out", "code": 503}
        if authorization != f"Bearer {TOKEN}":
            return 401, json.loads((RESPONSES / "status-unauthorized.json").read_text())
        url = urlparse(path)
        if url.path == "/api/v1/pods":
            assert parse_qs(url.query) == {"fieldSelector": ["spec.nodeName=node-1"]}
            return 200, self.pods
        code, name = self.objects.get(url.path, (404, ""))
        if not name:
            return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
        return code, json.loads((RESPONSES / f"{name}.json").read_text())

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The API server's self-signed certificate, which the service account's ca.crt trusts."""
    where = tmp_path_factory.mktemp("map-k8s-tls")
    cert, key = where / "apiserver.crt", where / "apiserver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=kubernetes",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def api(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[FakeApiServer]:
    server = FakeApiServer(tmp_path, certificate)
    yield server
    server.stop()


def settings_for(api: FakeApiServer, **changes: Any) -> Settings:
    values = {"k8s_names": "auto", "k8s_api_url": api.url, "k8s_service_account_dir": str(api.account),
              "node_name": "node-1", "k8s_refresh_s": 60.0, **changes}
    return Settings(**values)


UIDS = {
    "7d5e2c1a-3b4f-4a6e-9c8d-0123456789ab": ("shop/checkout", "deployment"),  # pod -> ReplicaSet -> Deployment
    "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d": ("shop/cart", "deployment"),  # ReplicaSet forbidden: its naming rule
    "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f": ("shop/postgres", "statefulset"),
    "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b": ("svcpulse/svcpulse-collector", "daemonset"),
    "c0ffee00-1234-4abc-9def-0123456789ab": ("batch/report", "cronjob"),  # pod -> Job -> CronJob
    "0a1b2c3d-4e5f-4061-8273-9485a6b7c8d9": ("default/debug", "pod"),  # no controller: the pod itself
}


def test_pods_are_named_by_what_runs_them(api: FakeApiServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "svcpulse.k8s"):
        namer = namer_for(settings_for(api))
    try:
        assert isinstance(namer, KubeNamer)
        for uid, names in UIDS.items():
            assert namer(pod_path(uid)) == names, uid
        assert namer("/system.slice/sshd.service") == ("sshd.service", "unit")  # not a pod: its path name
    finally:
        namer.close()
    assert "cannot read a ReplicaSet" in caplog.text and "403" in caplog.text  # said once, with the reason
    parents = [p for p in api.requests if not p.startswith("/api/v1/pods")]
    assert sorted(parents) == sorted(api.objects)  # one GET per ReplicaSet/Job, none per pod


def test_a_new_pod_is_named_after_a_relist_and_the_path_name_meanwhile(api: FakeApiServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collectors.k8s.MIN_RELIST_S", 1.0)
    namer = namer_for(settings_for(api))
    try:
        newcomer = "11111111-2222-4333-8444-555555555555"
        path = pod_path(newcomer, "besteffort")
        assert namer(path) == (f"pod:{newcomer}", "pod")  # never waits for the API on the hot path
        listings = sum(p.startswith("/api/v1/pods") for p in api.requests)
        clone = json.loads(json.dumps(api.pods["items"][5]))
        clone["metadata"].update(name="debug-2", uid=newcomer)
        api.pods["items"].append(clone)
        deadline = time.monotonic() + 15  # the re-list waits MIN_RELIST_S after the last one
        while namer(path) != ("default/debug-2", "pod") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert namer(path) == ("default/debug-2", "pod")
        assert sum(p.startswith("/api/v1/pods") for p in api.requests) == listings + 1
    finally:
        namer.close()


def test_an_api_outage_keeps_the_last_names_and_a_bad_token_falls_back_to_paths(api: FakeApiServer) -> None:
    namer = namer_for(settings_for(api))
    try:
        api.down = True
        namer.relist()
        assert namer(pod_path("5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f")) == ("shop/postgres", "statefulset")
    finally:
        namer.close()
    (api.account / "token").write_text("expired")
    api.down = False
    unauthorised = namer_for(settings_for(api))
    try:
        uid = "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f"
        assert unauthorised(pod_path(uid)) == (f"pod:{uid}", "pod")
    finally:
        unauthorised.close()


def test_off_by_default_outside_kubernetes(tmp_path: Path, api: FakeApiServer) -> None:
    outside = Settings(k8s_names="auto", k8s_api_url="", kubernetes_service_host="",
                       k8s_service_account_dir=str(tmp_path / "none"))
    assert isinstance(namer_for(outside), PathNames)
    no_account = settings_for(api, k8s_service_account_dir=str(tmp_path / "none"))
    assert isinstance(namer_for(no_account), PathNames)  # auto needs a mounted service account
    assert isinstance(namer_for(settings_for(api, k8s_names="off")), PathNames)
    with pytest.raises(KubeError, match="SVCPULSE_K8S_API_URL"):
        namer_for(Settings(k8s_names="on", k8s_api_url="", kubernetes_service_host=""))


def test_in_cluster_address_comes_from_the_environment_kubernetes_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors.k8s import api_url

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    assert api_url(Settings()) == "https://10.96.0.1:6443"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert api_url(Settings()) == "https://[fd00::1]:6443"


def rbac_needed(path: str) -> tuple[str, str, str]:
    """(API group, resource, verb) an API server checks for one GET (a collection GET is `list`)."""
    parts = urlparse(path).path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[0] == "namespaces":
        rest = rest[2:]
    return group, rest[0], "get" if len(rest) > 1 else "list"


def test_the_collector_daemonsets_are_granted_exactly_what_the_namer_reads(api: FakeApiServer) -> None:
    import yaml

    docs = list(yaml.safe_load_all((Path(__file__).parents[2] / "deploy/k8s/50-collectors.yaml").read_text()))
    [role] = [d for d in docs if d["kind"] == "ClusterRole"]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    namer = namer_for(settings_for(api))
    namer.close()
    assert {rbac_needed(path) for path in api.requests} == granted
    [binding] = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for daemonset in (d for d in docs if d["kind"] == "DaemonSet"):
        pod = daemonset["spec"]["template"]["spec"]
        assert {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "svcpulse"} in \
            binding["subjects"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["SVCPULSE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
