import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydramesh.common.chunking import Image, Reassembly, split
from hydramesh.common.result import decode_result
from hydramesh.common.wire import HEADER_SIZE, TAG_SIZE


def image(data: bytes, request_id: str = "req-1") -> Image:
    return Image.build(request_id, data, mime="image/png", seed=42, worker="w1", width=64, height=64, timings={"infer_s": 0.5})


@settings(max_examples=60)
@given(st.binary(max_size=20000), st.integers(300, 9000), st.booleans(), st.randoms(use_true_random=False))
def test_split_fits_datagrams_and_reassembles_in_any_order(data, max_datagram, keyed, rnd):
    payloads = split(image(data), max_datagram=max_datagram, keyed=keyed)
    for payload in payloads:
        assert HEADER_SIZE + len(payload) + (TAG_SIZE if keyed else 0) <= max_datagram
    rnd.shuffle(payloads)
    reassembly = Reassembly()
    results = [reassembly.add(*decode_result(p)) for p in payloads + payloads[:3]]
    done = [r for r in results if r is not None]
    assert done and done[0].data == data
    assert done[0].info.sha256 == hashlib.sha256(data).hexdigest()


def test_missing_lists_gaps():
    payloads = split(image(bytes(range(256)) * 40), max_datagram=600)
    reassembly = Reassembly()
    for payload in payloads[::2]:
        reassembly.add(*decode_result(payload))
    assert reassembly.missing() == list(range(1, len(payloads), 2))


def test_a_different_image_for_the_same_id_restarts_collection():
    a = split(image(b"a" * 3000), max_datagram=600)
    b = split(image(b"b" * 3000), max_datagram=600)
    reassembly = Reassembly()
    reassembly.add(*decode_result(a[0]))
    for payload in b:
        result = reassembly.add(*decode_result(payload))
    assert result is not None and result.data == b"b" * 3000
    assert reassembly.restarts == 1


def test_corrupt_chunk_is_detected_by_sha256():
    payloads = split(image(random.Random(1).randbytes(4000)), max_datagram=600)
    chunk, data = decode_result(payloads[1])
    reassembly = Reassembly()
    reassembly.add(chunk, bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(ValueError, match="sha256"):
        for payload in payloads[2:] + payloads[:1]:
            reassembly.add(*decode_result(payload))


def test_default_size_leaves_room_for_an_mtu():
    payloads = split(image(bytes(100_000)))
    assert max(HEADER_SIZE + len(p) for p in payloads) <= 1400
    assert len(payloads) > 70
