"""The DCF datagram envelope: a 17-byte header, the payload, an optional tag.

    offset  type  field
    0       u8    msg_type     0x01 HEARTBEAT, 0x02 TASK, 0x03 RESULT
    1       u32   sequence     per-sender counter, wraps at 2**32
    5       u64   timestamp    microseconds since the epoch at send
    13      u32   payload_len  exact length of the payload
    17      ...   payload
    end     16 B  auth tag     only when a cluster key is set

All integers are big-endian. This is the ``ProtoMessage`` envelope of the DCF
SDKs; see PROTOCOL.md for the normative text and hex dumps.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct

import attrs

from .errors import BadTag, LengthMismatch, TooShort, UnknownType

HEADER = struct.Struct(">BIQI")
HEADER_SIZE = HEADER.size  # 17
TAG_SIZE = 16
SEQUENCE_MODULUS = 1 << 32
MAX_PAYLOAD = (1 << 32) - 1


class MsgType(enum.IntEnum):
    HEARTBEAT = 0x01
    TASK = 0x02
    RESULT = 0x03


@attrs.frozen
class Header:
    msg_type: MsgType
    sequence: int
    timestamp_us: int
    payload_len: int

    def pack(self) -> bytes:
        return HEADER.pack(self.msg_type, self.sequence, self.timestamp_us, self.payload_len)


@attrs.frozen
class Datagram:
    header: Header
    payload: bytes

    @property
    def msg_type(self) -> MsgType:
        return self.header.msg_type


def auth_tag(key: bytes, signed: bytes) -> bytes:
    """The 16-byte tag: HMAC-SHA256 over header and payload, truncated."""
    return hmac.new(key, signed, hashlib.sha256).digest()[:TAG_SIZE]


def encode(
    msg_type: MsgType,
    sequence: int,
    timestamp_us: int,
    payload: bytes,
    *,
    key: bytes | None = None,
) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a u32 length")
    body = HEADER.pack(msg_type, sequence % SEQUENCE_MODULUS, timestamp_us, len(payload)) + payload
    if key is None:
        return body
    return body + auth_tag(key, body)


def decode(data: bytes, *, key: bytes | None = None) -> Datagram:
    """Parse one datagram strictly; raise a :class:`DecodeError` subclass.

    The length must be exactly ``17 + payload_len`` (plus the tag when
    keyed): a datagram with trailing bytes is as suspect as a truncated one.
    """
    trailer = TAG_SIZE if key is not None else 0
    if len(data) < HEADER_SIZE + trailer:
        raise TooShort(f"datagram of {len(data)} bytes is shorter than the {HEADER_SIZE + trailer}-byte minimum")
    msg_type, sequence, timestamp_us, payload_len = HEADER.unpack_from(data)
    expected = HEADER_SIZE + payload_len + trailer
    if len(data) != expected:
        raise LengthMismatch(f"datagram of {len(data)} bytes, header says {expected}")
    if key is not None:
        body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        if not hmac.compare_digest(tag, auth_tag(key, body)):
            raise BadTag("authentication tag does not match the cluster key")
    try:
        kind = MsgType(msg_type)
    except ValueError:
        raise UnknownType(f"unknown message type 0x{msg_type:02x}") from None
    payload = bytes(data[HEADER_SIZE : HEADER_SIZE + payload_len])
    return Datagram(Header(kind, sequence, timestamp_us, payload_len), payload)


@attrs.define
class Sequencer:
    """A sender's packet counter; wraps at 2**32 as the header demands."""

    next_value: int = 0

    def __call__(self) -> int:
        value = self.next_value
        self.next_value = (value + 1) % SEQUENCE_MODULUS
        return value
