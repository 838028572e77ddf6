"""Workload names from cgroup paths, the way operators name things, with no API call.

A cgroup path says which systemd unit, container or Kubernetes pod a process runs in; operators think
in those names, not in `/kubepods.slice/kubepods-burstable.slice/...`. `workload_of(path)` reads the
part of the path that names something and returns a `Workload`:

  /system.slice/shop-frontend.service                       -> shop-frontend.service  (unit)
  /system.slice/docker-4f9a1c5e2b7d....scope                -> docker:4f9a1c5e2b7d    (container)
  /kubepods/burstable/pod7d5e.../4f9a1c5e2b7d...            -> pod:7d5e...            (pod)
  /lxc.payload.web01/system.slice/nginx.service             -> lxc:web01              (container)
  /                                                         -> host                   (host)

The outermost boundary wins: a pod anywhere in the path names the workload (a kind node is itself a
Docker container), then a container (the units systemd runs inside a system container are its
business), then the innermost systemd unit. Kubernetes pods carry their UID (cgroup v1 `pod<uid>`,
v2/systemd `pod<uid with _ for ->`), their QoS class and the container id, so a resolver with
Kubernetes API access (collectors/k8s.py) can turn the UID into namespace/owner. Unrecognised paths
keep their last element, so nothing is nameless. Pure: no file system, no clock; tested over real
path shapes in tests/unit/test_workload.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Kinds, as published in the optional contract field `workload_kind` (docs/contract.md). A systemd
# `.service` is a "unit" here, so it never reads as a svcpulse service.
HOST, UNIT, SCOPE, CONTAINER, POD, OTHER = "host", "unit", "scope", "container", "pod", "cgroup"
# Kinds a Kubernetes resolver gives a pod's owner (collectors/k8s.py); the name is "namespace/name".
OWNER_KINDS = ("deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob")

_ID = r"[0-9a-f]{64}"
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# A container scope or directory: runtime prefix (systemd driver) or a bare 64-hex id (cgroupfs driver).
_CONTAINER = re.compile(rf"^(?:(?P<runtime>docker|cri-containerd|crio|libpod|nerdctl)-)?(?P<id>{_ID})(?:\.scope)?$")
_CONMON = re.compile(rf"^(?:crio|libpod)-conmon-(?P<id>{_ID})(?:\.scope)?$")
_POD = re.compile(rf"(?:^|-)pod(?P<uid>{_UID})(?:\.slice)?$")
_QOS = re.compile(r"(?:^|-)kubepods-(?P<qos>burstable|besteffort)(?:\.slice)?$|^(?P<plain>burstable|besteffort)$")
# LXC 4+ names its cgroups lxc.payload.<name> (and lxc.monitor.<name>), LXC 3 and LXD lxc/<name>;
# machines registered with systemd-machined (nspawn containers, libvirt guests) are machine-<name>.scope.
_LXC = re.compile(r"^lxc\.(?:payload|monitor)\.(?P<name>.+)$")
_MACHINE = re.compile(r"^machine-(?P<name>.+)\.scope$")
_ESCAPED_DASH = "\\x2d"  # systemd escapes "-" inside a name as \x2d
_RUNTIME_NAMES = {"cri-containerd": "containerd", "nerdctl": "containerd", "libpod": "podman", None: ""}
# cgroupfs drivers put containers under a directory named after the runtime (or containerd's namespace)
_PARENT_RUNTIME = {"docker": "docker", "libpod_parent": "podman", "default": "containerd", "k8s.io": "containerd",
                   "moby": "containerd"}
SHORT_ID = 12  # docker ps shows the first 12 hex digits; so do we


@dataclass(frozen=True)
class Workload:
    """What a cgroup path names. `name` and `kind` go into events; the rest helps resolvers."""

    name: str
    kind: str
    runtime: str = ""  # docker, containerd, crio, podman, lxc, machine ("" when not a container)
    container_id: str = ""  # full 64-hex id
    pod_uid: str = ""  # Kubernetes pod UID with dashes, as the API spells it
    qos: str = ""  # Kubernetes QoS class: guaranteed, burstable, besteffort


def workload_of(path: str) -> Workload:
    """The workload a cgroup v1 or v2 path belongs to ("" = unknown, "/" = the host itself)."""
    parts = [p for p in path.strip().split("/") if p]
    if not path.strip():
        return Workload("", "")
    if not parts:
        return Workload(HOST, HOST)
    return _pod(parts) or _container(parts) or _unit(parts)


def _pod(parts: list[str]) -> Workload | None:
    """A Kubernetes pod (and container, when the path goes that deep); QoS from the parent level."""
    for index, part in enumerate(parts):
        match = _POD.search(part)
        if match is None:
            continue
        uid = match["uid"].replace("_", "-")
        qos = _qos(parts[:index])
        runtime, container_id = "", ""
        for inner in parts[index + 1:]:
            found = _CONTAINER.match(inner)
            if found is not None:
                runtime, container_id = _RUNTIME_NAMES.get(found["runtime"], found["runtime"]), found["id"]
        return Workload(f"pod:{uid}", POD, runtime, container_id, uid, qos)
    return None


def _qos(parents: list[str]) -> str:
    if not any("kubepods" in p for p in parents):
        return ""
    for part in parents:
        match = _QOS.search(part)
        if match is not None:
            return match["qos"] or match["plain"]
    return "guaranteed"  # guaranteed pods sit straight under kubepods, with no QoS level


def _container(parts: list[str]) -> Workload | None:
    """A container outside Kubernetes: docker, containerd (nerdctl), podman, CRI-O, LXC, machined."""
    for index, part in enumerate(parts):
        system = _system_container(parts, index)
        if system is not None:
            return system
        conmon = _CONMON.match(part)
        if conmon is not None:  # podman/CRI-O's monitor process belongs to the container it watches
            return _named_container("podman" if part.startswith("libpod") else "crio", conmon["id"])
        match = _CONTAINER.match(part)
        if match is None:
            continue
        runtime = _RUNTIME_NAMES.get(match["runtime"], match["runtime"])
        if not runtime and index > 0:
            runtime = _PARENT_RUNTIME.get(parts[index - 1], "")  # cgroupfs: /docker/<id>
        return _named_container(runtime or "container", match["id"])
    return None


def _system_container(parts: list[str], index: int) -> Workload | None:
    """LXC/LXD containers and systemd-machined machines, which run a whole system (and its units) inside."""
    part = parts[index]
    lxc = _LXC.match(part)
    if lxc is None and index > 0 and parts[index - 1] == "lxc":
        return Workload(f"lxc:{part}", CONTAINER, "lxc")
    if lxc is not None:
        return Workload(f"lxc:{lxc['name']}", CONTAINER, "lxc")
    machine = _MACHINE.match(part)
    if machine is not None and index > 0 and parts[index - 1] == "machine.slice":
        return Workload(f"machine:{machine['name'].replace(_ESCAPED_DASH, '-')}", CONTAINER, "machine")
    return None


def _named_container(runtime: str, container_id: str) -> Workload:
    return Workload(f"{runtime}:{container_id[:SHORT_ID]}", CONTAINER, runtime, container_id)


def _unit(parts: list[str]) -> Workload:
    """The innermost systemd service or scope; else the last path element as it is."""
    for part in reversed(parts):
        if part.endswith(".service"):
            return Workload(part, UNIT)
        if part.endswith(".scope"):
            return Workload(part, SCOPE)
    return Workload(parts[-1], OTHER)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
NAME_MAX = 255  # the contract's bound on `workload` (pipeline/events.py)


@lru_cache(maxsize=65_536)
def names_of(path: str) -> tuple[str, str]:
    """(workload, workload_kind) of a cgroup path, as the contract fields carry them: bounded, printable.
    Cached: a host has few cgroups and every event of one repeats its path."""
    found = workload_of(path)
    return _UNPRINTABLE.sub("", found.name)[:NAME_MAX], found.kind
