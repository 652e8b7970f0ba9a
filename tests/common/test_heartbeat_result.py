import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydramesh.common.errors import BadPayload, DecodeError
from hydramesh.common.heartbeat import parse_heartbeat
from hydramesh.common.result import Accepted, decode_result, encode_result

from .strategies import heartbeats, result_messages


@given(heartbeats)
def test_heartbeat_round_trip(beat):
    assert parse_heartbeat(beat.encode()) == beat


def test_heartbeat_ignores_unknown_fields():
    beat = parse_heartbeat(b'{"worker":"w","boot":"b","models":[],"capacity":1,"free":1,"queue":0,"future":1}')
    assert beat.worker == "w"


@given(st.binary(max_size=400))
def test_heartbeat_arbitrary_bytes(raw):
    try:
        parse_heartbeat(raw)
    except DecodeError:
        pass


@given(result_messages)
def test_result_round_trip(pair):
    message, data = pair
    decoded, decoded_data = decode_result(encode_result(message, data))
    assert decoded == message and decoded_data == data
    if hasattr(message, "info"):
        assert decoded.info.timings == message.info.timings


@given(result_messages, st.data())
def test_truncated_result_meta_is_rejected(pair, data):
    message, payload_data = pair
    raw = encode_result(message, payload_data)
    meta_end = 2 + int.from_bytes(raw[:2], "big")
    cut = data.draw(st.integers(0, meta_end - 1))
    with pytest.raises(BadPayload):
        decode_result(raw[:cut])


@given(st.binary(max_size=600))
def test_result_arbitrary_bytes(raw):
    try:
        decode_result(raw)
    except DecodeError:
        pass


@given(result_messages, st.data())
def test_mutated_results_only_raise_decode_errors(pair, data):
    raw = bytearray(encode_result(*pair))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_result(bytes(raw))
    except DecodeError:
        pass


def test_non_image_results_carry_no_data():
    with pytest.raises(BadPayload, match="carries no data"):
        decode_result(encode_result(Accepted("x"), b"junk"))
