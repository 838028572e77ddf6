"""Inserts of JSON lines over ClickHouse's HTTP interface, streamed while the batch is still being taken.

The loader's fastest path to a ClickHouse server (`clickhouse://host:9000/db?http_port=8123`): the
messages it has validated go to `INSERT ... FORMAT JSONEachRow` as their own bytes (with `ts` and the
Kafka provenance spliced in front), so the server's C++ parses them on its own core instead of the
loader's Python building and serializing columns. One insert is one HTTP request with a chunked body: it
is opened when a batch takes its first rows of a table, each run of rows is sent as it is taken (the
server parses meanwhile), and `finish` sends the end and reads the answer; the loader commits only after
that answer, as with the native protocol. A request of fewer than 1,048,576 rows
(`max_insert_block_size`) is written as one block: all of it or nothing.

Errors read like the native store's: StoreError with the server's code and first message line,
`rejected` for the server's data errors (the loader bisects), anything else (refused connection,
timeout, a server gone mid-request) to be retried.
"""

from __future__ import annotations

import base64
import http.client
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from pipeline.store import StoreError, is_data_error

_CODE = re.compile(r"Code: (\d+)")
# 18.16 words an error "Code: 131, e.displayText() = DB::Exception: ..., e.what() = DB::Exception"
_NOISE = re.compile(r"e\.displayText\(\) = |, e\.what\(\) = \S+$")
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class JsonInsert:
    """One INSERT ... FORMAT JSONEachRow in flight: lines go out as they come, `finish` reads the verdict."""

    def __init__(self, connection: http.client.HTTPConnection, path: str, headers: Mapping[str, str],
                 where: str) -> None:
        self._connection, self.where, self.rows, self.ended = connection, where, 0, False
        try:
            connection.putrequest("POST", path, skip_accept_encoding=True)
            for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
                connection.putheader(name, value)
            connection.endheaders()
        except _TRANSPORT_ERRORS as err:
            self.abort()
            raise StoreError(f"{where}: {err or type(err).__name__}") from err

    def send(self, lines: Sequence[bytes]) -> None:
        """Send these rows (one JSON object each, no newline) as one chunk."""
        if not lines:
            return
        body = b"\n".join(lines)
        try:  # the chunk's size line, the body and its end: three writes, no copy of the body
            self._connection.send(b"%x\r\n" % (len(body) + 1))
            self._connection.send(body)
            self._connection.send(b"\n\r\n")
        except _TRANSPORT_ERRORS as err:  # the server may have answered early with an error: read it
            raise self._verdict(err) from err
        self.rows += len(lines)

    def end(self) -> None:
        """End the body: the server finishes the insert while the caller goes on; `finish` reads how it went."""
        if not self.ended:
            self.ended = True
            try:
                self._connection.send(b"0\r\n\r\n")
            except _TRANSPORT_ERRORS as err:
                raise self._verdict(err) from err

    def finish(self) -> None:
        """End the body (unless ended) and wait for the server's answer; StoreError unless every row was stored."""
        self.end()
        error = self._verdict(None)
        if error is not None:
            raise error

    def abort(self) -> None:
        """Drop the request: the server discards an insert whose body never ended."""
        self._connection.close()

    def _verdict(self, sending_error: Exception | None) -> StoreError | None:
        try:
            response = self._connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except _TRANSPORT_ERRORS as err:
            self.abort()
            return StoreError(f"{self.where}: {sending_error or err or type(err).__name__}")
        if response.status == 200 and sending_error is None:
            return None
        self.abort()
        found = _CODE.search(text)
        code = int(found.group(1)) if found else None
        first = _NOISE.sub("", text.strip().splitlines()[0] if text.strip() else f"HTTP {response.status}")
        message = first.replace(f"Code: {code},", f"Code: {code}.", 1)[:300]
        return StoreError(f"{self.where}: {message}", rejected=is_data_error(code, message))


class HttpInserts:
    """Opens JSON-lines inserts into one database of a ClickHouse server's HTTP interface."""

    def __init__(self, host: str, port: int, database: str, user: str, password: str, timeout_s: float,
                 settings: Mapping[str, Any] | None = None) -> None:
        self.host, self.port, self.database, self.timeout_s = host, port, database, timeout_s
        self.where = f"ClickHouse {host}:{port} (HTTP)"
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}", "Content-Type": "application/x-ndjson"}
        self._settings = {name: str(value) for name, value in (settings or {}).items()}

    def open(self, table: str, columns: Iterable[str]) -> JsonInsert:
        query = f"INSERT INTO {table} ({', '.join(columns)}) FORMAT JSONEachRow"
        path = "/?" + urlencode({"database": self.database, **self._settings, "query": query})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        return JsonInsert(connection, path, self._headers, self.where)

    def insert(self, table: str, columns: Iterable[str], lines: Sequence[bytes]) -> None:
        """All lines as one insert (bisection, guarded rows, the judge's rows)."""
        request = self.open(table, columns)
        try:
            request.send(lines)
        except StoreError:
            request.abort()
            raise
        request.finish()
