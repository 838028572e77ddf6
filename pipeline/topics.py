"""Kafka topic names and which event kind and table each carries: the one place they are spelled."""

from __future__ import annotations

TCP = "svcpulse.tcp"
RPC = "svcpulse.rpc"
LOAD = "svcpulse.load"
DLQ = "svcpulse.dlq"

KIND_BY_TOPIC: dict[str, str] = {TCP: "tcp", RPC: "rpc", LOAD: "load", DLQ: "dlq"}
TOPIC_BY_KIND: dict[str, str] = {kind: topic for topic, kind in KIND_BY_TOPIC.items()}
TABLE_BY_KIND: dict[str, str] = {"tcp": "tcp_connections", "rpc": "rpc_calls", "load": "instance_load"}
LOADED_TOPICS: tuple[str, ...] = (TCP, RPC, LOAD)  # what the loader consumes (the DLQ is not loaded)
# The message key of each kind, so per-key order holds (DESIGN.md: tcp/load by host, rpc by callee).
KEY_FIELD: dict[str, str] = {"tcp": "host", "rpc": "callee", "load": "host"}


def dead_letter_key(topic: str, partition: int) -> bytes:
    """The key of a dead letter: its source partition, so one partition's dead letters stay in order."""
    return f"{topic}:{partition}".encode()
