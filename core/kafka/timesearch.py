"""offsets_for_times that holds on every broker: the broker's answer, checked, else a binary search.

Kafka answers ListOffsets-by-timestamp from its time index. Tansu 0.6 (the embedded and test broker)
accepts the request but answers the partition's first offset whatever the time, with both clients, so
a consumer that seeks back "60 s" would re-read the whole log. The broker's answer is therefore
checked with two reads (the message at the answer is at or after the time, the one before it is
older); when the check fails, the offset is found by a binary search over [low, high) that reads one
fetch per step (about log2(n) round trips: ~24 for 10 million messages). Like Kafka's time index,
the search assumes timestamps grow with offsets, which holds for producer time from one sink and for
broker time; with interleaved producers' clocks the answer is an offset near the time, not the first.
"""

from __future__ import annotations

from collections.abc import Callable

from core.kafka.abstract import Message, TopicPartition

# Messages at and after an offset, as one fetch returns them (empty when there are none).
ReadFrom = Callable[[TopicPartition, int], list[Message]]


def _first_at_or_after(messages: list[Message], offset: int, time_ms: int) -> Message | None:
    return next((m for m in messages if m.offset >= offset and m.timestamp_ms >= time_ms), None)


def answer_holds(partition: TopicPartition, time_ms: int, answer: int | None, low: int, high: int,
                 read_from: ReadFrom) -> bool:
    """True when the broker's answer is right: its message is at/after the time, its predecessor older
    (for None: the messages from the last offset the broker vouches for on are all older)."""
    if answer is None:
        return all(m.timestamp_ms < time_ms for m in read_from(partition, max(high - 1, low)))
    at = read_from(partition, answer)
    if not at or at[0].timestamp_ms < time_ms:
        return False
    if answer <= low:
        return True
    before = [m for m in read_from(partition, answer - 1) if m.offset == answer - 1]
    return bool(before) and before[0].timestamp_ms < time_ms


def search(partition: TopicPartition, time_ms: int, low: int, high: int, read_from: ReadFrom) -> int | None:
    """The first offset in the partition whose timestamp is >= time_ms (timestamps assumed to grow)."""
    lo, hi = low, max(high - 1, low)  # high - 1: the last offset the broker vouches for exists
    while lo < hi:
        mid = (lo + hi) // 2
        messages = read_from(partition, mid)
        if not messages or messages[0].timestamp_ms >= time_ms:
            hi = mid
        elif (found := _first_at_or_after(messages, mid, time_ms)) is not None:
            return found.offset
        else:
            lo = messages[-1].offset + 1
    # lo may sit inside or past the last batch (Tansu's high watermark is that batch's base + 1).
    tail = read_from(partition, min(lo, max(high - 1, low)))
    found = _first_at_or_after(tail, lo, time_ms)
    return found.offset if found is not None else None


def resolve(times: dict[TopicPartition, int], broker_answers: dict[TopicPartition, int | None],
            watermarks: Callable[[TopicPartition], tuple[int, int]],
            read_from: ReadFrom) -> dict[TopicPartition, int | None]:
    """Per partition: the broker's answer when it holds, else the searched one."""
    resolved: dict[TopicPartition, int | None] = {}
    for partition, time_ms in times.items():
        low, high = watermarks(partition)
        answer = broker_answers.get(partition)
        if answer_holds(partition, time_ms, answer, low, high, read_from):
            resolved[partition] = answer
        else:
            resolved[partition] = search(partition, time_ms, low, high, read_from)
    return resolved
