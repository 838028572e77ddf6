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
from weigh.kafka import Consumer, Message, offsets_at_time, reader
from weights.message import FeedMessage, decode

log = logging.getLogger("svcpulse.weigh")


def seek_all(consumer: Consumer, topic: str, since_ms: int) -> dict[tuple[str, int], int]:
    """Assign every partition of `topic` from since_ms; returns the high watermarks to catch up to."""
    tps = [(topic, p) for p in sorted(consumer.partitions_for(topic))]
    consumer.assign(dict.fromkeys(tps))
    consumer.assign(offsets_at_time(consumer, dict.fromkeys(tps, since_ms)))
    return {tp: consumer.watermarks(tp)[1] for tp in tps}


def caught_up(consumer: Consumer, targets: dict[tuple[str, int], int]) -> bool:
    return all((consumer.position(tp) or 0) >= end for tp, end in targets.items())


def apply_message(message: Message, into: dict[str, FeedMessage]) -> FeedMessage | None:
    """Keep the newest message per service; a tombstone removes the service; bad ones are logged.
    Returns the message decoded (None when it was bad)."""
    try:
        feed = decode(message.key, message.value)
    except ValueError as err:
        log.warning("%s[%d]@%d skipped: %s", message.topic, message.partition, message.offset, err)
        return None
    if feed.feed is None:
        into.pop(feed.service, None)
    else:
        into[feed.service] = feed
    return feed


def newest_feeds(client: str, bootstrap: str, since_ms: int, wanted: Callable[[str], bool] = lambda _: True,
                 timeout_s: float = 30.0) -> dict[str, FeedMessage]:
    """service -> its newest message since since_ms (services `wanted` only)."""
    consumer = reader(client, bootstrap, "svcpulse-weigh-restore")
    found: dict[str, FeedMessage] = {}
    try:
        targets = seek_all(consumer, topics.WEIGHTS, since_ms)
        deadline = time.monotonic() + timeout_s
        while not caught_up(consumer, targets) and time.monotonic() < deadline:
            for message in consumer.poll(0.2):
                if message.key and wanted(message.key.decode("utf-8", "replace")):
                    apply_message(message, found)
    finally:
        consumer.close()
    return found
