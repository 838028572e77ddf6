"""Every rollup next to the same aggregate recomputed from the raw table it is fed from: counts and
integer sums per bucket and key (digests are left out: they are estimates; their counts are not)."""

from __future__ import annotations

from pipeline.store import Store

_RPC = "callee, interface, instance, caller, version, side"
_EDGE = "caller, callee, side"
_EDGE_INSTANCE = "caller, callee, side, instance"
_TCP_EDGE = "cgroup, raddr, rport"
_MINUTE, _TEN, _HOUR = "toStartOfMinute(ts)", "toDateTime(intDiv(toUInt32(ts), 600) * 600)", "toStartOfHour(ts)"
_CALLS = (("countMerge(calls)", "count()"), ("sumMerge(errors)", "sum(toUInt64(status = 'error'))"),
          ("sumMerge(timeouts)", "sum(toUInt64(status = 'timeout'))"))
_INSTANCE_CALLS = (("sum(calls)", "count()"), ("sum(failures)", "sum(toUInt64(status != 'ok'))"))
_TCP_CALLS = (("sum(attempts)", "count()"), ("sum(ok)", "sum(toUInt64(outcome = 'ok'))"),
              ("sum(retransmits)", "sum(retransmits)"))
_CLIENT_TCP = "role = 'client' AND outcome != ''"

# rollup: (raw table, bucket column, bucket of ts, keys, (rollup measure, raw measure)..., raw filter,
#          rollup filter)
ROLLUPS: dict[str, tuple[str, str, str, str, tuple[tuple[str, str], ...], str, str]] = {
    "rpc_calls_1m": ("rpc_calls", "minute", _MINUTE, _RPC, _CALLS, "1", "1"),
    "rpc_calls_1h": ("rpc_calls", "hour", _HOUR, _RPC, _CALLS, "1", "1"),
    "rpc_edges_1m": ("rpc_calls", "minute", _MINUTE, _EDGE, _CALLS, "1", "1"),
    "rpc_edges_10m": ("rpc_calls", "minute", _TEN, _EDGE, _CALLS, "1", "1"),
    "rpc_edges_1h": ("rpc_calls", "hour", _HOUR, _EDGE, _CALLS, "1", "1"),
    "rpc_edge_instances_1m": ("rpc_calls", "minute", _MINUTE, _EDGE_INSTANCE, _INSTANCE_CALLS, "1", "1"),
    "rpc_edge_instances_10m": ("rpc_calls", "minute", _TEN, _EDGE_INSTANCE, _INSTANCE_CALLS, "1", "1"),
    "rpc_edge_instances_1h": ("rpc_calls", "hour", _HOUR, _EDGE_INSTANCE, _INSTANCE_CALLS, "1", "1"),
    "workloads_1m": ("rpc_calls", "minute", _MINUTE, "cgroup, workload, workload_kind, host",
                     (("countMerge(events)", "count()"),), "workload != ''", "source = 'rpc'"),
    "tcp_connections_1m": ("tcp_connections", "minute", _MINUTE, "host, cgroup, raddr, rport, role",
                           (("countMerge(connections)", "count()"), ("sumMerge(tx_bytes)", "sum(tx_bytes)"),
                            ("sumMerge(rx_bytes)", "sum(rx_bytes)")), "1", "1"),
    "tcp_edges_1m": ("tcp_connections", "minute", _MINUTE, _TCP_EDGE, _TCP_CALLS, _CLIENT_TCP, "1"),
    "tcp_edges_1h": ("tcp_connections", "hour", _HOUR, _TCP_EDGE, _TCP_CALLS, _CLIENT_TCP, "1"),
}


def _rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in store.execute(sql)]


def differences(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """For each rollup, the (bucket, keys..., measures...) rows that differ between the rollup and the raw
    table's own aggregate (the rollup's rows first, each prefixed 'rollup' or 'raw'); {} when all agree."""
    found = {}
    for rollup, (raw, bucket, of_ts, keys, measures, raw_where, rollup_where) in ROLLUPS.items():
        # Buckets as seconds: the driver returns a DateTime column with its time zone, an expression without.
        rolled = _rows(store, f"SELECT toUInt32({bucket}), {keys}, {', '.join(m for m, _ in measures)} FROM {rollup} "
                              f"WHERE {rollup_where} GROUP BY {bucket}, {keys}")
        recomputed = _rows(store, f"SELECT toUInt32({of_ts}) AS {bucket}, {keys}, {', '.join(r for _, r in measures)} "
                                  f"FROM {raw} WHERE {raw_where} GROUP BY {bucket}, {keys}")
        apart = sorted({("rollup", *row) for row in set(rolled) - set(recomputed)}
                       | {("raw", *row) for row in set(recomputed) - set(rolled)}, key=str)
        if apart:
            found[rollup] = apart
    return found


def rollup_calls(store: Store) -> int:
    return int(store.execute("SELECT countMerge(calls) FROM rpc_calls_1m")[0][0])
