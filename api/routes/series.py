"""RPC time series (rps, success rate, latency quantiles by any dimension) and top-N lists."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import QueryStoreDep
from api.queries.timeseries import Order, Selector, rpc_aggregates
from api.routes.params import Filter, FromMs, SideQ, StepS, ToMs, TopN, dimensions_of, window_of
from api.series import Metric, build_series, summary, to_rows

router = APIRouter(prefix="/v1", tags=["query"])

MAX_SERIES = 100
TOP_KINDS: dict[str, tuple[str, Order]] = {
    "slow-interfaces": ("interface", "p99"),
    "erroring-instances": ("instance", "failures"),
    "busy-callers": ("caller", "calls"),
}


class Series(BaseModel):
    labels: dict[str, str] = Field(examples=[{"instance": "10.0.0.7:8080"}])
    points: list[tuple[int, float]] = Field(description="[epoch ms of the bucket start, value]",
                                            examples=[[[1764000000000, 12.5], [1764000060000, 13.0]]])


class SeriesAnswer(BaseModel):
    metric: str = Field(examples=["rps"])
    from_ms: int
    to_ms: int
    step_s: int
    source: Literal["rollup", "raw"] = Field(description="rpc_calls_1m for whole-minute steps, else rpc_calls")
    series: list[Series]


class Row(BaseModel):
    time: int = Field(description="epoch ms", examples=[1764000000000])
    series: str = Field(examples=["instance=10.0.0.7:8080"])
    value: float = Field(examples=[12.5])


class TopRow(BaseModel):
    service: str
    key: str = Field(description="the interface, instance or caller", examples=["GET /cart/{id}"])
    calls: int
    rps: float
    success_rate: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p99: float | None


class TopAnswer(BaseModel):
    kind: str
    from_ms: int
    to_ms: int
    rows: list[TopRow]


By = Annotated[str, Query(max_length=200, description="comma-separated dimensions to split by: service, "
                          "interface, instance, caller, version", examples=["instance"])]


@router.get("/series", response_model=SeriesAnswer | list[Row], summary="A metric over time, split by dimensions")
def series(_: Reader, store: QueryStoreDep, metric: Annotated[Metric, Query(description="what to plot")] = "rps",
           service: Filter = None, interface: Filter = None, instance: Filter = None, caller: Filter = None,
           version: Filter = None, by: By = "", side: SideQ = "server", from_ms: FromMs = None, to_ms: ToMs = None,
           step: StepS = None, limit: Annotated[int, Query(ge=1, le=MAX_SERIES, description="most series "
                                                           "returned (busiest first)")] = 20,
           format: Annotated[Literal["series", "rows"], Query(description="series (default) or rows: flat "
                                                              "[{time, series, value}] for Grafana Infinity")]
           = "series") -> Any:
    dims = dimensions_of(by)
    window = window_of(from_ms, to_ms, step)
    selector = Selector.of(side, service=service, interface=interface, instance=instance, caller=caller,
                           version=version)
    rows = rpc_aggregates(store, selector, dims, window, latency=metric.startswith("latency"))
    found = build_series(rows, dims, metric, window, limit)
    if format == "rows":
        return to_rows(found, metric)
    return SeriesAnswer(metric=metric, from_ms=window.from_s * 1000, to_ms=window.to_s * 1000, step_s=window.step_s,
                        source="rollup" if window.uses_rollup else "raw", series=found)


@router.get("/top/{kind}", response_model=TopAnswer, summary="Slowest interfaces, most erroring instances, "
            "busiest callers")
def top(_: Reader, store: QueryStoreDep,
        kind: Annotated[Literal["slow-interfaces", "erroring-instances", "busy-callers"], Path()],
        service: Filter = None, side: SideQ = "server", from_ms: FromMs = None, to_ms: ToMs = None,
        n: TopN = 10) -> TopAnswer:
    dimension, order = TOP_KINDS[kind]
    window = window_of(from_ms, to_ms, bucketed=False)
    rows = rpc_aggregates(store, Selector.of(side, service=service), ("service", dimension), window,
                          bucketed=False, order=order, limit=n)
    seconds = window.to_s - window.from_s
    return TopAnswer(kind=kind, from_ms=window.from_s * 1000, to_ms=window.to_s * 1000,
                     rows=[TopRow(service=r["service"], key=r[dimension], **summary(r, seconds)) for r in rows])

