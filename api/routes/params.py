"""Query parameters shared by the query, top-N, connection and capacity routes, and the 422 they raise."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated

from fastapi import HTTPException, Query

from api.queries.timeseries import DIMENSIONS, Side
from api.timerange import MAX_TIME_MS, RangeError, Window, resolve, span

# The upper bound (MAX_TIME_MS, 2106) is checked by api.timerange, whose 422 says why.
FromMs = Annotated[int | None, Query(alias="from", ge=0, examples=[1764000000000],
                                     description=f"start, epoch ms (default: to - 1 h; at most {MAX_TIME_MS})")]
ToMs = Annotated[int | None, Query(alias="to", ge=0, examples=[1764003600000],
                                   description=f"end, epoch ms (default: now; at most {MAX_TIME_MS}, 2106-02-07)")]
StepS = Annotated[int | None, Query(ge=1, le=86_400, description="bucket width in seconds; a multiple of 60 "
                                    "reads the per-minute rollup, finer steps the raw calls (default: auto, "
                                    ">= 60 s, ~500 points)", examples=[60])]
SideQ = Annotated[Side, Query(description="whose measurement: server (default), client, or all (a call seen "
                              "by both sides counts twice)")]
Filter = Annotated[str | None, Query(max_length=300, description="only calls with this value")]
WindowS = Annotated[int, Query(ge=60, le=86_400, description="health summary over the last N seconds")]
TopN = Annotated[int, Query(ge=1, le=100, description="rows to return")]


def unprocessable(message: str) -> HTTPException:
    return HTTPException(422, message)


def window_of(from_ms: int | None, to_ms: int | None, step_s: int | None = None, bucketed: bool = True) -> Window:
    """A bucketed window (time series) or, bucketed=False, a whole-window span in minutes (totals, top-N);
    a RangeError becomes a 422 with its message."""
    now_ms = int(time.time() * 1000)
    try:
        return resolve(from_ms, to_ms, step_s, now_ms) if bucketed else span(from_ms, to_ms, now_ms)
    except RangeError as err:
        raise unprocessable(str(err)) from err


def dimensions_of(by: str, known: Iterable[str] = DIMENSIONS) -> tuple[str, ...]:
    """`by=instance,version` -> ("instance", "version"); an unknown name is a 422 listing the known ones."""
    names = tuple(dict.fromkeys(part.strip() for part in by.split(",") if part.strip()))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise unprocessable(f"unknown dimension {', '.join(map(repr, unknown))} in by; choose from "
                            f"{', '.join(known)}")
    return names
