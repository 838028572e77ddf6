"""The dead-letter topic: see why messages were rejected, export them, and replay fixed ones.

`replay` sends each dead letter's original bytes (or the fixed bytes from an exported file) back to
its source topic, keyed as its emitter keys it, if they now pass the loader's own judge
(pipeline.transform.judge: the same decoder, contract and plausibility window); the rest are reported
with their reasons and kept, with their "payload cut" note and their dead-letter key.
Reading the topic uses the consumer group `svcpulse-dlq-replay`, so each dead letter is replayed once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from core.kafka import open_consumer, open_producer
from core.settings import Settings
from pipeline import events
from pipeline.topics import DLQ, KEY_FIELD, KIND_BY_TOPIC, dead_letter_key
from pipeline.transform import judge

REPLAY_GROUP = "svcpulse-dlq-replay"


@dataclass
class ReplayReport:
    replayed: int = 0
    still_invalid: list[tuple[events.Event, str]] = field(default_factory=list)

    def summary(self) -> str:
        reasons = Counter(reason for _, reason in self.still_invalid)
        lines = [f"replayed {self.replayed} message(s); {len(self.still_invalid)} still invalid"]
        lines += [f"  {count:>7}  {reason}" for reason, count in reasons.most_common(10)]
        return "\n".join(lines)


def read_dead_letters(bootstrap: str, group_id: str | None, limit: int | None = None,
                      idle_s: float = 2.0, client: str | None = None) -> Iterator[events.Event]:
    """The dead letters in the topic until it stays idle for idle_s, oldest first per partition.

    With group_id, reading starts at the group's committed position and commits as it goes (so a
    replay handles each dead letter once). Partitions are assigned, not joined: no group wait.
    Tansu answers end-offset requests at batch granularity, so "the end" is when nothing more comes.
    """
    consumer = open_consumer(client or Settings().kafka_client, bootstrap, group_id)
    consumer.assign({(DLQ, partition): None for partition in sorted(consumer.partitions_for(DLQ))})
    read = 0
    try:
        while polled := consumer.poll(idle_s):
            done: dict[tuple[str, int], int] = {}
            for message in polled:
                done[(message.topic, message.partition)] = message.offset + 1
                try:
                    event = events.decode("dlq", message.value or b"")
                except events.Rejection:
                    continue  # not ours: the DLQ only holds events the loader wrote
                yield event
                read += 1
                if limit and read >= limit:
                    return
            if group_id:
                consumer.commit(done)
    finally:
        consumer.close()


def export(dead_letters: Iterator[events.Event], out: TextIO) -> int:
    """Write dead letters as JSON lines (edit `payload` to fix them, then `replay --from-file`)."""
    written = 0
    for event in dead_letters:
        out.write(json.dumps(event, ensure_ascii=False) + "\n")
        written += 1
    return written


def read_export(path: Path) -> Iterator[events.Event]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield events.validate("dlq", json.loads(line))
                except (ValueError, events.Rejection) as err:
                    raise ValueError(f"{path}:{number}: not a dead-letter event: {err}") from None


def replay(bootstrap: str, dead_letters: Iterator[events.Event], requeue_invalid: bool,
           client: str | None = None, max_age_s: float = 7 * 86_400, max_future_s: float = 3_600) -> ReplayReport:
    """Send the dead letters that now pass the loader's judge back to their source topics.

    With requeue_invalid (replaying from the topic itself), those still invalid go back to the DLQ
    with their current reason once reading is done, so nothing is lost and the next replay sees them.
    """
    report = ReplayReport()
    window = events.plausible_window(time.time_ns() // 1_000_000, max_age_s, max_future_s)
    producer = open_producer(client or Settings().kafka_client, bootstrap, client_id="svcpulse-dlq-replay")
    try:
        for event in dead_letters:
            raw = events.dead_letter_payload(event)
            kind = KIND_BY_TOPIC.get(event["topic"])
            try:
                if kind is None or kind == "dlq":
                    raise events.Rejection(f"source topic '{event['topic']}' is not a loaded topic")
                if note := events.cut_note(event):  # only the start survives: judging it would misreport
                    raise events.Rejection(event["reason"].removesuffix(note))
                fixed = judge(kind, raw, window)
            except events.Rejection as rejection:
                report.still_invalid.append((event, rejection.reason))
                continue
            producer.produce(event["topic"], raw, key=str(fixed[KEY_FIELD[kind]]).encode())
            report.replayed += 1
        if requeue_invalid:
            for event, reason in report.still_invalid:
                producer.produce(DLQ, events.encode("dlq", events.rejudged(event, reason)),
                                 key=dead_letter_key(event["topic"], event["partition"]))
        producer.flush(30)
    finally:
        producer.close(10)
    return report
