"""The receiver: OTLP/HTTP (uvicorn) and OTLP/gRPC (grpc.aio) on one asyncio loop, sharing one Ingest.

    receiver = Receiver(ingest, host="0.0.0.0", http_port=4318, grpc_port=4317, max_bytes=16 << 20)
    await receiver.start()          # binds both ports (0 = any free port); an OSError names the port
    ... receiver.http_url, receiver.grpc_target ...
    await receiver.stop()           # stops accepting, lets requests in flight finish

In the main thread uvicorn turns SIGINT/SIGTERM into its own graceful exit; `wait()` returns then.

`in_thread(receiver)` runs it on a loop of its own thread (how `svcpulse up` embeds it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import uvicorn

from otlp import grpc_service
from otlp.http import OtlpHttpApp
from otlp.ingest import Ingest

STOP_GRACE_S = 5.0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"OTLP/HTTP cannot listen on {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Receiver:
    def __init__(self, ingest: Ingest, host: str, http_port: int, grpc_port: int, max_bytes: int) -> None:
        self.ingest, self.host, self.max_bytes = ingest, host, max_bytes
        self.http_port, self.grpc_port = http_port, grpc_port
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None

    @property
    def http_url(self) -> str:
        return f"http://{_hostport(self.host, self.http_port)}"

    @property
    def grpc_target(self) -> str:
        return _hostport(self.host, self.grpc_port)

    async def start(self) -> None:
        sock = _listen(self.host, self.http_port)
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(OtlpHttpApp(self.ingest, self.max_bytes), lifespan="off", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=int(STOP_GRACE_S))
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                raise OSError(f"OTLP/HTTP did not start on {_hostport(self.host, self.http_port)}")
            await asyncio.sleep(0.01)
        self._grpc = grpc.aio.server(options=[("grpc.max_receive_message_length", self.max_bytes),
                                              ("grpc.so_reuseport", 0)])
        grpc_service.add_to(self._grpc, self.ingest)
        try:
            self.grpc_port = self._grpc.add_insecure_port(_hostport(self.host, self.grpc_port))
        except RuntimeError as err:
            await self.stop()
            raise OSError(f"OTLP/gRPC cannot listen on {_hostport(self.host, self.grpc_port)}: {err}") from None
        await self._grpc.start()

    async def wait(self) -> None:
        """Until the HTTP server exits (stop(), or a signal uvicorn caught in the main thread)."""
        if self._http_task is not None:
            await asyncio.shield(self._http_task)

    async def stop(self) -> None:
        grpc_server, self._grpc = self._grpc, None
        if grpc_server is not None:
            await grpc_server.stop(STOP_GRACE_S)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task


@contextmanager
def in_thread(receiver: Receiver) -> Iterator[Receiver]:
    """The receiver serving from a thread of its own until the block ends; start errors are raised here."""
    loop = asyncio.new_event_loop()
    started: list[BaseException | None] = []
    ready = threading.Event()

    async def start() -> None:
        try:
            await receiver.start()
            started.append(None)
        except BaseException as err:  # handed to the caller's thread, which raises it
            started.append(err)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, name="svcpulse-otlp", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait()
    try:
        if started[0] is not None:
            raise started[0]
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(timeout=STOP_GRACE_S + 10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
