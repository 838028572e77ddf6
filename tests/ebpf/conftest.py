"""Fixtures of the eBPF tests: one running collector per test module (BPF compile takes 3-5 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ebpf_helpers import Collector, ebpf_unavailable, start_collector, stop_collector


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    reason = ebpf_unavailable()
    if reason:
        pytest.skip(reason)
    running = start_collector()
    yield running
    assert stop_collector(running) == 0, running.stderr
