"""What both transports do with a decoded export request: admit the sender, charge its span budget,
map the spans, hand the events to the sink, answer (with OTLP partial_success when spans were rejected).

The mapping gives each span's event as a Template the contract already checked plus the span's ts_ms
and latency_ms; they are stamped into it and encoded here (msgspec, in C), and the whole request goes
to the sink's queue in one call (memory, or the disk spool while Kafka is away). The sink never waits
for Kafka, so `export` returns as soon as every event is queued, and the sender is answered then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from msgspec.structs import replace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from collectors.encoding import encode
from collectors.sink_common import Sink
from otlp import metrics
from otlp.decode import Refusal
from otlp.guard import Guard
from otlp.mapping import DEFAULT_LIMITS, Limits, Mapped, Mapper


@dataclass(frozen=True)
class Outcome:
    spans: int
    accepted: int  # events in the sink
    rejected: int
    message: str  # why spans were rejected ("" when none were)

    @property
    def all_rejected(self) -> bool:
        """Nothing usable in a request that had spans: the whole request is a 400, not a partial success."""
        return self.rejected > 0 and self.rejected == self.spans


class Ingest:
    def __init__(self, sink: Sink, guard: Guard, limits: Limits = DEFAULT_LIMITS,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.sink, self.guard, self.limits, self.clock_ns = sink, guard, limits, clock_ns
        self.mapper = Mapper(limits)  # what it learns about span shapes is kept across requests

    def handle(self, request: Any, sender: str, transport: str) -> ExportTraceServiceResponse:
        """The answer to an admitted sender's request (otlp.decode.parse's projection); a Refusal when over
        budget or when every span is bad."""
        self.guard.charge(sender, count_spans(request))
        try:
            outcome = self.export(request, transport)
        except DecodeError as err:  # an attribute the mapping reads is malformed (otlp.projection)
            raise Refusal(400, f"the body is not a valid protobuf ExportTraceServiceRequest: {err}") from None
        if outcome.all_rejected:
            raise Refusal(400, outcome.message)
        if not outcome.rejected:
            return ExportTraceServiceResponse()
        partial = ExportTracePartialSuccess(rejected_spans=outcome.rejected, error_message=outcome.message[:4096])
        return ExportTraceServiceResponse(partial_success=partial)

    def export(self, request: Any, transport: str) -> Outcome:
        mapped = self.mapper.map(request, self.clock_ns() // 1_000_000)
        metrics.RECEIVED.labels(transport).inc(mapped.spans)
        self.sink.send_encoded("rpc", [(template.key, encode(replace(template.struct, ts_ms=ts, latency_ms=latency)))
                                       for template, ts, latency in mapped.calls])
        accepted = len(mapped.calls)
        metrics.MAPPED.inc(accepted)
        for reason, count in mapped.rejected.items():
            metrics.REJECTED.labels(reason).inc(count)
        for reason, count in mapped.skipped.items():
            metrics.SKIPPED.labels(reason).inc(count)
        rejected = sum(mapped.rejected.values())
        return Outcome(mapped.spans, accepted, rejected, _explain(mapped, rejected))


def _explain(mapped: Mapped, rejected: int) -> str:
    if not rejected:
        return ""
    reasons = "; ".join(f"{count} {reason} (e.g. {mapped.examples[reason]})"
                        for reason, count in mapped.rejected.most_common())
    return f"rejected {rejected} of {mapped.spans} spans: {reasons}"


def count_spans(request: Any) -> int:
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
