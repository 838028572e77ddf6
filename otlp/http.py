"""OTLP/HTTP: POST /v1/traces (protobuf or JSON, compressed or not), plus GET /metrics and /healthz.

A plain ASGI app (served by uvicorn) so a request costs no framework routing. The answer uses the
request's encoding: ExportTraceServiceResponse on success (with partial_success when spans were
rejected), a google.rpc.Status with a message otherwise: 400 malformed or every span unusable,
401/403 token, 405 method, 413 too large, 415 content type or encoding, 429 over budget (Retry-After).
A refused body is still read (up to DRAIN_BYTES) so the sender sees the answer, not a reset connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from otlp import metrics
from otlp.decode import JSON, PROTOBUF, Refusal, decompress, media_type, parse
from otlp.ingest import Ingest

TRACES_PATH = "/v1/traces"
DRAIN_BYTES = 64 * 1024 * 1024  # read and drop at most this much of a refused body; close beyond
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Body:
    """The request body as it is read: how much came, whether all of it did."""

    def __init__(self, receive: Receive, headers: dict[bytes, bytes]) -> None:
        self.receive, self.headers = receive, headers
        self.size, self.done = 0, False

    async def read(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            raise Refusal(413, f"the body of {int(declared)} bytes is larger than {limit} bytes; send smaller batches")
        chunks = []
        while not self.done:
            message = await self.receive()
            chunk = message.get("body", b"")
            self.size += len(chunk)
            self.done = message["type"] != "http.request" or not message.get("more_body", False)
            if self.size > limit:
                raise Refusal(413, f"the body is larger than {limit} bytes; send smaller batches")
            chunks.append(chunk)
        return b"".join(chunks)

    async def drain(self) -> None:
        """Read what is left of a refused body, unless the sender waits for 100-continue or it is huge."""
        declared = self.headers.get(b"content-length", b"")
        if self.headers.get(b"expect", b"").lower() == b"100-continue" or (
                declared.isdigit() and int(declared) > DRAIN_BYTES):
            return
        while not self.done and self.size <= DRAIN_BYTES:
            message = await self.receive()
            self.size += len(message.get("body", b""))
            self.done = message["type"] != "http.request" or not message.get("more_body", False)


class OtlpHttpApp:
    def __init__(self, ingest: Ingest, max_bytes: int) -> None:
        self.ingest, self.max_bytes = ingest, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == TRACES_PATH:
            await self._traces(scope, receive, send)
        elif path == "/metrics" and method == "GET":
            await _respond(send, 200, CONTENT_TYPE_LATEST.encode(), generate_latest())
        elif path == "/healthz" and method == "GET":
            await _respond(send, 200, b"text/plain", b"ok\n")
        else:
            await _respond(send, 404, b"text/plain", f"not found: OTLP traces go to POST {TRACES_PATH}\n".encode())

    async def _traces(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        kind = media_type(headers.get(b"content-type", b"").decode("latin-1"))
        body = _Body(receive, headers)
        try:
            if scope["method"] != "POST":
                raise Refusal(405, f"{scope['method']} {TRACES_PATH}: send spans with POST")
            sender = self.ingest.guard.admit(headers.get(b"authorization", b"").decode("latin-1"))
            if kind is None:
                raise Refusal(415, f"unsupported Content-Type {headers.get(b'content-type', b'').decode('latin-1')!r}:"
                              f" send {PROTOBUF} or {JSON}")
            data = decompress(await body.read(self.max_bytes),
                              headers.get(b"content-encoding", b"").decode("latin-1"), self.max_bytes)
            answer: Message = self.ingest.handle(parse(data, kind), sender, "http")
            status, extra = 200, []
        except Refusal as refusal:
            await body.drain()
            answer, status = Status(code=refusal.grpc_code, message=refusal.message), refusal.status
            extra = [(b"retry-after", str(max(1, round(refusal.retry_after_s))).encode())] if status == 429 else []
        metrics.REQUESTS.labels("http", str(status)).inc()
        kind = kind or JSON  # a refused Content-Type is answered in readable JSON
        payload = json_format.MessageToJson(answer).encode() if kind == JSON else answer.SerializeToString()
        await _respond(send, status, kind.encode(), payload, extra)


async def _respond(send: Send, status: int, content_type: bytes, body: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
