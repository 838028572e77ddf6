"""The loader's peer for bench/loader.py --peer: ClickHouse 18.16's own Kafka table engine + a materialized view.

18.16's system librdkafka (2.0.2) cannot talk to Tansu, so the server is started with LD_LIBRARY_PATH
at a directory holding `librdkafka.so.1` -> the librdkafka bundled in the confluent-kafka wheel, and
with <kafka> settings that start at the log's beginning and join a group in ~3 s (ENVIRONMENT.md), and
with our loader's flush interval (ENGINE_FLUSH_MS).
The Kafka table reads the topic as JSONEachRow; the view writes the same rpc_calls table (migrated
like ours) with ts computed from ts_ms. 18.16's engine has no partition/offset virtual columns, so
its rows carry no provenance (one reason it cannot deduplicate after a crash; ours does).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline import events
from pipeline.loader import LoaderConfig
from pipeline.store import Store
from svcpulse.services import ClickHouseServer

# fetch_queue_backoff_ms and fetch_wait_max_ms: the same librdkafka settings as our consumers
# (core/kafka/confluent.py, core/kafka/tuning.py), so the peer is not held back where ours is not.
_KAFKA_CONFIG = """  <kafka><auto_offset_reset>smallest</auto_offset_reset><session_timeout_ms>6000</session_timeout_ms>
    <heartbeat_interval_ms>1000</heartbeat_interval_ms><fetch_queue_backoff_ms>20</fetch_queue_backoff_ms>
    <fetch_wait_max_ms>50</fetch_wait_max_ms></kafka>
</yandex>"""
# The engine writes a block when it is full (1,048,576 rows) or when stream_flush_interval_ms runs out
# (7.5 s by default); our loader writes by size or after batch_age_s (1 s). Measured in session 13: at its
# default the engine spent a 1M drain mostly waiting (0.26 cores busy, 110,672 rows/s); with the same 1 s
# as ours, 135,161 rows/s. So the peer gets our interval too.
ENGINE_FLUSH_MS = int(LoaderConfig.batch_age_s * 1000)
_TYPES = {int: "UInt64", float: "Float64", str: "String"}


def bundled_librdkafka_dir(workdir: Path) -> Path:
    """A directory with librdkafka.so.1 pointing at the confluent-kafka wheel's own librdkafka."""
    import confluent_kafka

    found = glob.glob(str(Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs" / "librdkafka*.so*"))
    if not found:
        raise SystemExit("confluent-kafka's bundled librdkafka not found (reinstall confluent-kafka)")
    target = workdir / "librdkafka"
    target.mkdir(parents=True, exist_ok=True)
    link = target / "librdkafka.so.1"
    if not link.exists():
        os.symlink(found[0], link)
    return target


@dataclass
class KafkaEngineServer(ClickHouseServer):
    """A ClickHouse 18.16 server whose Kafka engine can reach Tansu."""

    name: str = "clickhouse-kafka-engine"

    def prepare(self) -> None:
        super().prepare()
        config = self.home / "config.xml"
        config.write_text(config.read_text().replace("</yandex>", _KAFKA_CONFIG))
        users = self.home / "users.xml"  # the default profile, which the engine's streaming uses
        users.write_text(users.read_text().replace(
            "<default>", f"<default><stream_flush_interval_ms>{ENGINE_FLUSH_MS}</stream_flush_interval_ms>", 1))

    def command(self) -> list[str]:
        return ["env", f"LD_LIBRARY_PATH={bundled_librdkafka_dir(self.workdir)}", *super().command()]


def start_engine(store: Store, bootstrap: str, topic: str, group: str) -> None:
    """Create the Kafka table and the view that drains it into rpc_calls (consumption starts now)."""
    fields = events.SCHEMAS["rpc"]
    columns = ", ".join(f"{f.name} {'UInt8' if f.name == 'v' else _TYPES[f.type]}" for f in fields)
    store.execute(f"CREATE TABLE rpc_queue ({columns}) ENGINE = Kafka('{bootstrap}', '{topic}', '{group}', "
                  "'JSONEachRow')")
    selected = ", ".join(f.name for f in fields)
    # 18.16's Kafka engine exposes no partition, offset or message time to the view: constants stand in.
    store.execute("CREATE MATERIALIZED VIEW rpc_queue_mv TO rpc_calls AS SELECT toDateTime(intDiv(ts_ms, 1000)) "
                  f"AS ts, {selected}, '{topic}' AS _topic, toUInt32(0) AS _partition, toUInt64(0) AS _offset, "
                  "toUInt64(0) AS _kafka_ts_ms FROM rpc_queue")


def stop_engine(store: Store) -> None:
    store.execute("DROP TABLE IF EXISTS rpc_queue_mv")
    store.execute("DROP TABLE IF EXISTS rpc_queue")
