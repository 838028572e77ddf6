"""OpenTelemetry in: `svcpulse otlp` receives OTLP traces (HTTP and gRPC) and turns each SERVER or CLIENT
span into a contract v1 rpc event through the collectors' sink (docs/otlp.md). mapping.py is the pure
span -> event mapping; decode, guard and ingest do the checks; http, grpc_service and server serve."""
