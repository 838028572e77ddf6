"""RPC interceptors that emit contract `rpc` events: ASGI (server), httpx (client), gRPC (both).

Each interceptor times the call, builds one event with `common.build_event` and hands it to the
process's `emitter` (a bounded in-memory queue drained by one background thread into a sink), so
the call path never waits for Kafka.
"""

from collectors.rpc.common import RpcConfig
from collectors.rpc.emitter import Emitter, configure_emitter, get_emitter

__all__ = ["Emitter", "RpcConfig", "configure_emitter", "get_emitter"]
