"""Who may send spans and how fast: bearer tokens of users allowed the `ingest` role, a span budget each.

The users file is the API's (settings.users_file, api/auth.py): a user whose `roles` list holds
"ingest" may send; no other role may (a viewer token leaking from a dashboard must not let anyone
steer routing weights). Each such user gets a token bucket of `rate_spans_per_s` spans per second
with a burst of two seconds' worth (at least one full request): a request over the budget is refused
with 429 / Retry-After, which OTLP exporters retry. With `open` set, anyone may send, unmetered.
"""

from __future__ import annotations

import logging

from api.auth import INGEST, Directory, load_users
from api.hardening import TokenBuckets
from otlp.decode import Refusal

log = logging.getLogger("svcpulse.otlp")


class Guard:
    def __init__(self, directory: Directory, open_: bool, rate_spans_per_s: float, max_spans: int) -> None:
        self.directory, self.open = directory, open_
        self.budget = TokenBuckets(rate_spans_per_s, max(int(2 * rate_spans_per_s), max_spans))
        self.senders = sorted(u.name for u in directory.users.values() if INGEST in u.may_hold)

    @classmethod
    def from_users_file(cls, path: str, open_: bool, rate_spans_per_s: float, max_spans: int) -> Guard:
        guard = cls(Directory(load_users(path)), open_, rate_spans_per_s, max_spans)
        if not open_ and not guard.senders:
            log.warning("no user in %r may hold the %r role: every export will be refused (401); add one "
                        "or set SVCPULSE_OTLP_OPEN=true (docs/otlp.md)", path, INGEST)
        return guard

    def admit(self, authorization: str) -> str:
        """The sender's name for an Authorization header value, or a Refusal (401/403)."""
        if self.open:
            return "anonymous"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(401, "missing bearer token: send 'Authorization: Bearer <token>' of a user allowed "
                          f"the {INGEST!r} role")
        principal = self.directory.authenticate(token.strip())
        if principal is None:
            raise Refusal(401, "invalid token")
        if INGEST not in self.directory.users[principal.name].may_hold:
            raise Refusal(403, f"user {principal.name!r} may not send spans: its roles lack {INGEST!r}")
        return principal.name

    def charge(self, sender: str, spans: int) -> None:
        """Take `spans` from the sender's budget, or a Refusal (429) saying when to retry."""
        if self.open or not spans:
            return
        wait_s = self.budget.take(sender, min(float(spans), float(self.budget.burst)))
        if wait_s:
            raise Refusal(429, f"user {sender!r} is over its budget of {self.budget.rate:g} spans/s; retry in "
                          f"{wait_s:.1f} s", retry_after_s=wait_s)
