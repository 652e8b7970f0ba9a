"""RESULT payloads: ``u16 meta_len | meta (UTF-8 JSON) | data``.

``meta.status`` is ``accepted``, ``progress``, ``ok`` or ``error``. An ``ok``
result is one chunk of the encoded image; every chunk repeats the whole-image
facts (size, sha256, mime, seed…) so any one chunk is self-describing and a
receiver can start reassembly from whichever arrives first.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from .errors import BadPayload, DecodeError, ErrorCode, InvalidRequest
from .jsonfields import Fields, dump_object, load_object
from .task import MAX_ID_LEN, PROTOCOL_VERSION

META_LEN = struct.Struct(">H")
MAX_CHUNKS = 1 << 16
MAX_IMAGE_BYTES = 256 << 20


@attrs.frozen
class Accepted:
    id: str
    status = "accepted"

    def to_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "id": self.id, "status": self.status}


@attrs.frozen
class Progress:
    id: str
    step: int
    steps: int
    status = "progress"

    def to_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "id": self.id, "status": self.status, "step": self.step, "steps": self.steps}


@attrs.frozen
class Failure:
    id: str
    code: ErrorCode
    message: str
    retry_after: float | None = None  # seconds, for ``busy``
    field: str | None = None  # the offending request field, for ``invalid``
    status = "error"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "id": self.id,
            "status": self.status,
            "code": str(self.code),
            "message": self.message,
        }
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        if self.field is not None:
            body["field"] = self.field
        return body

    @classmethod
    def rejecting(cls, exc: DecodeError) -> Failure:
        """The ``invalid`` answer to a TASK payload that failed to decode."""
        if isinstance(exc, InvalidRequest):
            return cls(exc.request_id, ErrorCode.INVALID, str(exc), field=exc.field)
        return cls("", ErrorCode.INVALID, f"TASK payload: {exc}")


@attrs.frozen
class ImageInfo:
    """Facts about a whole encoded image, repeated in each of its chunks."""

    id: str
    size: int
    sha256: str
    mime: str
    seed: int | None = None
    worker: str = ""
    width: int = 0
    height: int = 0
    timings: dict[str, float] = attrs.field(factory=dict, eq=False, hash=False)


@attrs.frozen
class Chunk:
    info: ImageInfo
    index: int
    count: int
    status = "ok"

    @property
    def id(self) -> str:
        return self.info.id

    def to_json(self) -> dict[str, Any]:
        info = self.info
        return {
            "v": PROTOCOL_VERSION,
            "id": info.id,
            "status": self.status,
            "chunk": self.index,
            "chunks": self.count,
            "size": info.size,
            "sha256": info.sha256,
            "mime": info.mime,
            "seed": info.seed,
            "worker": info.worker,
            "width": info.width,
            "height": info.height,
            "timings": info.timings,
        }


ResultMessage = Accepted | Progress | Failure | Chunk


def encode_result(message: ResultMessage, data: bytes = b"") -> bytes:
    meta = dump_object(message.to_json())
    if len(meta) >= 1 << 16:
        raise ValueError(f"RESULT meta of {len(meta)} bytes does not fit a u16 length")
    return META_LEN.pack(len(meta)) + meta + data


def decode_result(payload: bytes) -> tuple[ResultMessage, bytes]:
    """Split and validate a RESULT payload into its message and data bytes."""
    if len(payload) < META_LEN.size:
        raise BadPayload("RESULT payload is shorter than its 2-byte meta length")
    (meta_len,) = META_LEN.unpack_from(payload)
    if META_LEN.size + meta_len > len(payload):
        raise BadPayload(f"RESULT meta length {meta_len} runs past the {len(payload)}-byte payload")
    obj = load_object(payload[META_LEN.size : META_LEN.size + meta_len], "RESULT meta")
    data = bytes(payload[META_LEN.size + meta_len :])
    try:
        message = _message_from_json(Fields(obj), data)
    except InvalidRequest as exc:
        raise BadPayload(f"RESULT meta {exc}") from None
    if not isinstance(message, Chunk) and data:
        raise BadPayload(f"a {message.status} RESULT carries no data, got {len(data)} bytes")
    return message, data


def _message_from_json(fields: Fields, data: bytes) -> ResultMessage:
    fields.integer("v", lo=PROTOCOL_VERSION, hi=PROTOCOL_VERSION, default=PROTOCOL_VERSION)
    # An error about a request that had no readable id still has to travel.
    status = fields.choice("status", ("accepted", "progress", "ok", "error"))
    request_id = fields.string("id", max_len=MAX_ID_LEN, min_len=0 if status == "error" else 1)
    if status == "accepted":
        return Accepted(request_id)
    if status == "progress":
        return Progress(request_id, fields.integer("step", lo=0, hi=1 << 20), fields.integer("steps", lo=0, hi=1 << 20))
    if status == "error":
        try:
            code = ErrorCode(fields.string("code", max_len=32))
        except ValueError:
            code = ErrorCode.INTERNAL
        return Failure(
            request_id,
            code,
            fields.string("message", max_len=4096, default=""),
            retry_after=fields.number("retry_after", lo=0.0, hi=86400.0, default=None),
            field=fields.string("field", max_len=64, default=None),
        )
    count = fields.integer("chunks", lo=1, hi=MAX_CHUNKS)
    index = fields.integer("chunk", lo=0, hi=count - 1)
    size = fields.integer("size", lo=0, hi=MAX_IMAGE_BYTES)
    if len(data) > size:
        raise fields.error("size", f"chunk carries {len(data)} bytes, more than the whole image's {size}")
    sha = fields.string("sha256", max_len=64, min_len=64)
    timings = fields.raw("timings", default={})
    if not isinstance(timings, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in timings.items()
    ):
        raise fields.error("timings", "must map stage names to numbers")
    info = ImageInfo(
        id=request_id,
        size=size,
        sha256=sha,
        mime=fields.string("mime", max_len=64, min_len=1),
        seed=fields.integer("seed", lo=0, hi=(1 << 63) - 1, default=None),
        worker=fields.string("worker", max_len=256, default=""),
        width=fields.integer("width", lo=0, hi=1 << 16, default=0),
        height=fields.integer("height", lo=0, hi=1 << 16, default=0),
        timings=timings,
    )
    return Chunk(info, index, count)
