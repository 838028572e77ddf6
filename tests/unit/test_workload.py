"""Workload names from real cgroup path shapes (systemd, Docker, containerd, CRI-O, podman, LXC, machined,
Kubernetes QoS classes in cgroup v1 and v2 layouts). Each shape was taken from a real host layout."""

from __future__ import annotations

import pytest

from collectors.workload import CONTAINER, HOST, OTHER, POD, SCOPE, UNIT, Workload, workload_of

CID = "4f9a1c5e2b7d8a90c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192"
UID = "7d5e2c1a-3b4f-4a6e-9c8d-0123456789ab"
UID_ = UID.replace("-", "_")

SHAPES = [
    # (path, name, kind, runtime, qos)
    ("/system.slice/shop-frontend.service", "shop-frontend.service", UNIT, "", ""),
    ("/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", UNIT, "", ""),
    ("/app.slice/shop-cart.service", "shop-cart.service", UNIT, "", ""),
    ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", SCOPE, "", ""),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope",
     "app-gnome-firefox-4242.scope", SCOPE, "", ""),
    (f"/system.slice/docker-{CID}.scope", f"docker:{CID[:12]}", CONTAINER, "docker", ""),
    (f"/docker/{CID}", f"docker:{CID[:12]}", CONTAINER, "docker", ""),
    (f"/system.slice/nerdctl-{CID}.scope", f"containerd:{CID[:12]}", CONTAINER, "containerd", ""),
    (f"/default/{CID}", f"containerd:{CID[:12]}", CONTAINER, "containerd", ""),
    (f"/machine.slice/libpod-{CID}.scope", f"podman:{CID[:12]}", CONTAINER, "podman", ""),
    (f"/machine.slice/libpod-conmon-{CID}.scope", f"podman:{CID[:12]}", CONTAINER, "podman", ""),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope",
     f"podman:{CID[:12]}", CONTAINER, "podman", ""),
    (f"/libpod_parent/libpod-{CID}", f"podman:{CID[:12]}", CONTAINER, "podman", ""),
    ("/lxc.payload.web01", "lxc:web01", CONTAINER, "lxc", ""),
    # a system container runs its own units: the container is the workload, not nginx.service inside it
    ("/lxc.payload.web01/system.slice/nginx.service", "lxc:web01", CONTAINER, "lxc", ""),
    ("/lxc.monitor.web01", "lxc:web01", CONTAINER, "lxc", ""),
    ("/lxc/web01/system.slice/cron.service", "lxc:web01", CONTAINER, "lxc", ""),  # LXC 3 / LXD on cgroup v1
    ("/machine.slice/machine-build\\x2dbox.scope/payload/system.slice/nginx.service", "machine:build-box", CONTAINER,
     "machine", ""),  # systemd-nspawn
    # rootless Docker under the user's systemd, and a podman pod's infra-and-app layout
    (f"/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{CID}.scope", f"docker:{CID[:12]}", CONTAINER,
     "docker", ""),
    (f"/machine.slice/machine-libpod_pod_{CID[::-1]}.slice/libpod-{CID}.scope", f"podman:{CID[:12]}", CONTAINER,
     "podman", ""),
    (f"/ecs/0d6e7ac2bf394ca0a6f1b2b6d2d1f7c1/{CID}", f"container:{CID[:12]}", CONTAINER, "container", ""),  # AWS ECS
    (f"/system.slice/containerd.service/moby/{CID}", f"containerd:{CID[:12]}", CONTAINER, "containerd", ""),
    # Kubernetes, cgroup v1 / cgroupfs driver
    (f"/kubepods/burstable/pod{UID}/{CID}", f"pod:{UID}", POD, "", "burstable"),
    (f"/kubepods/besteffort/pod{UID}/{CID}", f"pod:{UID}", POD, "", "besteffort"),
    (f"/kubepods/pod{UID}/{CID}", f"pod:{UID}", POD, "", "guaranteed"),
    (f"/kubepods/burstable/pod{UID}", f"pod:{UID}", POD, "", "burstable"),
    # Kubernetes, cgroup v2 / systemd driver: containerd, CRI-O, guaranteed, kind's kubelet.slice
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
     f"pod:{UID}", POD, "containerd", "burstable"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope",
     f"pod:{UID}", POD, "crio", "besteffort"),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope", f"pod:{UID}", POD, "containerd",
     "guaranteed"),
    (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
     f"kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope", f"pod:{UID}", POD, "containerd",
     "burstable"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{CID}.scope",
     f"pod:{UID}", POD, "docker", "burstable"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{CID}.scope",
     f"pod:{UID}", POD, "", "burstable"),  # CRI-O's monitor process belongs to the pod
    # a kind (Kubernetes in Docker) node: the pod inside the node container names the workload
    (f"/system.slice/docker-{CID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID[::-1]}.scope", f"pod:{UID}", POD, "containerd",
     "besteffort"),
    ("/", HOST, HOST, "", ""),
    ("/init.scope", "init.scope", SCOPE, "", ""),
    ("/custom/batch-jobs", "batch-jobs", OTHER, "", ""),
]


@pytest.mark.parametrize(("path", "name", "kind", "runtime", "qos"), SHAPES, ids=[s[0][-60:] for s in SHAPES])
def test_real_cgroup_path_shapes_name_their_workload(path: str, name: str, kind: str, runtime: str, qos: str) -> None:
    found = workload_of(path)
    assert (found.name, found.kind, found.qos) == (name, kind, qos)
    if kind in (CONTAINER, POD) and runtime:
        assert found.runtime == runtime


def test_pods_carry_the_uid_with_dashes_and_the_full_container_id() -> None:
    path = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope"
    assert workload_of(path) == Workload(f"pod:{UID}", POD, "containerd", CID, UID, "burstable")


def test_an_empty_path_is_unknown_not_the_host() -> None:
    assert workload_of("") == Workload("", "")
    assert workload_of("/").kind == HOST


def test_ids_that_are_not_64_hex_digits_are_not_containers() -> None:
    assert workload_of("/system.slice/docker-notanid.scope").kind == SCOPE
    assert workload_of("/docker/abc123").kind == OTHER
