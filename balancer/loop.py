"""The loop every `svcpulse balancer KIND` runs: follow the feed, render, apply, verify (docs/balancer.md).

- The feed is followed by long-poll with ETag (balancer.client.WeightFeedClient); each new revision
  wakes the loop at once.
- A render equal to the one applied is not applied again (nginx: no reload for a new revision that
  changes nothing nginx sees); the revision still counts as applied.
- Last known good: a feed that cannot be rendered, a balancer that refuses the change, or an API that
  is away all leave the last applied state in place. The loop never falls back to equal weights.
- Backoff: after a failure the same render is retried after 0.5, 1, 2 ... up to --max-backoff s; a
  different render (a new revision) is tried at once.
- Rate limit: at most one apply per --min-interval s; revisions arriving meanwhile are coalesced.
- Resync: every --resync s the balancer is verified, and re-applied if it drifted (a reload of
  HAProxy resets its weights; someone may overwrite nginx's file).
- --dry-run prints a unified diff of each change instead of applying it.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from balancer.adapter import Adapter, BalancerError, RenderError
from balancer.client import FeedView, WeightFeedClient
from balancer.metrics import LoopCollector, LoopState, serve_metrics
from core.settings import Settings

log = logging.getLogger("svcpulse.balancer")


@dataclass(frozen=True)
class LoopOptions:
    dry_run: bool = False
    once: bool = False
    resync_s: float = 10.0
    min_interval_s: float = 0.0
    max_backoff_s: float = 30.0

    @classmethod
    def from_args(cls, args: argparse.Namespace, adapter: Adapter) -> LoopOptions:
        given = vars(args)  # callers building a Namespace by hand may leave flags out: defaults apply
        interval = given.get("min_interval")
        return cls(dry_run=bool(given.get("dry_run")), once=bool(given.get("once")),
                   resync_s=float(given.get("resync") or 10.0),
                   min_interval_s=adapter.default_min_interval_s if interval is None else float(interval),
                   max_backoff_s=float(given.get("max_backoff") or 30.0))


class Follower:
    """Keeps one adapter's balancer in step with one feed. `step()` is one pass; `run()` loops."""

    def __init__(self, adapter: Adapter, feed: WeightFeedClient, options: LoopOptions,
                 out: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.adapter, self.feed, self.options, self.out = adapter, feed, options, out
        self.state = LoopState(contact_age=feed.contact_age_s)
        self.rendered = ""  # what the balancer holds (or, in --dry-run, what was last printed)
        self._generation = -1
        self._failed_generation = -1  # the feed generation that failed last; a newer one is tried at once
        self._failures_in_row = 0
        self._retry_at = 0.0
        self._last_apply = float("-inf")
        self._last_verify = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            wait = self.step()
            # Wake on feed news, or at the latest after `wait`; stop is checked at least twice a second.
            self.feed.wait_news(self._generation, max(0.0, min(wait, 0.5)))

    def step(self) -> float:
        """One pass; returns how long nothing needs doing (feed news may come sooner)."""
        view = self.feed.latest()
        self._report_feed(view)
        if view is None:
            return 0.5
        self._generation = view.key[0]
        now = time.monotonic()
        if self._generation == self._failed_generation and now < self._retry_at:
            return self._retry_at - now  # backing off
        try:
            text = self.adapter.render(view)
        except RenderError as err:
            return self._fail("render", str(err), view.revision)
        if text == self.rendered:
            self._holding(view)
            return self._resync(view, text, now)
        wait = self._last_apply + self.options.min_interval_s - now
        if wait > 0:
            return wait  # rate limited: the newest revision is rendered again then
        return self._apply(view, text)

    def once(self) -> int:
        """Apply the current feed once (no rate limit); 0 on success."""
        view = self.feed.latest()
        if view is None:
            return 1
        try:
            text = self.adapter.render(view)
        except RenderError as err:
            self._fail("render", str(err), view.revision)
            return 1
        self._apply(view, text)
        return 0 if self.rendered == text else 1

    def _apply(self, view: FeedView, text: str) -> float:
        kind = self.adapter.kind
        if self.options.dry_run:
            diff = "".join(difflib.unified_diff(self.rendered.splitlines(True), text.splitlines(True),
                                                "holds", f"revision {view.revision}"))
            self.out(f"[{kind}] dry run: revision {view.revision} would change {self.adapter.target()}:\n{diff}")
            self.rendered = text
            self._holding(view)
            return self.options.resync_s
        self._last_apply = started = time.monotonic()
        cpu = time.thread_time()
        try:
            self.adapter.apply(text)
            drift = self.adapter.verify(text)
            if drift:
                raise BalancerError(f"applied, but the balancer does not hold it: {drift}")
        except BalancerError as err:
            return self._fail("apply", str(err), view.revision)
        s = self.state
        s.last_apply_cpu_s, s.last_apply_unix = time.thread_time() - cpu, time.time()
        s.applies, s.last_apply_monotonic = s.applies + 1, time.monotonic()
        self.rendered, self._failed_generation, self._failures_in_row = text, -1, 0
        self._last_verify = s.last_apply_monotonic
        self._holding(view)
        took_ms = 1000 * (s.last_apply_monotonic - started)
        self.out(f"[{kind}] revision {view.revision} applied to {self.adapter.target()} "
                 f"({len(view.weights)} instances, {took_ms:.0f} ms)")
        return self.options.resync_s

    def _resync(self, view: FeedView, text: str, now: float) -> float:
        due = self._last_verify + self.options.resync_s - now
        if due > 0 or self.options.dry_run:
            return max(due, 0.05)
        self._last_verify = now
        try:
            drift = self.adapter.verify(text)
        except BalancerError as err:
            return self._fail("verify", str(err), view.revision)
        if not drift:
            return self.options.resync_s
        self.out(f"[{self.adapter.kind}] {self.adapter.target()} drifted ({drift}): applying again")
        self.rendered = ""
        return self._apply(view, text)

    def _holding(self, view: FeedView) -> None:
        if self.state.applied_revision != view.revision:
            self.state.applied_revision = view.revision

    def _fail(self, stage: str, error: str, revision: str) -> float:
        self.state.failures[stage] += 1
        self.state.last_error = error
        self._failures_in_row += 1
        delay = min(self.options.max_backoff_s, 0.5 * 2 ** (self._failures_in_row - 1))
        self._failed_generation, self._retry_at = self._generation, time.monotonic() + delay
        held = self.state.applied_revision or "nothing yet"
        self.out(f"[{self.adapter.kind}] {stage} of revision {revision} failed: {error} "
                 f"(holding {held}; retry in {delay:g} s)")
        return delay

    def _report_feed(self, view: FeedView | None) -> None:
        error = self.feed.last_error or ("the API says its weights are stale" if view and view.api_stale else "")
        stale = bool(error) or view is None
        if stale == self.state.feed_stale:
            return
        self.state.feed_stale = stale
        held = self.state.applied_revision or "nothing"
        if stale and view is not None:
            self.out(f"[{self.adapter.kind}] feed stale ({error}): keeping revision {held}")
        elif not stale:
            self.out(f"[{self.adapter.kind}] feed reachable again at revision {view.revision if view else '?'}")


def add_loop_flags(parser: argparse.ArgumentParser, default_min_interval_s: float = 0.0) -> None:
    """The flags every `svcpulse balancer KIND` shares."""
    parser.add_argument("--api", required=True, help="svcpulse API base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--service", required=True, help="service whose feed to follow, e.g. shop.cart")
    parser.add_argument("--token", help="bearer token (viewer); default $SVCPULSE_TOKEN")
    parser.add_argument("--dry-run", action="store_true", help="print each change as a diff instead of applying it")
    parser.add_argument("--once", action="store_true", help="apply the current feed once and exit")
    parser.add_argument("--resync", type=float, default=10.0,
                        help="verify the balancer every N s and re-apply if it drifted (default 10)")
    parser.add_argument("--min-interval", type=float, default=default_min_interval_s,
                        help=f"at most one apply per N s (default {default_min_interval_s:g})")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="longest wait between retries (default 30)")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="metrics listen address")


def run(args: argparse.Namespace, adapter: Adapter, stop: threading.Event | None = None) -> int:
    """The body of `svcpulse balancer KIND`: 0 on a clean stop (or a successful --once)."""
    options = LoopOptions.from_args(args, adapter)
    token = vars(args).get("token") or Settings().token or None
    name = f"svcpulse balancer {adapter.kind}"
    stop = stop or stop_on_sigterm()
    with WeightFeedClient(args.api, args.service, token=token, max_backoff_s=5.0) as feed:
        while not feed.wait_ready(timeout=10):  # the balancer keeps its configuration meanwhile
            print(f"{name}: no feed for {args.service} from {args.api} yet: {feed.last_error or 'no answer'}",
                  flush=True)
            if options.once or stop.is_set():
                return 1 if options.once else 0
        follower = Follower(adapter, feed, options)
        print(f"[{adapter.kind}] following {args.service} from {args.api} into {adapter.target()}"
              f"{' (dry run)' if options.dry_run else ''}", flush=True)
        if options.once:
            return follower.once()
        server = None
        if vars(args).get("metrics_port"):
            collector = LoopCollector(adapter.kind, args.service, follower.state)
            server, _ = serve_metrics(collector, args.metrics_host, args.metrics_port)
            print(f"[{adapter.kind}] metrics on http://{args.metrics_host}:{args.metrics_port}/metrics", flush=True)
        try:
            follower.run(stop)
        finally:
            if server is not None:
                server.shutdown()  # type: ignore[attr-defined]
    return 0


def stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a clean stop under systemd/docker
    return stop
