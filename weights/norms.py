"""The fleet norm of success rates, shared by the call rules (scoring.py) and the connection rules (tcp.py)."""

from __future__ import annotations

import math
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


def success_factor(success: float, count: int, bar: float, config: EngineConfig, z: float = 0.0) -> float:
    """(s / bar) ** exponent below the bar. With z > 0 only a shortfall the count makes significant
    cuts: the Wilson upper bound of the success rate must be below the bar too (tcp.py: z = 1.96 makes
    1 failed connection in 20-99 noise, while 2 of 26 cut as before)."""
    if success >= bar or bar <= 0 or (z > 0 and wilson_upper(success, count, z) >= bar):
        return 1.0
    return (success / bar) ** config.success_exponent


def wilson_upper(rate: float, count: int, z: float) -> float:
    """Upper end of the Wilson score interval of a proportion `rate` seen over `count` trials."""
    if count <= 0 or z <= 0:
        return rate
    z2 = z * z
    spread = z * math.sqrt(rate * (1 - rate) / count + z2 / (4 * count * count))
    return (rate + z2 / (2 * count) + spread) / (1 + z2 / count)
