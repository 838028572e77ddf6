"""OTLP/gRPC: opentelemetry.proto.collector.trace.v1.TraceService/Export on a grpc.aio server.

gRPC itself enforces the message size (max_receive_message_length) and decompresses gzip; a refusal
aborts the call with the code OTLP exporters understand (INVALID_ARGUMENT: drop; UNAVAILABLE: retry).
"""

from __future__ import annotations

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otlp import metrics
from otlp.decode import Refusal
from otlp.ingest import Ingest


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(self, request: ExportTraceServiceRequest,  # the generated servicer names it
                     context: grpc.aio.ServicerContext) -> ExportTraceServiceResponse:
        authorization = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")
        try:
            sender = self.ingest.guard.admit(str(authorization))
            response = self.ingest.handle(request, sender, "grpc")
        except Refusal as refusal:
            metrics.REQUESTS.labels("grpc", str(refusal.status)).inc()
            await context.abort(refusal.grpc_status, refusal.message)
        metrics.REQUESTS.labels("grpc", "200").inc()
        return response


def add_to(server: grpc.aio.Server, ingest: Ingest) -> None:
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(ingest), server)
