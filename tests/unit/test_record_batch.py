"""svcpulse.record_batch writes Kafka v2 batches that a client library reads back as intended."""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from svcpulse import record_batch
from svcpulse.kafka_wire import batches


def test_a_filler_is_one_valid_control_batch_spanning_the_gap() -> None:
    parsed = DefaultRecordBatch(record_batch.filler(1000, 1_700_000_000_000))
    assert parsed.validate_crc() and parsed.is_control_batch
    assert parsed.last_offset_delta == 999 and parsed.next_offset == 1000
    assert record_batch.records(record_batch.filler(1, 0)) == []  # consumers see no data in it
    with pytest.raises(ValueError):
        record_batch.filler(0, 0)


def test_sparse_records_keep_their_offsets_timestamps_keys_and_headers() -> None:
    kept = [record_batch.Record(105, 1_700_000_000_500, b"k1", b"v1", ()),
            record_batch.Record(109, 1_700_000_000_100, b"k2", None, (("h", b"x"),))]
    raw = record_batch.sparse(kept, base_offset=100)
    parsed = DefaultRecordBatch(raw)
    assert parsed.validate_crc() and parsed.last_offset_delta == 9
    # as fetched back from a broker that put the batch at offset 100
    fetched = (100).to_bytes(8, "big") + raw[8:]
    assert record_batch.records(fetched) == kept


def test_rebased_clears_the_producer_and_keeps_the_records() -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=7,
                                        producer_epoch=1, base_sequence=42, batch_size=1 << 20)
    for offset in range(3):
        builder.append(offset, timestamp=1_700_000_000_000 + offset, key=b"k", value=b"v%d" % offset, headers=[])
    original = bytes(builder.build())
    copy = DefaultRecordBatch(record_batch.rebased(original))
    assert copy.validate_crc()
    assert (copy.producer_id, copy.producer_epoch, copy.base_sequence) == (-1, -1, -1)
    assert [r.value for r in copy] == [b"v0", b"v1", b"v2"]
    assert [(base, last) for base, last, _ in batches(original + original[:10])] == [(0, 2)]  # partial tail left out
