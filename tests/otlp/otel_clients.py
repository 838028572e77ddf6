"""Real OpenTelemetry Python SDK clients of the receiver: a TracerProvider per service, exporting over
OTLP/HTTP or OTLP/gRPC with the real exporters, and keeping its spans in memory as the tests' oracle."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otlp.server import Receiver


class Traced:
    """A TracerProvider of one service: spans go to the receiver and, for the test's oracle, to memory."""

    def __init__(self, service: str, exporter: SpanExporter, **resource: str) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))

    def spans(self) -> list[ReadableSpan]:
        self.provider.force_flush()
        return [s for s in self.memory.get_finished_spans() if s.kind in (SpanKind.SERVER, SpanKind.CLIENT)]


def exporter(transport: str, receiver: Receiver) -> SpanExporter:
    if transport == "http":
        return HttpExporter(endpoint=f"{receiver.http_url}/v1/traces", timeout=10)
    return GrpcExporter(endpoint=receiver.grpc_target, insecure=True, timeout=10)
