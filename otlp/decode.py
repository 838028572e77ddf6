"""An OTLP/HTTP request body -> the request's projection (what the mapping reads), or a `Refusal` saying why not.

Encodings (Content-Type): application/x-protobuf (binary protobuf: otlp.projection, the parser of the
protobuf package on opentelemetry-proto's descriptors) and application/json (OTLP's JSON mapping of the
same messages: otlp.json_request). Compression (Content-Encoding): gzip, deflate, zstd or none. The
decompressed size is capped as the wire size is (a small gzip bomb must not become a large message).
"""

from __future__ import annotations

import zlib
from typing import Any

import grpc
import orjson
import zstandard
from google.protobuf.message import DecodeError

from otlp import json_request, projection

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MEDIA_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
# The gRPC code of each refusal; OTLP exporters retry UNAVAILABLE (so an over-budget sender backs off)
# and drop what is INVALID_ARGUMENT.
_GRPC_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
               403: grpc.StatusCode.PERMISSION_DENIED, 413: grpc.StatusCode.INVALID_ARGUMENT,
               429: grpc.StatusCode.UNAVAILABLE}


class Refusal(ValueError):
    """A request the receiver refuses: the HTTP status, a message for the sender, when to retry (429)."""

    def __init__(self, status: int, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return _GRPC_CODES.get(self.status, grpc.StatusCode.INVALID_ARGUMENT)

    @property
    def grpc_code(self) -> int:
        """The numeric gRPC code (google.rpc.Status.code of an OTLP/HTTP error body)."""
        return int(self.grpc_status.value[0])


def media_type(content_type: str) -> str | None:
    """PROTOBUF or JSON for a Content-Type header value (parameters such as charset ignored), else None."""
    return _MEDIA_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body with its Content-Encoding undone, at most `limit` bytes (Refusal 413 beyond)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)
            data = inflater.decompress(body, limit + 1)
            complete = inflater.eof
        elif encoding == "zstd":
            if zstandard.frame_content_size(body) > limit:  # -1 when the frame does not declare it
                raise Refusal(413, f"the decompressed body is larger than {limit} bytes; send smaller batches")
            data = zstandard.ZstdDecompressor().decompress(body, max_output_size=limit + 1)
            complete = True  # a truncated frame raises ZstdError
        else:
            raise Refusal(415, f"unsupported Content-Encoding {encoding!r}: send gzip, deflate, zstd or none")
    except (zlib.error, zstandard.ZstdError) as err:
        raise Refusal(400, f"the body is not valid {encoding}: {err}") from None
    if len(data) > limit:
        raise Refusal(413, f"the decompressed body is larger than {limit} bytes; send smaller batches")
    if not complete:
        raise Refusal(400, f"the {encoding} body is truncated")
    return data


def parse(body: bytes, kind: str) -> Any:
    """The request's projection from an uncompressed body of media type `kind` (PROTOBUF or JSON)."""
    try:
        return projection.parse(body) if kind == PROTOBUF else json_request.parse(body)
    except DecodeError as err:
        raise Refusal(400, f"the body is not a valid protobuf ExportTraceServiceRequest: {err}") from None
    except orjson.JSONDecodeError as err:
        reason = "it nests values deeper than the recursion limit" if "depth limit" in str(err) else str(err)
        raise Refusal(400, f"the body is not a valid OTLP JSON ExportTraceServiceRequest: {reason[:300]}") from None
    except ValueError as err:  # json_request.Invalid: a field of the wrong type, and where
        raise Refusal(400, f"the body is not a valid OTLP JSON ExportTraceServiceRequest: {str(err)[:300]}") from None
