"""What every RPC interceptor shares: the config, status mapping, the caller header, event building.

Status mapping (decided here, documented in docs/collect-rpc.md): an outcome is an "error" when the
callee failed to serve — HTTP 5xx and 429 (it shed load), an exception, gRPC codes that mean the
server side broke or shed load; a "timeout" when the deadline passed (httpx.TimeoutException,
HTTP 504, DEADLINE_EXCEEDED); everything else is "ok", including 4xx: a 404 or 400 is the caller's
mistake, and counting it against the callee would eject healthy instances. The code is always kept.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from collectors.workload import names_of
from core.settings import Settings
from pipeline.events import CONTRACT_VERSION

CALLER_HEADER = "x-svcpulse-caller"  # sent by our clients so servers can name their caller
VERSION_HEADER = "x-svcpulse-version"  # sent by our servers so clients learn the callee's version
UNMATCHED = "unmatched"  # interface label when no route template is known (never the raw path)

_GRPC_ERRORS = frozenset(
    {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNIMPLEMENTED", "RESOURCE_EXHAUSTED", "ABORTED"}
)


@cache
def own_cgroup(proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup v2 path (the "0::" line), "" when there is none."""
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return ""


@cache
def own_workload() -> tuple[str, str]:
    """(workload, workload_kind) this process reports: SVCPULSE_WORKLOAD[_KIND] when set (e.g. in a
    Deployment's env), else named from its cgroup. Inside a container's cgroup namespace a process sees
    itself at "/", which names nothing: ("", "") then, and the loader cannot do better either."""
    settings = Settings()
    if settings.workload:
        return settings.workload, settings.workload_kind
    path = own_cgroup()
    return ("", "") if path in ("", "/") else names_of(path)


@dataclass(frozen=True)
class RpcConfig:
    """Who is measuring: this service's name, version and instance; how many calls to sample."""

    service: str
    version: str = ""
    instance: str = ""  # "host:port" of this instance (server side); "" = taken from the connection
    sample_rate: float = 1.0  # 0..1, the fraction of calls that produce an event
    host: str = field(default_factory=socket.gethostname)
    cgroup: str = field(default_factory=own_cgroup)
    workload: str = field(default_factory=lambda: own_workload()[0])
    workload_kind: str = field(default_factory=lambda: own_workload()[1])

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within 0..1, got {self.sample_rate}")

    def sampled(self) -> bool:
        rate = self.sample_rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)


def http_status(code: int) -> str:
    if code == 504:
        return "timeout"
    if code >= 500 or code == 429:
        return "error"
    return "ok"


def grpc_status(code_name: str) -> str:
    if code_name == "DEADLINE_EXCEEDED":
        return "timeout"
    return "error" if code_name in _GRPC_ERRORS else "ok"


def build_event(
    config: RpcConfig,
    *,
    caller: str,
    callee: str,
    interface: str,
    instance: str,
    side: str,
    started: float,
    status: str,
    code: str,
    version: str,
) -> dict[str, object]:
    """A contract v1 rpc event; `started` is a time.perf_counter() reading taken at call start."""
    latency_ms = (time.perf_counter() - started) * 1000.0
    return {
        "v": CONTRACT_VERSION,
        "ts_ms": time.time_ns() // 1_000_000,
        "caller": caller,
        "callee": callee,
        "interface": interface,
        "instance": instance,
        "side": side,
        "latency_ms": latency_ms if latency_ms > 0 else 0.0,
        "status": status,
        "code": code,
        "version": version,
        "host": config.host,
        "cgroup": config.cgroup,
        "workload": config.workload,
        "workload_kind": config.workload_kind,
    }
