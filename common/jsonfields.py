"""Strict readers for fields of a decoded JSON object.

Each reader raises :class:`InvalidRequest` naming the field, so every schema
reports the first bad field the same way. ``bool`` is rejected where an int is
wanted: JSON ``true`` must not pass for ``1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import BadPayload, InvalidRequest

_MISSING: Any = object()


def load_object(payload: bytes, what: str) -> dict[str, Any]:
    """Decode a UTF-8 JSON object, or raise :class:`BadPayload`."""
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadPayload(f"{what} payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadPayload(f"{what} payload must be a JSON object, not {type(value).__name__}")
    return value


def dump_object(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Fields:
    """Reads typed fields out of one JSON object, remembering which were read.

    ``finish()`` rejects any field nobody asked for, so a typo such as
    ``"stpes"`` is an error naming it rather than a silently ignored option.
    """

    def __init__(self, obj: Mapping[str, Any], *, request_id: str = "") -> None:
        self._obj = obj
        self._seen: set[str] = set()
        self.request_id = request_id

    def error(self, field: str, message: str) -> InvalidRequest:
        return InvalidRequest(field, message, request_id=self.request_id)

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        value = self._obj.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return value

    def string(self, name: str, *, max_len: int, default: Any = _MISSING, min_len: int = 0) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, not {type(value).__name__}")
        if len(value) > max_len:
            raise self.error(name, f"is {len(value)} characters long; the limit is {max_len}")
        if len(value) < min_len:
            raise self.error(name, "must not be empty" if min_len == 1 else f"needs at least {min_len} characters")
        return value

    def integer(self, name: str, *, lo: int, hi: int, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, not {type(value).__name__}")
        if not lo <= value <= hi:
            raise self.error(name, f"must be between {lo} and {hi}, got {value}")
        return value

    def number(self, name: str, *, lo: float, hi: float, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"must be a number, not {type(value).__name__}")
        if not lo <= value <= hi:  # also rejects NaN
            raise self.error(name, f"must be between {lo} and {hi}, got {value}")
        return float(value)

    def boolean(self, name: str, *, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {type(value).__name__}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], *, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def int_list(self, name: str, *, lo: int, hi: int, max_items: int, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(name, f"must be a list of integers, not {type(value).__name__}")
        if len(value) > max_items:
            raise self.error(name, f"has {len(value)} items; the limit is {max_items}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not lo <= item <= hi:
                raise self.error(name, f"items must be integers between {lo} and {hi}, got {item!r}")
        return tuple(value)

    def raw(self, name: str, *, default: Any = _MISSING) -> Any:
        return self._get(name, default)

    def finish(self) -> None:
        extra = sorted(set(self._obj) - self._seen)
        if extra:
            raise self.error(extra[0], "is not a known field")
