"""Validated settings, from the environment (SVCPULSE_*) or a .env file; CLI flags override them."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SVCPULSE_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, host:port[,...]")
    store_url: str = Field("clickhouse://127.0.0.1:19000/svcpulse",
                           description="clickhouse://host:port/db (clickhouses:// for TLS; ?user=&password=&ca_certs=) "
                           "or chdb:///path/db (embedded)")
    clickhouse_cluster: str = Field("", description="ClickHouse cluster (remote_servers name): migrate creates "
                                    "Replicated tables ON CLUSTER and Distributed tables over the sharded ones")
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python", description="Kafka client of the loader: kafka-python or confluent (librdkafka: faster, "
        "less CPU)")
    sink_kafka_client: Literal["kafka-python", "confluent"] = Field(
        "confluent", description="Kafka client of the collectors' sink (collect tcp/load, interceptors): confluent "
        "(librdkafka, ~5x less CPU per event: docs/sink.md) or kafka-python")
    kafka_security_protocol: str = Field("PLAINTEXT", description="Kafka security: PLAINTEXT, SSL, "
                                         "SASL_PLAINTEXT or SASL_SSL (every client: loader, sink, API, tools)")
    kafka_ssl_cafile: str = Field("", description="CA bundle that signed the Kafka brokers' certificates")
    kafka_ssl_certfile: str = Field("", description="Kafka client certificate (mutual TLS)")
    kafka_ssl_keyfile: str = Field("", description="private key of the Kafka client certificate")
    kafka_sasl_mechanism: str = Field("", description="Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    kafka_sasl_username: str = Field("", description="Kafka SASL user name")
    kafka_sasl_password: str = Field("", description="Kafka SASL password")
    group_id: str = Field("svcpulse-loader", description="Kafka consumer group of the loaders")
    event_max_age_s: int = Field(0, ge=0, description="the loader dead-letters events whose ts_ms is older than this "
                                 "(seconds); 0 = the raw retention (SVCPULSE_RETENTION_DAYS_RAW days)")
    event_max_future_s: int = Field(3600, ge=0, description="the loader dead-letters events whose ts_ms is further "
                                    "ahead of its clock than this (seconds)")
    loader_processes: str = Field("1", description="`svcpulse load` processes in the consumer group: N or auto "
                                  "(one per core)")
    loader_stall_s: float = Field(60.0, gt=0, description="/readyz of the loader and the API says not ready when "
                                  "loading committed nothing this long while messages wait")
    batch_rows: int = Field(100_000, ge=1, description="flush a batch at this many rows")
    batch_age_s: float = Field(1.0, gt=0, description="flush a batch at this age (seconds)")
    partitions: int = Field(4, ge=1, description="partitions of topics the loader creates")
    broker_roll_mb: int = Field(256, ge=0, description="`svcpulse up`: roll the embedded broker to a fresh "
                                "generation when its memory passes this many MB (0 = never; docs/operations.md)")
    api_host: str = Field("127.0.0.1", description="API listen address")
    api_port: int = Field(8000, ge=1, le=65535, description="API listen port")
    retention_days_raw: int = Field(7, ge=1, description="days kept in raw tables")
    retention_days_rollup: int = Field(90, ge=1, description="days kept in the rollups and weight_history")
    retention_days_load: int = Field(30, ge=1, description="days kept in instance_load")
    users_file: str = Field("", description="users, the roles each may hold, sha256 token hashes (JSON or TOML)")
    users_reload_s: float = Field(2.0, ge=0, description="check the users file this often and reload it when "
                                  "it changed (0 = read at start only)")
    feed_open: bool = Field(False, description="serve the weight feed and other reads without a token")
    weights_interval_s: float = Field(2.0, gt=0, le=5, description="one weight cycle (at most 5 s): "
                                      "weight_history rows, heartbeats and staleness are counted in cycles")
    weights_window_s: int = Field(10, ge=2, le=300, description="sliding window of calls the weights judge")
    weigh_group_id: str = Field("svcpulse-weigh", description="Kafka consumer group of the `svcpulse weigh` "
                                "workers (services are sharded by partition of svcpulse.rpc)")
    weigh_tick_s: float = Field(0.5, ge=0.05, le=5, description="a weigh worker steps the engine this often and "
                                "publishes a service's feed as soon as its weights change")
    weigh_standby: bool = Field(True, description="each weigh worker also counts one peer's partitions (twice "
                                "the counting) and publishes them when that peer falls silent: a killed "
                                "worker's services continue within the session timeout + one cycle")
    weights_heartbeat_cycles: int = Field(2, ge=1, le=10, description="an unchanged feed is published again "
                                          "every N cycles (a heartbeat: readers see it is current)")
    weights_stale_cycles: int = Field(3, ge=2, le=100, description="a feed older than N cycles is served "
                                      "marked stale, with the reason (never emptied)")
    lease_group_id: str = Field("svcpulse-leader", description="Kafka consumer group whose one member holds "
                                "the lease for work done once: alarms, webhooks, canary aborts")
    forget_instance_s: int = Field(300, ge=10, description="an instance a discovery policy "
                                   "admitted leaves the feed this long after its last call; observed entities expire")
    cap_services_per_hour: int = Field(200, ge=1, description="new services telemetry may create per hour "
                                       "(unregistered callees tracked as observed); past it events are stored, "
                                       "no entity is created")
    cap_instances_per_service: int = Field(1000, ge=1, description="instances telemetry may create per service "
                                           "(observed or admitted by a discovery policy)")
    cap_interfaces_per_service: int = Field(500, ge=1, description="interfaces telemetry may create per service")
    canary_error_margin: float = Field(0.02, ge=0, le=1, description="abort a gray release when the canary's "
                                       "error rate exceeds the baseline's by more than this (0.02 = 2 points)")
    canary_p99_margin: float = Field(0.5, ge=0, description="...or its p99 exceeds the baseline's by this "
                                     "fraction (0.5 = 50% slower)")
    canary_min_requests: int = Field(50, ge=1, description="canary calls in the window needed before judging")
    capacity_target_cpu: float = Field(0.7, gt=0, le=1, description="capacity = rps at this CPU utilisation")
    capacity_slo_p99_ms: float = Field(300.0, gt=0, description="capacity = rps before p99 crosses this (ms)")
    capacity_min_instances: int = Field(2, ge=1, description="never recommend fewer instances (redundancy)")
    alarm_rules_file: str = Field("", description="alarm rules (JSON); read at start, read-only through the API")
    alarm_interval_s: float = Field(60.0, gt=0, description="evaluate the alarm rules this often")
    alarm_webhook_url: str = Field("", description="POST a JSON message here when an alarm fires or resolves")
    alarm_webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="webhook request timeout")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body the API accepts (413 above)")
    max_query_bytes: int = Field(8192, ge=256, description="longest query string the API accepts (414 above)")
    write_rate_per_minute: float = Field(120.0, gt=0, description="writes per minute per caller (the "
                                         "authenticated user, else the client address)")
    write_burst: int = Field(30, ge=1, description="writes a caller may make at once before the rate applies (429)")
    read_rate_per_minute: float = Field(600.0, gt=0, description="query-API reads per minute per caller (the "
                                        "weight feed, health and metrics are not limited)")
    read_burst: int = Field(120, ge=1, description="reads a caller may make at once before the rate applies (429)")
    query_timeout_s: float = Field(20.0, gt=0, description="ClickHouse stops an API read after this many "
                                   "seconds (max_execution_time, whole seconds); the API answers 503 with advice "
                                   "to narrow the range")
    query_max_memory_bytes: int = Field(2 << 30, ge=0, description="ClickHouse memory limit per API read "
                                        "(max_memory_usage; 0 = the server's default); over it: 422")
    control_query_timeout_s: float = Field(10.0, gt=0, description="time limit of the control plane's "
                                           "queries (the control tables read at start by weigh workers and API "
                                           "replicas, weight_history, the lease holder's records): they run on a "
                                           "connection of their own, at a higher priority")
    token: str = Field("", description="bearer token `svcpulse balancer` sends to the API (a viewer's)")
    xds_open: bool = Field(False, description="serve Envoy's REST EDS (POST /v3/discovery:endpoints) without a "
                           "token: Envoy's REST xDS client cannot send one")
    api_token: str = Field("", description="viewer token Grafana's Infinity datasource sends to the API "
                           "(`dashboards push`)")
    clickhouse_password: str = Field("", description="password of Grafana's ClickHouse datasource (`dashboards push`)")
    grafana_token: str = Field("", validation_alias=AliasChoices("SVCPULSE_GRAFANA_TOKEN", "GRAFANA_TOKEN"),
                               description="Grafana service-account token for `dashboards push` (or $GRAFANA_TOKEN)")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API "
                                    "cross-site (CORS); empty = CORS off")
    otlp_host: str = Field("127.0.0.1", description="OTLP receiver listen address (0.0.0.0 in a container)")
    otlp_http_port: int = Field(4318, ge=0, le=65535, description="OTLP/HTTP port (POST /v1/traces, /metrics)")
    otlp_grpc_port: int = Field(4317, ge=0, le=65535, description="OTLP/gRPC port (TraceService/Export)")
    otlp_open: bool = Field(False, description="accept spans without a token (else a bearer token of a user "
                            "allowed the `ingest` role)")
    otlp_spool_dir: str = Field(".svcpulse/otlp-spool", description="where the OTLP receiver keeps events while "
                                "Kafka is unreachable")
    otlp_max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest OTLP request, on the wire "
                                        "and decompressed (413 above)")
    otlp_max_spans: int = Field(10_000, ge=1, description="spans looked at per OTLP request; the rest are "
                                "rejected (partial_success)")
    otlp_max_attributes: int = Field(512, ge=1, description="attributes per span or resource; a span with more "
                                     "is rejected")
    otlp_rate_spans_per_s: float = Field(100_000.0, gt=0, description="spans per second each ingest token may "
                                         "send (burst: two seconds' worth); 429 above")
    workload: str = Field("", description="workload name the RPC interceptors report (e.g. shop/checkout, set in "
                          "the Deployment); empty = named from the process's cgroup")
    workload_kind: str = Field("", description="kind of SVCPULSE_WORKLOAD (e.g. deployment); empty = from the cgroup")
    k8s_names: Literal["auto", "on", "off"] = Field(
        "auto", description="collectors name pods by their owner through the Kubernetes API (namespace/deployment): "
        "auto = when running in a cluster with a service account, on, off")
    k8s_api_url: str = Field("", description="Kubernetes API server URL; empty = in-cluster "
                             "(https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT)")
    kubernetes_service_host: str = Field("", validation_alias=AliasChoices(
        "SVCPULSE_KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"), description="API server address Kubernetes "
        "puts in every pod's environment (read as KUBERNETES_SERVICE_HOST too)")
    kubernetes_service_port: int = Field(443, ge=1, le=65535, validation_alias=AliasChoices(
        "SVCPULSE_KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT"), description="API server port (read as "
        "KUBERNETES_SERVICE_PORT too)")
    k8s_service_account_dir: str = Field("/var/run/secrets/kubernetes.io/serviceaccount", description="the "
                                         "collector pod's service account (token, ca.crt) for the Kubernetes API")
    node_name: str = Field("", description="this node's Kubernetes name (downward API spec.nodeName): collectors "
                           "list only its pods; empty = every pod of the cluster")
    k8s_refresh_s: float = Field(30.0, ge=1, description="re-list the node's pods this often (and when an unknown "
                                 "pod appears, at most every 5 s)")
