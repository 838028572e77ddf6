"""Query windows: from/to/step checked against the API's limits, with messages that say what to change.

Pure (no I/O): the routes turn a `RangeError` into a 422 with its message. Times are epoch
milliseconds (what Grafana's ${__from}/${__to} give); steps are whole seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ClickHouse's DateTime ends at 2106-02-07 06:28:15 UTC (2**32 - 1 s); 18.16 wraps later times
# around to 1970 (a query for 2163 returned today's calls), so no bound may pass it.
MAX_TIME_MS = (2**32 - 1) * 1000
MAX_RANGE_S = 31 * 86_400  # the rollups keep more, but one answer never scans more than a month
MAX_POINTS = 11_000  # per series; Grafana draws ~2,000 px wide at most, so this leaves room for zoom
DEFAULT_RANGE_S = 3_600
# Auto steps start at one minute so a default query always reads the per-minute rollup.
AUTO_STEPS_S = (60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 21_600, 43_200, 86_400)
AUTO_TARGET_POINTS = 500


class RangeError(ValueError):
    """A from/to/step the API will not answer; the message names the parameter and the limit."""


@dataclass(frozen=True)
class Window:
    from_s: int  # first bucket's start, aligned down to the step
    to_s: int  # exclusive end
    step_s: int

    @property
    def buckets(self) -> range:
        return range(self.from_s, self.to_s, self.step_s)

    @property
    def uses_rollup(self) -> bool:
        """Whole-minute steps read the per-minute rollup; finer steps need the raw calls."""
        return self.step_s % 60 == 0


def auto_step(range_s: int) -> int:
    for step in AUTO_STEPS_S:
        if range_s / step <= AUTO_TARGET_POINTS:
            return step
    return AUTO_STEPS_S[-1]


def _bounds(from_ms: int | None, to_ms: int | None, now_ms: int) -> tuple[int, int]:
    """(start, end) in ms after the defaults (the last hour) and the range checks."""
    end_ms = now_ms if to_ms is None else to_ms
    start_ms = end_ms - DEFAULT_RANGE_S * 1000 if from_ms is None else from_ms
    if max(start_ms, end_ms) > MAX_TIME_MS:
        raise RangeError(f"from/to after {MAX_TIME_MS} (2106-02-07 06:28:15 UTC), the last time the store can "
                         "hold; both are epoch milliseconds")
    if start_ms >= end_ms:
        raise RangeError(f"from ({start_ms}) must be before to ({end_ms}); both are epoch milliseconds")
    if end_ms - start_ms > MAX_RANGE_S * 1000:
        raise RangeError(f"range of {(end_ms - start_ms) / 86_400_000:.1f} days is longer than the limit of "
                         f"{MAX_RANGE_S // 86_400} days; narrow from/to")
    return start_ms, end_ms


def resolve(from_ms: int | None, to_ms: int | None, step_s: int | None, now_ms: int) -> Window:
    """The bucketed window of a time series: bounds, then the step (given or auto), then the points limit."""
    start_ms, end_ms = _bounds(from_ms, to_ms, now_ms)
    step = auto_step(math.ceil((end_ms - start_ms) / 1000)) if step_s is None else step_s
    if step < 1:
        raise RangeError(f"step must be at least 1 s, got {step}")
    aligned_from = start_ms // 1000 // step * step
    to_s = math.ceil(end_ms / 1000)
    points = math.ceil((to_s - aligned_from) / step)
    if points > MAX_POINTS:
        smallest = math.ceil((to_s - aligned_from) / MAX_POINTS)
        raise RangeError(f"step {step} s is too small for this range: {points} points per series, more than "
                         f"{MAX_POINTS}; use step >= {smallest} s or a shorter range")
    return Window(aligned_from, to_s, step)


def span(from_ms: int | None, to_ms: int | None, now_ms: int) -> Window:
    """A whole-window total (top-N, connections): the covering whole minutes, read from the rollups."""
    start_ms, end_ms = _bounds(from_ms, to_ms, now_ms)
    return Window(start_ms // 60_000 * 60, math.ceil(end_ms / 60_000) * 60, 60)


def last_minutes(now_ms: int, window_s: int) -> Window:
    """The whole minutes covering the last `window_s` seconds (health summaries read the rollup)."""
    to_s = (now_ms // 1000 // 60 + 1) * 60
    return Window(to_s - math.ceil(window_s / 60) * 60, to_s, 60)
