"""Fixtures of the OTLP receiver's tests against real services: the receiver with its Kafka sink and a
loader into a fresh ClickHouse 18.16 database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from otlp import command
from otlp.server import Receiver
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration.helpers import LoaderThread


@pytest.fixture
def receiver(tmp_path: Path, broker: Tansu, ch_store: Store) -> Iterator[Receiver]:
    """`svcpulse otlp` as `svcpulse up` embeds it (open, free ports) with a loader into ch_store."""
    settings = Settings(kafka_bootstrap=broker.bootstrap, otlp_open=True, otlp_http_port=0, otlp_grpc_port=0,
                        otlp_spool_dir=str(tmp_path / "spool"))
    with command.embedded(settings) as running, LoaderThread(broker.bootstrap, ch_store):
        yield running
