"""The fleet norm of success rates, shared by the call rules (scoring.py) and the connection rules (tcp.py)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weights.model import EngineConfig


def success_norm(judged: Sequence[float], volume: Sequence[float], ceiling: float,
                 config: EngineConfig) -> tuple[float, float | None, float | None]:
    """(bar, mean, stdev): bar = min(ceiling, median of the judged rates) (the median, not the mean: one
    broken instance must not lower the bar for everyone); mean and population stdev (as Envoy) of the
    rates with enough volume for outlier detection, None below outlier_min_hosts."""
    bar = min(ceiling, statistics.median(judged)) if judged else ceiling
    if len(volume) < config.outlier_min_hosts:
        return bar, None, None
    return bar, statistics.fmean(volume), statistics.pstdev(volume)
