"""Workload names from cgroup paths, the way operators name things, with no API call.

A cgroup path says which systemd unit, container or Kubernetes pod a process runs in; operators think
in those names, not in `/kubepods.slice/kubepods-burstable.slice/...`. `workload_of(path)` reads the
innermost part of the path that names something and returns a `Workload`:

  /system.slice/shop-frontend.service                       -> shop-frontend.service  (service)
  /system.slice/docker-4f9a1c5e2b7d....scope                -> docker:4f9a1c5e2b7d    (container)
  /kubepods/burstable/pod7d5e.../4f9a1c5e2b7d...            -> pod:7d5e...            (pod)
  /                                                         -> host                   (host)

Kubernetes pods carry their UID (cgroup v1 `pod<uid>`, v2/systemd `pod<uid with _ for ->`), their QoS
class and the container id, so a resolver with Kubernetes API access can later turn
the UID into namespace/owner. Unrecognised paths keep their last element, so nothing is nameless.
Pure: no file system, no clock; tested over real path shapes in tests/unit/test_workload.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Kinds, as published in the optional contract fields `workload_kind` (docs/contract.md).
HOST, SERVICE, SCOPE, CONTAINER, POD, OTHER = "host", "service", "scope", "container", "pod", "cgroup"

_ID = r"[0-9a-f]{64}"
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# A container scope or directory: runtime prefix (systemd driver) or a bare 64-hex id (cgroupfs driver).
_CONTAINER = re.compile(rf"^(?:(?P<runtime>docker|cri-containerd|crio|libpod|nerdctl)-)?(?P<id>{_ID})(?:\.scope)?$")
_CONMON = re.compile(rf"^(?:crio|libpod)-conmon-(?P<id>{_ID})(?:\.scope)?$")
_POD = re.compile(rf"(?:^|-)pod(?P<uid>{_UID})(?:\.slice)?$")
_QOS = re.compile(r"(?:^|-)kubepods-(?P<qos>burstable|besteffort)(?:\.slice)?$|^(?P<plain>burstable|besteffort)$")
_RUNTIME_NAMES = {"cri-containerd": "containerd", "nerdctl": "containerd", "libpod": "podman", None: ""}
# cgroupfs drivers put containers under a directory named after the runtime (or containerd's namespace)
_PARENT_RUNTIME = {"docker": "docker", "libpod_parent": "podman", "default": "containerd", "k8s.io": "containerd"}
SHORT_ID = 12  # docker ps shows the first 12 hex digits; so do we


@dataclass(frozen=True)
class Workload:
    """What a cgroup path names. `name` and `kind` go into events; the rest helps resolvers."""

    name: str
    kind: str
    runtime: str = ""  # docker, containerd, crio, podman, lxc ("" when not a container)
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
    pod = _pod(parts)
    if pod is not None:
        return pod
    container = _container(parts)
    if container is not None:
        return container
    return _unit(parts)


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
    """A container outside Kubernetes: docker, containerd (nerdctl), podman, CRI-O, LXC."""
    last = parts[-1]
    conmon = _CONMON.match(last)
    if conmon is not None:  # podman/CRI-O's monitor process belongs to the container it watches
        return _named_container("podman" if last.startswith("libpod") else "crio", conmon["id"])
    for index in range(len(parts) - 1, -1, -1):
        match = _CONTAINER.match(parts[index])
        if match is None:
            continue
        runtime = _RUNTIME_NAMES.get(match["runtime"], match["runtime"])
        if not runtime and index > 0:
            runtime = _PARENT_RUNTIME.get(parts[index - 1], "")  # cgroupfs: /docker/<id>
        return _named_container(runtime or "container", match["id"])
    if last.startswith("lxc.payload."):
        return Workload(f"lxc:{last.removeprefix('lxc.payload.')}", CONTAINER, "lxc")
    return None


def _named_container(runtime: str, container_id: str) -> Workload:
    return Workload(f"{runtime}:{container_id[:SHORT_ID]}", CONTAINER, runtime, container_id)


def _unit(parts: list[str]) -> Workload:
    """The innermost systemd service or scope; else the last path element as it is."""
    for part in reversed(parts):
        if part.endswith(".service"):
            return Workload(part, SERVICE)
        if part.endswith(".scope"):
            return Workload(part, SCOPE)
    return Workload(parts[-1], OTHER)
