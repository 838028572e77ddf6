"""TLS and SASL for every Kafka client svcpulse makes, from the SVCPULSE_KAFKA_* settings (core.settings).

One definition, mapped to both clients' spellings (kafka-python keyword arguments, librdkafka
properties), so the loader, the DLQ tools, the weigher, the API and the collectors' sink connect the
same way:

  SVCPULSE_KAFKA_SECURITY_PROTOCOL  PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
  SVCPULSE_KAFKA_SSL_CAFILE         CA bundle that signed the brokers' certificates
  SVCPULSE_KAFKA_SSL_CERTFILE       client certificate (mutual TLS), with
  SVCPULSE_KAFKA_SSL_KEYFILE        its private key
  SVCPULSE_KAFKA_SASL_MECHANISM     PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
  SVCPULSE_KAFKA_SASL_USERNAME, SVCPULSE_KAFKA_SASL_PASSWORD
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from core.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(f"SVCPULSE_KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: expected one of "
                             f"{', '.join(PROTOCOLS)}")
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism not in MECHANISMS:
            raise ValueError(f"SVCPULSE_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r}: expected one of "
                             f"{', '.join(MECHANISMS)} with {self.security_protocol}")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        return cls(**{f.name: getattr(settings, f"kafka_{f.name}") for f in fields(cls)})

    @classmethod
    def current(cls) -> KafkaSecurity:
        """The security of this process's settings (environment and .env), read when a client is made."""
        return cls.from_settings(Settings())

    def __repr__(self) -> str:  # never print the password
        return f"KafkaSecurity({self.security_protocol}, sasl={self.sasl_mechanism or '-'})"

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's clients (empty for PLAINTEXT)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                options[name] = getattr(self, name)
        if self.sasl_mechanism:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options if self.security_protocol != "PLAINTEXT" else {}

    def librdkafka(self) -> dict[str, Any]:
        """Properties for confluent-kafka's clients (empty for PLAINTEXT)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        names = {"ssl_cafile": "ssl.ca.location", "ssl_certfile": "ssl.certificate.location",
                 "ssl_keyfile": "ssl.key.location", "sasl_mechanism": "sasl.mechanism",
                 "sasl_username": "sasl.username", "sasl_password": "sasl.password"}
        options = {"security.protocol": self.security_protocol.lower()}
        options.update({prop: getattr(self, name) for name, prop in names.items() if getattr(self, name)})
        return options
