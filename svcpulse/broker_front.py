"""The embedded broker's fixed address: a TCP forwarder, one origin connection per client connection.

Run as `python -I -S svcpulse/broker_front.py --listen 127.0.0.1:PORT --origin 127.0.0.1:PORT` (standard
library only, so it starts in a few tens of milliseconds). The broker generation behind it advertises
the front's address, so metadata and coordinator answers pass through unchanged and clients never learn
the generation's own port.

Why not Tansu's own proxy: it multiplexes every client over a pool of 4 connections per core to the
origin (deadpool's default: 8 here), and a request holds its pooled connection until it is answered.
Consumers' long-poll fetches (up to fetch.max.wait each) and group joins (until the rebalance ends) fill
that pool, and every other client's request, produce included, waits behind them: with 12 long-polling
consumers a produce through it timed out, and `svcpulse up` with the demo, eBPF collector and 2,000
extra events/s saw 1-3 s per acknowledgement after a switch (bench/embedded_soak.py). One origin
connection per client keeps each client's requests in their own order and independent of the others.

Killing this process closes every client's connection at once: that is how a roll freezes the old
generation (svcpulse/rolling_broker.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket

CHUNK = 256 * 1024


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Kafka requests are small and latency-bound


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until the reading side closes, then close the writing side."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve_client(origin: tuple[str, int], client_reader: asyncio.StreamReader,
                        client_writer: asyncio.StreamWriter) -> None:
    try:
        origin_reader, origin_writer = await asyncio.open_connection(*origin)
    except OSError:  # no generation behind the front right now: the client sees a dropped connection
        client_writer.close()
        return
    _no_delay(client_writer)
    _no_delay(origin_writer)
    # Either side closing ends both directions: a client must never keep talking to a stale origin.
    _, pending = await asyncio.wait({asyncio.ensure_future(_pipe(client_reader, origin_writer)),
                                        asyncio.ensure_future(_pipe(origin_reader, client_writer))},
                                       return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for writer in (client_writer, origin_writer):
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def serve(listen: tuple[str, int], origin: tuple[str, int]) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_client(origin, r, w), *listen, reuse_address=True,
                                        backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, help="host:port clients connect to")
    parser.add_argument("--origin", required=True, help="host:port of the broker generation")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(_address(args.listen), _address(args.origin)))


if __name__ == "__main__":
    main()
