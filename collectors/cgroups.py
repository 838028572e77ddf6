"""cgroup v2 id -> path, for the ids bpf_get_current_cgroup_id() reports.

The id is the inode number of the cgroup's directory on the cgroup2 filesystem (kernfs), so a walk
of the cgroup2 mount maps every id to its path. The mount is found in /proc/self/mountinfo, which
covers unified hosts (/sys/fs/cgroup) and hybrid ones (/sys/fs/cgroup/unified). Paths are relative
to the cgroup2 root, as in /proc/<pid>/cgroup ("/" is the root cgroup).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


class CgroupError(RuntimeError):
    """No cgroup2 mount, or a path that is not a cgroup2 directory."""


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...)
    return field.encode().decode("unicode_escape")


def find_cgroup2_mount(mountinfo: str | None = None) -> Path:
    """Mount point of the cgroup2 filesystem, from mountinfo text (default: this process's)."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if sep and tail.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return Path(_unescape(fields[4]))
    raise CgroupError("no cgroup2 filesystem mounted (see /proc/self/mountinfo)")


def walk(root: Path) -> dict[int, str]:
    """Inode -> path of every cgroup under root (scandir's d_ino avoids a stat per directory)."""
    found = {os.stat(root).st_ino: "/"}
    pending = [(str(root), "")]
    while pending:
        directory, rel = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        path = f"{rel}/{entry.name}"
                        found[entry.inode()] = path
                        pending.append((entry.path, path))
        except OSError:
            continue  # removed while walking: its ids are gone anyway
    return found


class CgroupPaths:
    """Cached id -> path; an unknown id triggers a re-walk of the mount.

    Short-lived cgroups (a CI job, a container run) appear after start-up, so a miss must re-walk at
    once; but the cgroup of a connection that outlived it is already gone, so an id that was just
    looked for in vain is not looked for again for `retry_s`, and walks are `min_interval_s` apart.
    """

    def __init__(self, root: Path | None = None, retry_s: float = 10.0, min_interval_s: float = 0.05) -> None:
        self.root = root or find_cgroup2_mount()
        self.retry_s = retry_s
        self.min_interval_s = min_interval_s
        self._missed: dict[int, float] = {}
        self._rewalk(time.monotonic())

    def _rewalk(self, now: float) -> None:
        self._paths = walk(self.root)
        self._walked_at = now
        self._missed = {i: t for i, t in self._missed.items() if now - t < self.retry_s}

    def path(self, cgroup_id: int) -> str:
        """The cgroup's path, or "" if it is not (or no longer) known."""
        found = self._paths.get(cgroup_id)
        if found is not None:
            return found
        now = time.monotonic()
        if now - self._missed.get(cgroup_id, -self.retry_s) < self.retry_s:
            return ""
        if now - self._walked_at < self.min_interval_s:
            return ""  # not marked missed: the next event of this id tries again
        self._rewalk(now)
        found = self._paths.get(cgroup_id)
        if found is None:
            self._missed[cgroup_id] = now
            return ""
        return found

    def id_of(self, path: str) -> int:
        """cgroup id of a path relative to the root ("/system.slice") or an absolute one."""
        full = Path(path) if path.startswith(str(self.root)) else self.root / path.lstrip("/")
        if not full.is_dir() or not (full / "cgroup.procs").exists():
            raise CgroupError(f"{path} is not a cgroup2 directory under {self.root}")
        return os.stat(full).st_ino

    def subtree_ids(self, path: str) -> list[int]:
        """Ids of a cgroup and every cgroup below it, as they exist now."""
        top = self.id_of(path)
        self._rewalk(time.monotonic())
        prefix = self._paths.get(top, "")
        return [i for i, p in self._paths.items() if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
