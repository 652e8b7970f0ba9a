"""Errors raised by the decoders and validators.

Every rejection carries a short ``reason`` that doubles as the metrics label
for "dropped datagrams by reason", so a decoder never needs a second table.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` RESULT (DESIGN §2)."""

    INVALID = "invalid"
    BUSY = "busy"
    UNKNOWN_MODEL = "unknown_model"
    WORKER_FAILED = "worker_failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class DecodeError(ValueError):
    """A datagram or payload that must be dropped.

    ``reason`` is one of a fixed set of labels (``too_short``,
    ``length_mismatch``, ``unknown_type``, ``bad_tag``, ``stale``,
    ``replayed``, ``bad_payload``, ``invalid``).
    """

    reason = "malformed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TooShort(DecodeError):
    reason = "too_short"


class LengthMismatch(DecodeError):
    reason = "length_mismatch"


class UnknownType(DecodeError):
    reason = "unknown_type"


class BadTag(DecodeError):
    reason = "bad_tag"


class Stale(DecodeError):
    reason = "stale"


class Replayed(DecodeError):
    reason = "replayed"


class BadPayload(DecodeError):
    """The payload is not the JSON/framing its message type requires."""

    reason = "bad_payload"


class InvalidRequest(DecodeError):
    """A well-formed payload whose content breaks a rule; names the field.

    ``request_id`` is the request's id when it could be read, so the error
    can still be addressed to the request that caused it.
    """

    reason = "invalid"

    def __init__(self, field: str, message: str, *, request_id: str = "") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message
        self.request_id = request_id
