import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydramesh.common import wire
from hydramesh.common.errors import BadTag, DecodeError, LengthMismatch, TooShort, UnknownType
from hydramesh.common.wire import HEADER_SIZE, TAG_SIZE, MsgType, Sequencer

from .strategies import msg_types

keys = st.none() | st.binary(min_size=1, max_size=64)
sequences = st.integers(0, (1 << 32) - 1)
timestamps = st.integers(0, (1 << 64) - 1)


def test_header_is_17_bytes_big_endian():
    data = wire.encode(MsgType.TASK, 0x01020304, 0x1122334455667788, b"xyz")
    assert data == bytes.fromhex("02 01020304 1122334455667788 00000003") + b"xyz"
    assert HEADER_SIZE == 17


@given(msg_types, sequences, timestamps, st.binary(max_size=2000), keys)
def test_round_trip(kind, seq, ts, payload, key):
    datagram = wire.decode(wire.encode(kind, seq, ts, payload, key=key), key=key)
    assert (datagram.msg_type, datagram.header.sequence, datagram.header.timestamp_us) == (kind, seq, ts)
    assert datagram.payload == payload
    assert datagram.header.payload_len == len(payload)


@given(msg_types, st.binary(max_size=300), keys, st.data())
def test_truncated_datagrams_are_rejected(kind, payload, key, data):
    raw = wire.encode(kind, 1, 2, payload, key=key)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises((TooShort, LengthMismatch, BadTag)):
        wire.decode(raw[:cut], key=key)


@given(msg_types, st.binary(max_size=300), st.binary(min_size=1, max_size=40), keys)
def test_extended_datagrams_are_rejected(kind, payload, extra, key):
    with pytest.raises(LengthMismatch):
        wire.decode(wire.encode(kind, 1, 2, payload, key=key) + extra, key=key)


@given(msg_types, st.binary(max_size=300), st.data())
def test_any_mutation_of_a_keyed_datagram_is_rejected(kind, payload, data):
    key = b"cluster-secret"
    raw = bytearray(wire.encode(kind, 7, 8, payload, key=key))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecodeError):
        wire.decode(bytes(raw), key=key)


@given(st.binary(max_size=3000), keys)
def test_arbitrary_bytes_never_escape_as_other_exceptions(raw, key):
    try:
        wire.decode(raw, key=key)
    except DecodeError as exc:
        assert exc.reason in {"too_short", "length_mismatch", "unknown_type", "bad_tag"}


@given(st.integers(0, 255).filter(lambda t: t not in (1, 2, 3)), st.binary(max_size=50))
def test_unknown_types_are_rejected(kind, payload):
    raw = struct.pack(">BIQI", kind, 0, 0, len(payload)) + payload
    with pytest.raises(UnknownType):
        wire.decode(raw)


def test_wrong_key_is_a_bad_tag_and_keyless_datagram_fails_keyed_decoder():
    raw = wire.encode(MsgType.HEARTBEAT, 1, 2, b"{}", key=b"a")
    with pytest.raises(BadTag):
        wire.decode(raw, key=b"b")
    with pytest.raises(LengthMismatch):
        wire.decode(wire.encode(MsgType.HEARTBEAT, 1, 2, b"{}" + b"\0" * TAG_SIZE), key=b"a")


def test_sequencer_wraps_at_2_to_the_32():
    seq = Sequencer((1 << 32) - 2)
    assert [seq(), seq(), seq()] == [(1 << 32) - 2, (1 << 32) - 1, 0]
