"""The JSON-lines insert client (pipeline/store/http_insert.py) without a server: the store URL's rules, and
how a server's answer becomes a StoreError. A tiny local HTTP server answers as ClickHouse 18.16 and a
current ClickHouse word their errors; tests/integration/test_loader.py runs the real 18.16 server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.store import StoreError, open_store
from pipeline.store.http_insert import HttpInserts
from svcpulse.services import free_port

OLD = "Code: 131, e.displayText() = DB::Exception: Too large value for FixedString(3), e.what() = DB::Exception\n"
CURRENT = ("Code: 131. DB::Exception: Too large value for FixedString(3): (at row 2)\n: While executing "
           "ParallelParsingBlockInputFormat. (TOO_LARGE_STRING_SIZE) (version 25.8.1.1)\n")
TRANSIENT = ("Code: 252, e.displayText() = DB::Exception: Too many parts (300). Merges are processing significantly "
             "slower than inserts.\n")


class _Server:
    """Reads a chunked INSERT body whole, then answers with `status` and `text`."""

    def __init__(self) -> None:
        self.status, self.text, self.bodies, self.queries = 200, "", list[bytes](), list[str]()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = b""
                while (size := int(self.rfile.readline().strip(), 16)) > 0:
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                owner.bodies.append(body)
                owner.queries.append(self.path)
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(owner.text.encode())))
                self.end_headers()
                self.wfile.write(owner.text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    yield running
    running.http.shutdown()


def _inserts(port: int) -> HttpInserts:
    return HttpInserts("127.0.0.1", port, "svcpulse", "loader", "secret", 5.0, {"insert_distributed_sync": 1})


def test_lines_go_as_one_request_with_the_database_and_the_settings(server: _Server) -> None:
    _inserts(server.port).insert("rpc_calls", ["ts", "v"], [b'{"ts":1,"v":1}', b'{"ts":2,"v":1}'])
    assert server.bodies == [b'{"ts":1,"v":1}\n{"ts":2,"v":1}\n']
    assert "database=svcpulse" in server.queries[0] and "insert_distributed_sync=1" in server.queries[0]
    assert "INSERT+INTO+rpc_calls+%28ts%2C+v%29+FORMAT+JSONEachRow" in server.queries[0]


@pytest.mark.parametrize("text", [OLD, CURRENT])
def test_a_data_error_is_a_rejection_in_one_line_with_the_code(server: _Server, text: str) -> None:
    server.status, server.text = 500, text
    with pytest.raises(StoreError) as caught:
        _inserts(server.port).insert("rpc_calls", ["v"], [b'{"v":1}'])
    assert caught.value.rejected
    assert str(caught.value).startswith(f"ClickHouse 127.0.0.1:{server.port} (HTTP): Code: 131. DB::Exception: "
                                        "Too large value for FixedString(3)")
    assert "\n" not in str(caught.value) and "e.what()" not in str(caught.value)


def test_too_many_parts_and_a_refused_connection_are_retried_not_bisected(server: _Server) -> None:
    server.status, server.text = 500, TRANSIENT
    with pytest.raises(StoreError) as caught:
        _inserts(server.port).insert("rpc_calls", ["v"], [b'{"v":1}'])
    assert not caught.value.rejected and "Code: 252." in str(caught.value)
    with pytest.raises(StoreError) as refused:
        _inserts(free_port()).insert("rpc_calls", ["v"], [b'{"v":1}'])
    assert not refused.value.rejected and "(HTTP)" in str(refused.value)


def test_the_store_url_names_the_http_port_only_where_it_can_be_honoured() -> None:
    assert open_store("clickhouse://db:9000/svcpulse").json_inserts is None
    inserts = open_store("clickhouse://db:9000/svcpulse?http_port=8123").json_inserts
    assert inserts is not None and (inserts.host, inserts.port, inserts.database) == ("db", 8123, "svcpulse")
    for url in ("clickhouses://db:9440/svcpulse?http_port=8123", "clickhouse://db:9000/x?alt_hosts=b:9000&http_port=8123",
                "clickhouse://db:9000/x?http_port=http"):
        with pytest.raises(ValueError, match="http_port"):
            open_store(url)
