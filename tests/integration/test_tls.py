"""TLS options: ClickHouse over TLS against the real 18.16 server; Kafka security settings mapped for
both clients (no TLS-capable broker runs here: Tansu is started plaintext, see docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka_security import KafkaSecurity
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
    env = {"SVCPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SVCPULSE_KAFKA_SSL_CAFILE": "/etc/ca.pem",
           "SVCPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SVCPULSE_KAFKA_SASL_USERNAME": "loader",
           "SVCPULSE_KAFKA_SASL_PASSWORD": "s3cret"}
    security = KafkaSecurity.from_env(env)
    assert security.kafka_python() == {
        "security_protocol": "SASL_SSL", "ssl_cafile": "/etc/ca.pem", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "loader", "sasl_plain_password": "s3cret"}
    assert security.librdkafka() == {
        "security.protocol": "sasl_ssl", "ssl.ca.location": "/etc/ca.pem", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "loader", "sasl.password": "s3cret"}
    assert "s3cret" not in repr(security)
    assert KafkaSecurity.from_env({}).kafka_python() == {} == KafkaSecurity.from_env({}).librdkafka()


def test_kafka_security_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="SVCPULSE_KAFKA_SECURITY_PROTOCOL='TLS': expected one of"):
        KafkaSecurity.from_env({"SVCPULSE_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError, match="SVCPULSE_KAFKA_SASL_MECHANISM=''"):
        KafkaSecurity.from_env({"SVCPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
