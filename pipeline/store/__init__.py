"""One small Store interface over ClickHouse, chosen by URL.

- `clickhouse://host:port/database` — a ClickHouse server over the native protocol (clickhouse-driver);
  `clickhouses://` for TLS. Query options: `?user=...&password=...&timeout=...&pool=4` (connections
  shared by the store's callers; the "control" lane has one more of its own), `alt_hosts=h2:p2,h3:p3`
  (servers to fail over to, e.g. the other replicas of a cluster), and for TLS
  `ca_certs=/path/ca.pem` (the CA to trust), `verify=false` (no certificate check: tests only),
  `certfile=...&keyfile=...` (a client certificate). `http_port=8123`: the loader inserts the events it
  has validated as JSON lines over the server's HTTP interface there (its fastest path, docs/scaling.md);
  not with `clickhouses://` or `alt_hosts` (those inserts go to one server, in plain HTTP).
- `chdb:///path/to/dir/database` — embedded current ClickHouse (chdb) with data under the directory;
  the last path segment is the database (`chdb:///var/lib/svcpulse` means database `svcpulse`);
  `?pool=3`: sessions whose statements run side by side (one process owns the directory).

SQL is shared between both: clickhouse-driver `%(name)s` parameters (substituted client-side, since
ClickHouse 18.16 has no server-side parameters), unqualified table names (each store uses its
database), and results as tuples of plain Python values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlparse

if TYPE_CHECKING:
    from pipeline.store.http_insert import HttpInserts

DEFAULT_DATABASE = "svcpulse"
CONTROL_LANE = "control"  # the weight loop's lane: a server store keeps a connection for it alone


class StoreError(RuntimeError):
    """The store is unreachable or rejected a statement; the message is safe to show to users.

    `rejected` is True when the store refused the data itself (a value its column cannot hold, text it
    cannot parse): retrying the same rows fails the same way, so the loader bisects the batch instead.
    Connection losses, timeouts, "too many parts", a missing table and every unknown error are not
    rejections: the loader retries those until the store recovers.
    """

    def __init__(self, message: str, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


# ClickHouse error codes that mean "this data cannot be stored": parse and conversion failures.
DATA_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    25, 26, 27,  # CANNOT_PARSE_ESCAPE_SEQUENCE, _QUOTED_STRING, _INPUT_ASSERTION_FAILED
    38, 41,  # CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME
    53, 69, 70, 72,  # TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER
    117, 131, 321,  # INCORRECT_DATA, TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
})


def is_data_error(code: int | None, message: str) -> bool:
    """True for a server error about the inserted data (see DATA_ERROR_CODES); 252 is "too many parts"
    (transient) except when one block spans too many partitions, which smaller blocks fix."""
    return code in DATA_ERROR_CODES or (code == 252 and "partitions for single INSERT" in message)


class QueryLimitError(StoreError):
    """ClickHouse stopped a query at a per-query limit; `kind` is "time" or "memory", the message says what to do."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


# ClickHouse error codes of the per-query limits (the same on 18.16 and current).
LIMIT_CODES = {159: "time", 241: "memory"}


@dataclass(frozen=True)
class QueryLimits:
    """Per-query limits ClickHouse enforces itself; 0 leaves a limit off.

    `priority` is ClickHouse's: while a query of a lower number runs, those of higher numbers pause.
    """

    max_execution_s: float = 0.0
    max_memory_bytes: int = 0
    priority: int = 0

    def settings(self) -> dict[str, int | float]:
        """The ClickHouse settings (names as on 18.16 and current) for a query under these limits."""
        # 18.16 counts max_execution_time in whole seconds (0.5 would mean "no limit"): round up.
        named = {"max_execution_time": math.ceil(self.max_execution_s), "max_memory_usage": self.max_memory_bytes,
                 "priority": self.priority}
        return {name: value for name, value in named.items() if value}


def limit_error(code: int, where: str, limits: QueryLimits | None) -> QueryLimitError:
    """The user-facing error for a query the store stopped at a limit, with what to change."""
    limits = limits or QueryLimits()
    what = (f"time limit of {math.ceil(limits.max_execution_s)} s" if LIMIT_CODES[code] == "time"
            else f"memory limit of {limits.max_memory_bytes / 2**20:,.0f} MiB")
    return QueryLimitError(f"{where}: the query was stopped at the store's {what}; narrow the range "
                           "(from/to), use a coarser step, or filter by service", LIMIT_CODES[code])


class Store(Protocol):
    database: str
    dialect: str  # "clickhouse" (server) or "chdb" (embedded)
    json_inserts: HttpInserts | None  # a server store with `http_port`: the loader's JSON-lines inserts

    def execute(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "default",
                limits: QueryLimits | None = None) -> list[tuple[Any, ...]]:
        """Run one statement in the store's database; rows as tuples. `lane` names the connections to use
        (a server store keeps "control" apart from the rest); `limits` are enforced by ClickHouse."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "default",
              limits: QueryLimits | None = None) -> list[dict[str, Any]]:
        """Run one SELECT; rows as dicts keyed by column name (lane and limits as for execute)."""
        ...

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], *,
               lane: str = "default") -> None:
        """Insert one block, columnar: `data[i]` holds the values of `columns[i]` (lane as for execute)."""
        ...

    def create_database(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreError unless the store answers."""
        ...

    def close(self) -> None: ...


def _tls_options(scheme: str, options: dict[str, str]) -> dict[str, object]:
    """clickhouse-driver's TLS keywords from the URL (none unless the scheme is clickhouses)."""
    if scheme != "clickhouses":
        return {}
    tls: dict[str, object] = {"secure": True, "verify": options.get("verify", "true").lower() != "false"}
    tls.update({name: options[name] for name in ("ca_certs", "certfile", "keyfile") if name in options})
    return tls


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    parsed = urlparse(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        netloc = netloc.replace(f":{parsed.password}@", ":***@", 1)
    query = re.sub(r"(password=)[^&]*", r"\1***", parsed.query)
    return parsed._replace(netloc=netloc, query=query).geturl()


def _http_port(url: str, scheme: str, options: dict[str, str]) -> int:
    """The HTTP port for the loader's JSON-lines inserts (0: none), refused where it cannot be honoured."""
    text = options.get("http_port", "")
    if not text:
        return 0
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"store URL {redact(url)!r}: http_port must be a port number, not {text!r}")
    if scheme == "clickhouses" or options.get("alt_hosts"):
        raise ValueError(f"store URL {redact(url)!r}: http_port cannot be combined with TLS or alt_hosts "
                         "(JSON inserts go to one server in plain HTTP); drop it to insert over the native protocol")
    return int(text)


def open_store(url: str, settings: Mapping[str, Any] | None = None) -> Store:
    """Open the store a URL names; a bad URL is a ValueError that says what was expected.
    `settings`: ClickHouse settings for every query of this store (a server store only)."""
    parsed = urlparse(url)
    options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    if parsed.scheme in ("clickhouse", "clickhouses"):
        from pipeline.store.clickhouse import ClickHouseStore

        database = parsed.path.strip("/") or DEFAULT_DATABASE
        http_port = _http_port(url, parsed.scheme, options)
        return ClickHouseStore(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (9440 if parsed.scheme == "clickhouses" else 9000),
            database=database,
            user=parsed.username or options.get("user", "default"),
            password=parsed.password or options.get("password", ""),
            timeout_s=float(options.get("timeout", 30)),
            tls=_tls_options(parsed.scheme, options),
            pool_size=int(options.get("pool", 4)),
            alt_hosts=options.get("alt_hosts", ""),
            settings=settings,
            http_port=http_port,
        )
    if parsed.scheme == "chdb":
        from pipeline.store.embedded import ChdbStore

        path = parsed.path.rstrip("/")
        if not path:
            raise ValueError(f"store URL {redact(url)!r}: expected chdb:///path/to/data (a directory)")
        return ChdbStore(directory=path, database=path.rsplit("/", 1)[-1] or DEFAULT_DATABASE,
                         pool_size=int(options.get("pool", 3)), cache_mb=int(options.get("cache_mb", 128)))
    raise ValueError(f"store URL {redact(url)!r}: expected clickhouse://host:port/database or chdb:///path")
