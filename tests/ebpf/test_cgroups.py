"""collectors/cgroups.py on a directory tree standing in for the cgroup2 mount (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collectors.cgroups import CgroupError, CgroupPaths, find_cgroup2_mount, walk

MOUNTINFO = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified\\040x rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd
"""


def make_cgroup(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "cgroup.procs").touch()  # the marker id_of() checks for
    return path


def test_finds_the_cgroup2_mount_in_mountinfo() -> None:
    assert find_cgroup2_mount(MOUNTINFO) == Path("/sys/fs/cgroup/unified x")
    with pytest.raises(CgroupError, match="no cgroup2"):
        find_cgroup2_mount("27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n")


def test_this_machine_has_a_cgroup2_mount() -> None:
    mount = find_cgroup2_mount()
    assert (mount / "cgroup.procs").exists()
    assert walk(mount)[os.stat(mount).st_ino] == "/"


def test_walk_maps_directory_inodes_to_paths(tmp_path: Path) -> None:
    app = make_cgroup(tmp_path / "system.slice" / "app.service")
    (tmp_path / "cgroup.procs").touch()
    paths = walk(tmp_path)
    assert paths[os.stat(app).st_ino] == "/system.slice/app.service"
    assert paths[os.stat(tmp_path / "system.slice").st_ino] == "/system.slice"
    assert paths[os.stat(tmp_path).st_ino] == "/"
    assert len(paths) == 3  # files (cgroup.procs) are not cgroups


def test_a_miss_rewalks_once_then_waits(tmp_path: Path) -> None:
    cgroups = CgroupPaths(root=tmp_path, retry_s=3600, min_interval_s=0)
    late = make_cgroup(tmp_path / "late")  # created after start-up, like a new container
    assert cgroups.path(os.stat(late).st_ino) == "/late"
    gone = 987_654_321
    assert cgroups.path(gone) == ""
    walked_at = cgroups._walked_at
    assert cgroups.path(gone) == ""  # a recent miss does not walk again
    assert cgroups._walked_at == walked_at


def test_walks_are_rate_limited(tmp_path: Path) -> None:
    cgroups = CgroupPaths(root=tmp_path, retry_s=0, min_interval_s=3600)
    late = make_cgroup(tmp_path / "late")
    assert cgroups.path(os.stat(late).st_ino) == ""


def test_ids_of_a_subtree(tmp_path: Path) -> None:
    (tmp_path / "cgroup.procs").touch()
    top = make_cgroup(tmp_path / "jobs")
    child = make_cgroup(top / "job-1")
    make_cgroup(tmp_path / "jobsother")
    cgroups = CgroupPaths(root=tmp_path)
    assert cgroups.id_of("/jobs") == cgroups.id_of(str(top)) == os.stat(top).st_ino
    assert sorted(cgroups.subtree_ids("/jobs")) == sorted([os.stat(top).st_ino, os.stat(child).st_ino])
    assert len(cgroups.subtree_ids("/")) == 4
    with pytest.raises(CgroupError, match="not a cgroup2 directory"):
        cgroups.id_of("/missing")
