"""Reference routing policies for the benchmark against the peers (issue 16, docs/weights.md).

Each module follows its peer's own documentation and code, with the documented defaults cited where
they are set. `POLICIES` maps the names used in tables to factories taking a `Context`.
"""

from __future__ import annotations

from bench.policies.base import Context, Factory, LoadReport, Policy, Result
from bench.policies.envoy import EnvoyLeastRequest
from bench.policies.grpc_wrr import GrpcWrr
from bench.policies.msec import Msec
from bench.policies.oracle import Oracle
from bench.policies.peak_ewma import PeakEwma
from bench.policies.round_robin import RoundRobin
from bench.policies.svcpulse import Svcpulse

POLICIES: dict[str, Factory] = {
    "round robin": RoundRobin,
    "envoy p2c+outlier": EnvoyLeastRequest,
    "grpc wrr": GrpcWrr,
    "peak ewma": PeakEwma,
    "msec": Msec,
    "svcpulse swrr": lambda ctx: Svcpulse(ctx, "swrr"),
    "svcpulse p2c": lambda ctx: Svcpulse(ctx, "p2c"),
    "svcpulse swrr-local": lambda ctx: Svcpulse(ctx, "swrr-local"),
    "oracle": Oracle,  # a reference, not a peer: knows the fault
}
PEERS = ("round robin", "envoy p2c+outlier", "grpc wrr", "peak ewma", "msec")
SVCPULSE = ("svcpulse swrr", "svcpulse p2c", "svcpulse swrr-local")

__all__ = ["PEERS", "POLICIES", "SVCPULSE", "Context", "Factory", "LoadReport", "Policy", "Result"]
