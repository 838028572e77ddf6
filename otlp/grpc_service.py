"""OTLP/gRPC: opentelemetry.proto.collector.trace.v1.TraceService/Export on a grpc.aio server.

The method is registered with the generated service's name and response type, but takes the request as
bytes: it is parsed into the projection the mapping reads (otlp.projection), as OTLP/HTTP's protobuf
bodies are, and a malformed one is INVALID_ARGUMENT with the parser's message. gRPC itself enforces
the message size (max_receive_message_length) and decompresses gzip; a refusal aborts the call with the
code OTLP exporters understand (INVALID_ARGUMENT: drop; UNAVAILABLE: retry).
"""

from __future__ import annotations

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otlp import metrics
from otlp.decode import PROTOBUF, Refusal, parse
from otlp.ingest import Ingest

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name


class TraceService:
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def export(self, body: bytes, context: grpc.aio.ServicerContext) -> ExportTraceServiceResponse:
        authorization = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")
        try:
            sender = self.ingest.guard.admit(str(authorization))
            response = self.ingest.handle(parse(body, PROTOBUF), sender, "grpc")
        except Refusal as refusal:
            metrics.REQUESTS.labels("grpc", str(refusal.status)).inc()
            await context.abort(refusal.grpc_status, refusal.message)
        metrics.REQUESTS.labels("grpc", "200").inc()
        return response


def add_to(server: grpc.aio.Server, ingest: Ingest) -> None:
    export = grpc.unary_unary_rpc_method_handler(TraceService(ingest).export,  # no request_deserializer: bytes
                                                 response_serializer=ExportTraceServiceResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": export}),))
