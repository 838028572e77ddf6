"""The sample Envoy bootstrap and the `envoy` service, checked by the real tools available here: Envoy's own
Bootstrap message (xds-protos) with its validation rules, and Debian's docker-compose. No Envoy binary and
no Docker engine exist here; the compose-level smoke check runs only where Docker does (docs/envoy.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401  (registers the typed_config types)
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401

from balancer.eds import CLA_TYPE
from tests.envoy_checks import parse, violations

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy/envoy/envoy.yaml"


def bootstrap() -> Bootstrap:
    message = parse(yaml.safe_load(SAMPLE.read_text()), Bootstrap)
    assert isinstance(message, Bootstrap)
    return message


def test_the_sample_bootstrap_is_a_valid_envoy_bootstrap_with_an_eds_cluster_on_svcpulse() -> None:
    config = bootstrap()
    assert violations(config) == []
    clusters = {c.name: c for c in config.static_resources.clusters}
    eds = clusters["shop_cart"].eds_cluster_config
    source = eds.eds_config.api_config_source
    assert eds.service_name == "shop.cart"  # the svcpulse service is the EDS resource name
    assert source.ApiType.Name(source.api_type) == "REST" and list(source.cluster_names) == ["svcpulse"]
    assert source.refresh_delay.seconds >= 1  # Envoy refuses a REST source without one
    address = clusters["svcpulse"].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("api", 8000)  # the compose/k8s API service


def test_k8s_carries_the_same_bootstrap() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/70-envoy.yaml").read_text()) if d]
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_map["data"]["envoy.yaml"] == SAMPLE.read_text()


def test_compose_files_pass_docker_compose_config() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose (Debian) not installed: run scripts/bootstrap.sh")
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.override.yml"]):
        flags = [arg for name in files for arg in ("-f", name)]
        run = subprocess.run([compose, *flags, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
    envoy = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["envoy"]
    assert envoy["image"].startswith("envoyproxy/envoy:v") and "./deploy/envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in \
        envoy["volumes"]


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def test_compose_smoke_envoy_polls_svcpulse_eds() -> None:
    """Where Docker runs: the stack up to Envoy; the API answers EDS without a token and Envoy polls it."""
    if not _docker_engine():
        pytest.skip("no Docker engine on this machine (none can be installed here): the compose smoke check "
                    "runs where Docker exists")
    up = ["docker", "compose", "up", "-d", "--wait", "envoy"]
    subprocess.run(up, cwd=ROOT, check=True, timeout=900)
    try:
        request = {"node": {"id": "smoke"}, "resource_names": ["shop.cart"], "type_url": CLA_TYPE}
        curl = ["docker", "compose", "exec", "-T", "api", "python", "-c",
                "import json, sys, urllib.request; r = urllib.request.urlopen(urllib.request.Request("
                "'http://127.0.0.1:8000/v3/discovery:endpoints', data=sys.argv[1].encode(), "
                "headers={'Content-Type': 'application/json'})); print(r.status, r.read().decode())",
                json.dumps(request)]
        answer = subprocess.run(curl, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert answer.stdout.startswith("200"), answer.stdout + answer.stderr
        stats = ["docker", "compose", "exec", "-T", "envoy", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && "
                 "printf 'GET /stats?filter=cluster.shop_cart.update_ HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"]
        deadline = time.monotonic() + 60
        while "update_attempt: 0" in (text := subprocess.run(stats, cwd=ROOT, capture_output=True, text=True,
                                                              timeout=30).stdout) or not text:
            assert time.monotonic() < deadline, text
            time.sleep(2)
        assert "update_rejected: 0" in text, text
    finally:
        subprocess.run(["docker", "compose", "down", "-v"], cwd=ROOT, timeout=300)
