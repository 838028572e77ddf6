"""TLS options: ClickHouse over TLS against the real 18.16 server; Kafka security settings mapped for
both clients (no TLS-capable broker runs here: Tansu is started plaintext, see docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.kafka.security import KafkaSecurity
from core.settings import Settings
from pipeline.migrate import migrate
from pipeline.store import StoreError, open_store
from svcpulse.services import ClickHouseServer, free_port


@pytest.fixture(scope="module")
def tls_clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    server = ClickHouseServer(port=free_port(), workdir=tmp_path_factory.mktemp("tls") / "ch", tls_port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.mark.services
def test_clickhouse_over_tls_trusting_its_ca(tls_clickhouse: ClickHouseServer) -> None:
    ca = tls_clickhouse.home / "server.crt"
    store = open_store(f"clickhouses://127.0.0.1:{tls_clickhouse.tls_port}/tlsdb?ca_certs={ca}")
    migrate(store, log=False)
    assert store.execute("SELECT count() FROM rpc_calls") == [(0,)]
    store.close()


@pytest.mark.services
def test_clickhouse_tls_refuses_an_untrusted_certificate(tls_clickhouse: ClickHouseServer) -> None:
    store = open_store(f"clickhouses://127.0.0.1:{tls_clickhouse.tls_port}/tlsdb")  # system CAs only
    with pytest.raises(StoreError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        store.ping()


def test_kafka_security_maps_to_both_clients(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile="/etc/ca.pem",
                        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="loader",
                        kafka_sasl_password="s3cret")
    security = KafkaSecurity.from_settings(settings)
    assert security.kafka_python() == {
        "security_protocol": "SASL_SSL", "ssl_cafile": "/etc/ca.pem", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "loader", "sasl_plain_password": "s3cret"}
    assert security.librdkafka() == {
        "security.protocol": "sasl_ssl", "ssl.ca.location": "/etc/ca.pem", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "loader", "sasl.password": "s3cret"}
    assert "s3cret" not in repr(security)
    plain = KafkaSecurity.from_settings(Settings())
    assert plain.kafka_python() == {} == plain.librdkafka()


def test_kafka_security_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="SVCPULSE_KAFKA_SECURITY_PROTOCOL='TLS': expected one of"):
        KafkaSecurity.from_settings(Settings(kafka_security_protocol="TLS"))
    with pytest.raises(ValueError, match="SVCPULSE_KAFKA_SASL_MECHANISM=''"):
        KafkaSecurity.from_settings(Settings(kafka_security_protocol="SASL_SSL"))
