"""Who may write: bearer tokens, users, and the roles they may hold (docs/weights-api.md, "Roles").

Roles are ordered viewer < operator < admin; an endpoint needs a minimum role. `ingest` stands
beside them: it lets a token send spans to the OTLP receiver (docs/otlp.md) and read nothing. Users come from a
file (settings.users_file, JSON or TOML):

    {"users": [{"name": "alice", "roles": ["viewer", "operator", "admin"], "role": "operator",
                "token_sha256": "<sha256 hex of alice's token>"}]}

`roles` is what the user MAY hold, `role` what they hold at start (default: the first listed).
An admin may change the held role, but only to one on the user's list (SELinux's user -> role
model): the file bounds what the API can grant. Tokens are never stored, only their sha256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

ROLES = ("viewer", "operator", "admin")
# Beside the ladder: may send telemetry to `svcpulse otlp` and nothing else (it reads no API endpoint).
INGEST = "ingest"
_RANK = {INGEST: -1, **{role: rank for rank, role in enumerate(ROLES)}}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    may_hold: tuple[str, ...]
    role: str  # held at start
    token_sha256: str


@dataclass(frozen=True)
class Principal:
    """Who is calling and the role they hold now."""

    name: str
    role: str


class RoleRefused(ValueError):
    """A role assignment the user's list does not allow; the message says which roles it does."""


class LastAdmin(ValueError):
    """A role change that would leave nobody holding admin (then nobody could manage roles)."""


def parse_users(doc: Mapping[str, Any]) -> dict[str, User]:
    """Validate a users document; a ValueError names the user and what is wrong."""
    users: dict[str, User] = {}
    for entry in doc.get("users", []):
        name = str(entry.get("name", ""))
        may_hold = tuple(entry.get("roles", ()))
        digest = str(entry.get("token_sha256", "")).lower()
        unknown = [r for r in may_hold if r not in _RANK]
        if not name or not may_hold or unknown:
            raise ValueError(f"user {name!r}: needs a name and roles from {(*ROLES, INGEST)}; unknown roles {unknown}")
        role = entry.get("role", may_hold[0])
        if role not in may_hold:
            raise ValueError(f"user {name!r}: role {role!r} is not among the roles it may hold {list(may_hold)}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"user {name!r}: token_sha256 must be 64 hex digits (sha256 of the token)")
        users[name] = User(name, may_hold, role, digest)
    return users


def load_users(path: str) -> dict[str, User]:
    """Users from a .json or .toml file; "" (not configured) means no users, so no writes."""
    if not path:
        return {}
    text = Path(path).read_text()
    doc = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    return parse_users(doc)


class Directory:
    """Users by token hash, and the role each holds now (file default, or an admin's assignment)."""

    def __init__(self, users: Mapping[str, User], held: Mapping[str, str] | None = None) -> None:
        self.users = dict(users)
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()  # role changes come from FastAPI's thread pool
        for name, role in (held or {}).items():
            # An assignment stored earlier stops counting once the file no longer allows that role.
            if name in self.users and role in self.users[name].may_hold:
                self._held[name] = role

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        for user in self.users.values():
            if hmac.compare_digest(user.token_sha256, digest):
                return Principal(user.name, self.role_of(user.name))
        return None

    def held(self) -> dict[str, str]:
        """Roles assigned through the API (carried over when the users file is reloaded)."""
        with self._lock:
            return dict(self._held)

    def role_of(self, name: str) -> str:
        return self._held.get(name, self.users[name].role)

    def check_assignment(self, name: str, role: str) -> None:
        user = self.users.get(name)
        if user is None:
            raise KeyError(f"no user {name!r} in the users file")
        if role not in user.may_hold:
            raise RoleRefused(f"user {name!r} may not hold role {role!r}; the users file allows {list(user.may_hold)}")

    def assign(self, name: str, role: str) -> str:
        """Give `name` the role; returns the role held before. Refuses to demote the last admin."""
        with self._lock:
            self.check_assignment(name, role)
            before = self.role_of(name)
            admins = [user for user in self.users if self.role_of(user) == "admin"]
            if role != "admin" and admins == [name]:
                raise LastAdmin(f"user {name!r} is the last admin: give another user the admin role first, "
                                "or nobody could manage roles any more")
            self._held[name] = role
            return before


def _deny(status: int, message: str) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status_code=status, detail=message, headers=headers)


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme in any case, spaces around it), else None."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _caller(request: Request, minimum: str) -> Principal:
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise _deny(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    principal = request.app.state.directory.authenticate(token)
    if principal is None:
        raise _deny(401, "invalid token")
    if _RANK[principal.role] < _RANK[minimum]:
        raise _deny(403, f"role {minimum!r} or higher required; user {principal.name!r} holds {principal.role!r}")
    return principal


def require(minimum: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller, who must hold `minimum` or a higher role."""

    # async: FastAPI would run a plain function in its thread pool, a hop the hot feed path can skip.
    async def dependency(request: Request) -> Principal:
        return _caller(request, minimum)

    return dependency


async def reader(request: Request) -> Principal:
    """Reads need a viewer, unless the settings open them (feed_open) to anyone."""
    if request.app.state.settings.feed_open:
        return Principal("anonymous", "viewer")
    return _caller(request, "viewer")


Reader = Annotated[Principal, Depends(reader)]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def write_demo_users(path: Path) -> str:
    """A users file with one 'demo' user (may hold viewer, operator, admin; holds admin); its token."""
    token = secrets.token_urlsafe(24)
    user = {"name": "demo", "roles": list(ROLES), "role": "admin", "token_sha256": hash_token(token)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"users": [user]}, indent=2) + "\n")
    path.chmod(0o600)
    return token
