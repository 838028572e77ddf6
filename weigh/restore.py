"""Reading svcpulse.weights back: the newest message per service since a point in time.

Used by a weigh worker taking partitions over (engine memory and membership of their services) and
by every API replica at start (the feeds it serves). Reads every partition without a group, from
the first record at or after `since_ms`, until the high watermark seen at the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline import topics
from weigh.kafka import Consumer, Message, offsets_at_time
from weights.message import FeedMessage, decode

log = logging.getLogger("svcpulse.weigh")


def seek_all(consumer: Consumer, bootstrap: str, topic: str, since_ms: int) -> dict[tuple[str, int], int]:
    """Assign every partition of `topic` from since_ms; returns the high watermarks to catch up to."""
    tps = [(topic, p) for p in sorted(consumer.partitions_for(topic))]
    consumer.assign(tps)
    targets = {}
    for tp, offset in offsets_at_time(bootstrap, dict.fromkeys(tps, since_ms)).items():
        consumer.seek(tp, offset)
        targets[tp] = consumer.watermarks(tp)[1]
    return targets


def apply_message(message: Message, into: dict[str, FeedMessage]) -> None:
    """Keep the newest message per service; a tombstone removes the service; bad ones are logged."""
    try:
        feed = decode(message.key, message.value)
    except ValueError as err:
        log.warning("%s[%d]@%d skipped: %s", message.topic, message.partition, message.offset, err)
        return
    if feed.feed is None:
        into.pop(feed.service, None)
    else:
        into[feed.service] = feed


def newest_feeds(bootstrap: str, since_ms: int, wanted: Callable[[str], bool] = lambda _: True,
                 timeout_s: float = 30.0) -> dict[str, FeedMessage]:
    """service -> its newest message since since_ms (services `wanted` only)."""
    consumer = Consumer(bootstrap, None, "svcpulse-weigh-restore")
    found: dict[str, FeedMessage] = {}
    try:
        targets = seek_all(consumer, bootstrap, topics.WEIGHTS, since_ms)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in targets.items()) and time.monotonic() < deadline:
            records = consumer.poll(0.5)
            if not records and all(consumer.lag(tp) == 0 for tp in targets):
                break
            for message in records:
                if message.key and wanted(message.key.decode("utf-8", "replace")):
                    apply_message(message, found)
    finally:
        consumer.close()
    return found
