"""docker-compose.yml, its override, the Dockerfile and deploy/k8s/ checked as data (no Docker engine or
cluster here): services, images, commands (parsed by the real CLI parser), env (real settings),
mounts, privileges, probes, Kompose-safe keys, and the Kubernetes manifests mirroring the compose file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings
from svcpulse.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OVERRIDE = yaml.safe_load((ROOT / "docker-compose.override.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
K8S = [doc for path in sorted((ROOT / "deploy/k8s").glob("*.yaml"))
       for doc in yaml.safe_load_all(path.read_text()) if doc]
SETTINGS_ENV = {f"SVCPULSE_{name.upper()}" for name in Settings.model_fields}
REQUIRED_ENV = {"SVCPULSE_KAFKA_BOOTSTRAP", "SVCPULSE_STORE_URL"}
SVCPULSE_IMAGES = ("svcpulse/svcpulse:", "svcpulse/svcpulse-collector:")
ONE_SHOT = {"kafka-topics", "migrate"}
NO_PROBE = {"collector-load": "serves nothing to probe"}
EBPF_MOUNTS = {"/sys/kernel/btf", "/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/cgroup", "/lib/modules",
               "/usr/src"}
# Kompose's compose loader lists these service keys as unsupported (warned and ignored), plus what it
# cannot map (build: only with --build; unless-stopped: rewritten with a warning). docs/deploy.md.
KOMPOSE_UNSUPPORTED = {"build", "cgroup_parent", "cpuset", "cpu_shares", "devices", "depends_on", "dns",
                       "dns_search", "env_file", "external_links", "extra_hosts", "ipc", "logging", "mac_address",
                       "memswap_limit", "network_mode", "security_opt", "shm_size", "stop_signal", "volume_driver",
                       "uts", "read_only", "ulimits", "net", "sysctls", "links", "userns_mode"}
KOMPOSE_CONVERTED = {"image", "command", "entrypoint", "environment", "ports", "volumes", "restart", "healthcheck",
                     "privileged", "pid", "deploy", "stop_grace_period"}
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def resolve(value: str) -> str:
    """A compose value as `docker compose` sees it with nothing exported: ${VAR:-default} -> default."""
    return _DEFAULTED.sub(lambda m: m[2], value).replace("$$", "$")


def svcpulse_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in SERVICES.items() if s["image"].startswith(SVCPULSE_IMAGES)}


def parse_command(argv: list[str]) -> Any:
    return build_parser().parse_args([resolve(arg) for arg in argv])


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """container path -> (source, read-only) of a compose service."""
    found = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        found[target] = (source, mode == ["ro"])
    return found


def test_the_stack_has_every_part_and_current_images() -> None:
    assert set(SERVICES) == {"kafka", "kafka-topics", "clickhouse", "grafana", "migrate", "loader", "api",
                             "collector-tcp", "collector-load", "otlp"}
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    assert all(not s["image"].endswith(":latest") and ":" in s["image"] for s in SERVICES.values())


def test_topics_are_created_with_partitions_by_a_one_shot_job() -> None:
    script = SERVICES["kafka-topics"]["command"][0]
    assert "--partitions 12" in script and "--create --if-not-exists" in script
    for topic in ("svcpulse.tcp", "svcpulse.rpc", "svcpulse.load", "svcpulse.dlq"):
        assert topic in script


def test_only_keys_kompose_converts_and_no_ordering_or_build_in_the_base_file() -> None:
    assert set(COMPOSE) <= {"services", "volumes"} | {k for k in COMPOSE if k.startswith("x-")}
    for name, service in SERVICES.items():
        assert set(service) <= KOMPOSE_CONVERTED, f"{name}: {set(service) - KOMPOSE_CONVERTED}"
        assert not set(service) & KOMPOSE_UNSUPPORTED
        assert service["restart"] == ("on-failure" if name in ONE_SHOT else "always")


def test_the_override_only_adds_ordering_and_builds_that_docker_compose_can_satisfy() -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE))
    for name, extra in OVERRIDE["services"].items():
        assert name in SERVICES and set(extra) <= {"build", "depends_on"}
        if "build" in extra:
            assert extra["build"]["target"] in stages
            assert SERVICES[name]["image"].startswith(SVCPULSE_IMAGES)
        for dependency, rule in extra.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency
            else:
                assert rule["condition"] == "service_completed_successfully" and dependency in ONE_SHOT


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOT or name in NO_PROBE:
            continue
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3, name
        assert {"interval", "timeout", "start_period"} <= set(check), name


def test_every_svcpulse_command_is_a_real_subcommand() -> None:
    expected = {"migrate": "migrate", "loader": "load", "api": "api", "collector-tcp": "collect",
                "collector-load": "collect", "otlp": "otlp"}
    for name, service in svcpulse_services().items():
        args = parse_command(service["command"])
        assert args.command == expected[name], name
    assert parse_command(SERVICES["api"]["command"]).host == "0.0.0.0"
    assert parse_command(SERVICES["collector-tcp"]["command"]).collector == "tcp"
    assert parse_command(SERVICES["collector-load"]["command"]).bootstrap_servers == "kafka:9092"


def test_svcpulse_env_is_real_settings_and_names_the_compose_services() -> None:
    for name, service in svcpulse_services().items():
        env = {key: resolve(str(value)) for key, value in service.get("environment", {}).items()}
        assert set(env) <= SETTINGS_ENV, f"{name}: not settings: {set(env) - SETTINGS_ENV}"
        if name in ("migrate", "loader", "api"):
            assert set(env) >= REQUIRED_ENV, name
            assert env["SVCPULSE_STORE_URL"].startswith("clickhouse://svcpulse:svcpulse@clickhouse:9000/")
        if "SVCPULSE_KAFKA_BOOTSTRAP" in env:
            assert env["SVCPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    Settings(**{k[len("SVCPULSE_"):].lower(): resolve(str(v))
                for k, v in SERVICES["api"]["environment"].items()})  # the values validate too
    kafka = SERVICES["kafka"]["environment"]
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"


def test_the_loader_scales_in_one_group_and_stops_gracefully() -> None:
    loader = SERVICES["loader"]
    assert loader["deploy"]["replicas"] >= 2 and loader["environment"]["SVCPULSE_GROUP_ID"]
    assert loader["stop_grace_period"] == "30s"


def test_the_api_is_published_and_probed_on_healthz() -> None:
    api = SERVICES["api"]
    assert api["ports"] == ["8000:8000"] and "/healthz" in " ".join(api["healthcheck"]["test"])
    source, read_only = mounts(api)[resolve(api["environment"]["SVCPULSE_USERS_FILE"])]
    assert read_only and (ROOT / source).is_file()


def test_grafana_gets_the_plugins_and_the_provisioning_with_its_placeholders_set() -> None:
    grafana = SERVICES["grafana"]
    env = grafana["environment"]
    assert set(env["GF_INSTALL_PLUGINS"].split(",")) == {"yesoreyeram-infinity-datasource",
                                                          "grafana-clickhouse-datasource"}
    datasources = (ROOT / "dashboards/provisioning/datasources/svcpulse.yaml").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", datasources)) <= set(env)
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/svcpulse.yaml").read_text())
    mounted = mounts(grafana)
    assert mounted["/etc/grafana/provisioning"] == ("./dashboards/provisioning", True)
    assert mounted[provider["providers"][0]["options"]["path"]] == ("./dashboards", True)
    assert env["SVCPULSE_API_URL"] == "http://api:8000" and env["SVCPULSE_CLICKHOUSE_HOST"] == "clickhouse"


def test_the_tcp_collector_is_privileged_in_the_host_pid_namespace_with_read_only_kernel_mounts() -> None:
    collector = SERVICES["collector-tcp"]
    assert collector["privileged"] is True and collector["pid"] == "host"
    mounted = mounts(collector)
    for path in EBPF_MOUNTS:
        assert mounted[path] == (path, True), path
    spool = parse_command(collector["command"]).spool_dir
    assert spool in mounted and not mounted[spool][1]  # the spool is the one writable mount


def test_named_volumes_are_declared_and_bind_sources_exist() -> None:
    for service in SERVICES.values():
        for source, _ in mounts(service).values():
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
            elif not source.startswith("/"):
                assert source in COMPOSE["volumes"], source


def test_the_dockerfile_builds_a_non_root_runtime_and_a_collector_with_debian_bcc() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", dockerfile, flags=re.MULTILINE)
    assert ("python:3.11-slim-bookworm", "runtime") in stages and ("runtime", "collector") in stages
    runtime = dockerfile.split("AS runtime")[1].split("AS collector")[0]
    assert "USER 10001:10001" in runtime and 'ENTRYPOINT ["svcpulse"]' in runtime
    collector = dockerfile.split("AS collector")[1]
    assert "python3-bpfcc" in collector and "/usr/lib/python3/dist-packages/bcc" in collector


def k8s(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(kind: str, name: str) -> dict[str, Any]:
    spec = k8s(kind, name)["spec"]
    pod = spec["jobTemplate"]["spec"]["template"] if kind == "CronJob" else spec["template"]
    return pod["spec"]["containers"][0]


def container_env(c: dict[str, Any]) -> set[str]:
    config = k8s("ConfigMap", "svcpulse-env")["data"]
    from_maps = {key for ref in c.get("envFrom", []) for key in config if ref["configMapRef"]["name"] == "svcpulse-env"}
    return from_maps | {item["name"] for item in c.get("env", [])}


SVCPULSE_WORKLOADS = {  # workload -> the compose service it mirrors
    ("Job", "svcpulse-migrate"): "migrate", ("Deployment", "svcpulse-loader"): "loader",
    ("Deployment", "svcpulse-api"): "api", ("DaemonSet", "svcpulse-collector-tcp"): "collector-tcp",
    ("DaemonSet", "svcpulse-collector-load"): "collector-load", ("CronJob", "svcpulse-retention"): None,
    ("Deployment", "svcpulse-otlp"): "otlp"}


@pytest.mark.parametrize(("kind", "name"), list(SVCPULSE_WORKLOADS))
def test_k8s_workloads_run_real_commands_with_real_settings(kind: str, name: str) -> None:
    c = container(kind, name)
    args = build_parser().parse_args([a.replace("$(NODE_NAME)", "node-1") for a in c["args"]])
    compose_name = SVCPULSE_WORKLOADS[(kind, name)]
    if compose_name:
        assert args.command == parse_command(SERVICES[compose_name]["command"]).command
        assert c["image"] == SERVICES[compose_name]["image"]
    env = {key for key in container_env(c) if key.startswith("SVCPULSE_")}
    assert env <= SETTINGS_ENV
    if args.command in ("migrate", "load", "api", "retention"):
        assert env >= REQUIRED_ENV


def test_k8s_has_the_same_stack_as_compose() -> None:
    images = {c["image"] for d in K8S if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {s["image"] for s in SERVICES.values()}
    assert k8s("Deployment", "svcpulse-loader")["spec"]["replicas"] >= 2
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in K8S if d["kind"] == "Service"}
    assert services["kafka"] >= {9092} and services["clickhouse"] >= {9000} and services["api"] == {8000}
    assert services["otlp"] == {4317, 4318}
    assert k8s("ConfigMap", "svcpulse-env")["data"]["SVCPULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert all(d["metadata"].get("namespace", "svcpulse") == "svcpulse" for d in K8S)


def test_the_k8s_collector_mirrors_the_compose_collector() -> None:
    daemonset = k8s("DaemonSet", "svcpulse-collector-tcp")["spec"]["template"]["spec"]
    c = daemonset["containers"][0]
    assert daemonset["hostPID"] is True and c["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in daemonset["volumes"] if "hostPath" in v}
    mounted = {m["mountPath"]: (host_paths.get(m["name"]), m.get("readOnly", False)) for m in c["volumeMounts"]}
    assert {path: ro for path, (_, ro) in mounted.items()} == {
        path: ro for path, (_, ro) in mounts(SERVICES["collector-tcp"]).items()}
    assert all(mounted[path] == (path, True) for path in EBPF_MOUNTS)
    compose_args = [resolve(a) for a in SERVICES["collector-tcp"]["command"]]
    k8s_args = c["args"]
    assert k8s_args[:2] == compose_args[:2] and k8s_args[k8s_args.index("--host") + 1] == "$(NODE_NAME)"


def test_kompose_converts_the_compose_file_without_warnings(tmp_path: Path) -> None:
    kompose = shutil.which("kompose")
    if not kompose:
        pytest.skip("kompose is not installable here (not in Debian 12, PyPI or npm); the key whitelist above "
                    "stands in for it")
    run = subprocess.run(shlex.split(f"{kompose} convert -f docker-compose.yml -o {tmp_path}"), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "WARN" not in run.stderr + run.stdout, run.stderr


def test_the_otlp_receiver_is_published_probed_and_spools_to_a_volume() -> None:
    otlp = SERVICES["otlp"]
    args = parse_command(otlp["command"])
    assert args.host == "0.0.0.0" and otlp["ports"] == ["4317:4317", "4318:4318"]
    assert "4318/healthz" in " ".join(otlp["healthcheck"]["test"])
    mounted = mounts(otlp)
    assert mounted[resolve(otlp["environment"]["SVCPULSE_USERS_FILE"])][1]  # read-only
    spool = mounted[otlp["environment"]["SVCPULSE_OTLP_SPOOL_DIR"]]
    assert spool[0] in COMPOSE["volumes"] and not spool[1]
    c = container("Deployment", "svcpulse-otlp")
    assert {p["containerPort"] for p in c["ports"]} == {4317, 4318}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 4318}


def _offline_tool(name: str) -> str:
    """A validator that needs no engine or cluster: Debian's docker-compose, the venv's kubernetes-validate."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{name} missing: run scripts/bootstrap.sh")
    return str(path)


def test_docker_compose_accepts_the_compose_files() -> None:
    compose = _offline_tool("docker-compose")
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.override.yml"]):
        run = subprocess.run([compose, *(a for f in files for a in ("-f", f)), "config", "-q"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr


def test_kubernetes_schemas_accept_the_manifests() -> None:
    validate = _offline_tool("kubernetes-validate")
    run = subprocess.run([validate, "--strict", *sorted(str(p) for p in (ROOT / "deploy/k8s").glob("*.yaml"))],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
