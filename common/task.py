"""TASK payloads: ``generate``, ``cancel`` and ``resend`` (DESIGN §2, §5).

A TASK payload is a UTF-8 JSON object with ``"v": 1``. :func:`parse_task`
validates every field against :class:`Limits` and raises
:class:`~hydramesh.common.errors.InvalidRequest` naming the first bad field.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from .errors import InvalidRequest
from .jsonfields import Fields, dump_object, load_object

PROTOCOL_VERSION = 1
FORMATS = ("png", "webp", "jpeg")
# Sampler names a request may choose; workers map them onto diffusers classes.
SCHEDULERS = ("ddim", "euler", "euler_a", "dpm++", "dpm++_karras", "pndm", "unipc")
MIME_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
MAX_SEED = (1 << 32) - 1
MAX_ID_LEN = 64
MAX_ATTEMPT = 1000
# Ids travel in logs, metrics labels and file names: keep them printable.
_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@/+=-]+")


@attrs.frozen
class Limits:
    """Hard limits on request fields; one instance per service config."""

    max_prompt: int = 2000
    max_side: int = 2048
    min_side: int = 8
    max_pixels: int = 2048 * 2048
    max_steps: int = 150
    max_guidance: float = 30.0
    max_model_name: int = 256
    max_missing: int = 4096


DEFAULT_LIMITS = Limits()


@attrs.frozen
class GenerateRequest:
    id: str
    prompt: str
    negative_prompt: str | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    seed: int | None = None
    format: str = "png"
    progress: bool = False
    # Set by the head on dispatch: a fencing token that tells a worker which
    # dispatch of this id a later cancel is about. Clients leave it out.
    attempt: int | None = None

    op = "generate"

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.format]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": self.op}
        for field in attrs.fields(GenerateRequest):
            value = getattr(self, field.name)
            if field.default is attrs.NOTHING or value != field.default:
                body[field.name] = value
        return body

    def encode(self) -> bytes:
        return dump_object(self.to_json())


@attrs.frozen
class CancelRequest:
    id: str
    attempt: int | None = None  # from the head: only that dispatch (or a newer one) is cancelled
    op = "cancel"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": self.op, "id": self.id}
        if self.attempt is not None:
            body["attempt"] = self.attempt
        return body

    def encode(self) -> bytes:
        return dump_object(self.to_json())


@attrs.frozen
class ResendRequest:
    """Ask again for chunks of a finished result; empty ``missing`` means all."""

    id: str
    missing: tuple[int, ...] = ()
    op = "resend"

    def to_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "op": self.op, "id": self.id, "missing": list(self.missing)}

    def encode(self) -> bytes:
        return dump_object(self.to_json())


TaskMessage = GenerateRequest | CancelRequest | ResendRequest


def _request_id(obj: dict[str, Any]) -> str:
    """The id if it is usable as one, so errors can name their request."""
    value = obj.get("id")
    if isinstance(value, str) and len(value) <= MAX_ID_LEN and _ID_PATTERN.fullmatch(value):
        return value
    return ""


def request_id_of(obj: dict[str, Any]) -> str:
    """The ``id`` of a decoded TASK object if it is a valid id, else ``""``:
    for addressing an answer to a request that is refused unread."""
    return _request_id(obj)


def _read_id(fields: Fields) -> str:
    value = fields.string("id", max_len=MAX_ID_LEN, min_len=1)
    if not _ID_PATTERN.fullmatch(value):
        raise fields.error("id", "may hold only letters, digits and ._:@/+=-")
    return value


def _read_side(fields: Fields, name: str, limits: Limits) -> int | None:
    value = fields.integer(name, lo=limits.min_side, hi=limits.max_side, default=None)
    if value is not None and value % 8:
        raise fields.error(name, f"must be a multiple of 8, got {value}")
    return value


def parse_task(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> TaskMessage:
    """Decode and validate a TASK payload."""
    obj = load_object(payload, "TASK")
    return task_from_json(obj, limits)


def task_from_json(obj: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> TaskMessage:
    fields = Fields(obj, request_id=_request_id(obj))
    version = fields.integer("v", lo=0, hi=1 << 16, default=PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise fields.error("v", f"protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})")
    op = fields.choice("op", ("generate", "cancel", "resend"), default="generate")
    request_id = _read_id(fields)
    message: TaskMessage
    if op == "cancel":
        message = CancelRequest(request_id, fields.integer("attempt", lo=1, hi=MAX_ATTEMPT, default=None))
    elif op == "resend":
        missing = fields.int_list("missing", lo=0, hi=(1 << 16) - 1, max_items=limits.max_missing, default=())
        message = ResendRequest(request_id, missing)
    else:
        width = _read_side(fields, "width", limits)
        height = _read_side(fields, "height", limits)
        if width is not None and height is not None and width * height > limits.max_pixels:
            raise fields.error("width", f"{width}x{height} exceeds the {limits.max_pixels}-pixel limit")
        message = GenerateRequest(
            id=request_id,
            prompt=fields.string("prompt", max_len=limits.max_prompt, min_len=1),
            negative_prompt=fields.string("negative_prompt", max_len=limits.max_prompt, default=None),
            model=fields.string("model", max_len=limits.max_model_name, min_len=1, default=None),
            width=width,
            height=height,
            steps=fields.integer("steps", lo=1, hi=limits.max_steps, default=None),
            guidance=fields.number("guidance", lo=0.0, hi=limits.max_guidance, default=None),
            scheduler=fields.choice("scheduler", SCHEDULERS, default=None),
            seed=fields.integer("seed", lo=0, hi=MAX_SEED, default=None),
            format=fields.choice("format", FORMATS, default="png"),
            progress=fields.boolean("progress", default=False),
            attempt=fields.integer("attempt", lo=1, hi=MAX_ATTEMPT, default=None),
        )
    fields.finish()
    return message


__all__ = [
    "CancelRequest",
    "DEFAULT_LIMITS",
    "FORMATS",
    "GenerateRequest",
    "InvalidRequest",
    "Limits",
    "MAX_ID_LEN",
    "MAX_SEED",
    "PROTOCOL_VERSION",
    "ResendRequest",
    "SCHEDULERS",
    "TaskMessage",
    "parse_task",
    "request_id_of",
    "task_from_json",
]
