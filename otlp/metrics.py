"""The receiver's Prometheus metrics (served on /metrics of the OTLP/HTTP port, with the sink's own:
svcpulse_sink_spooled_total{kind="rpc"} counts events written to the disk spool while Kafka is away)."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("svcpulse_otlp_requests", "Export requests answered, by transport and HTTP-style status",
                   ["transport", "status"])
RECEIVED = Counter("svcpulse_otlp_spans_received", "Spans in export requests that were decoded", ["transport"])
MAPPED = Counter("svcpulse_otlp_spans_mapped", "Spans turned into rpc events and handed to the sink")
REJECTED = Counter("svcpulse_otlp_spans_rejected", "Spans refused, by reason (reported as partial_success)",
                   ["reason"])
SKIPPED = Counter("svcpulse_otlp_spans_skipped", "Spans that are no rpc call (internal, messaging, measured by "
                  "an interceptor), by reason", ["reason"])
