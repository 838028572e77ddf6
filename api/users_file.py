"""Reload the users file when it changes, without a restart (checked every SVCPULSE_USERS_RELOAD_S).

A change is a new modification time, size or inode, so editing in place, `mv`-ing a new file over it
and Kubernetes' atomic Secret/ConfigMap updates (a symlink swap) are all seen. A file that no longer
parses is refused with a log line and the users loaded before stay in force: a typo must not lock
every operator out. Roles assigned through the API carry over, within what the new file allows; a
user removed from the file is refused at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from api.auth import Directory, load_users

log = logging.getLogger("svcpulse.users")
Signature = tuple[int, int, int] | None


def signature(path: str) -> Signature:
    """(mtime ns, size, inode) of the file the path leads to now; None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def reloaded(path: str, current: Directory) -> Directory:
    """A directory of the file's users, keeping the roles assigned through the API; raises on a bad file."""
    return Directory(load_users(path), current.held())


async def watch_users(state: Any, path: str, every_s: float) -> None:
    """Swap `state.directory` for a reloaded one whenever the file at `path` changes; runs until cancelled."""
    seen = signature(path)
    while True:
        await asyncio.sleep(every_s)
        now = signature(path)
        if now == seen or now is None:
            continue
        seen = now
        try:
            state.directory = await asyncio.to_thread(reloaded, path, state.directory)
        except (OSError, ValueError) as err:  # tomllib/json errors are ValueErrors
            log.error("users file %s not reloaded, keeping the %d users loaded before: %s", path,
                      len(state.directory.users), err)
            continue
        log.info("users file %s reloaded: %d users", path, len(state.directory.users))
