"""A bounded cache of finished results (DESIGN §3): the head answers repeats
from it, the worker serves re-requested chunks from it.

A finished request id is answered from here, never recomputed.
Entries are bounded by count, by bytes and by age; the oldest go first.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs


@attrs.frozen
class CachedResult:
    payloads: tuple[bytes, ...]  # RESULT payloads: every chunk, or one error
    ok: bool
    expires: float

    @property
    def size(self) -> int:
        return sum(map(len, self.payloads))


@attrs.define(eq=False)
class ResultCache:
    max_entries: int
    max_bytes: int
    ttl: float
    _entries: OrderedDict[str, CachedResult] = attrs.Factory(OrderedDict)
    bytes: int = 0

    def put(self, request_id: str, payloads: tuple[bytes, ...], ok: bool, now: float) -> None:
        self.pop(request_id)
        entry = CachedResult(payloads, ok, now + self.ttl)
        self._entries[request_id] = entry
        self.bytes += entry.size
        while self._entries and (len(self._entries) > self.max_entries or self.bytes > self.max_bytes):
            self.pop(next(iter(self._entries)))

    def get(self, request_id: str, now: float) -> CachedResult | None:
        entry = self._entries.get(request_id)
        if entry is not None and entry.expires <= now:
            self.pop(request_id)
            return None
        return entry

    def pop(self, request_id: str) -> None:
        entry = self._entries.pop(request_id, None)
        if entry is not None:
            self.bytes -= entry.size

    def expire(self, now: float) -> None:
        while self._entries:
            request_id, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            self.pop(request_id)

    def __len__(self) -> int:
        return len(self._entries)
