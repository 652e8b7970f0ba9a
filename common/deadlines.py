"""A min-heap of deadlines with lazy invalidation.

State machines push ``(when, key)`` and, when a deadline comes due, look at
their own state to decide whether it still means anything: a lease that was
extended simply pushes its new expiry. This keeps one cheap push per event on
the hot path instead of a scan over every lease.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable

import attrs


@attrs.define(eq=False)
class Deadlines:
    _heap: list[tuple[float, int, Hashable]] = attrs.Factory(list)
    _order: itertools.count = attrs.Factory(itertools.count)

    def push(self, when: float, key: Hashable) -> None:
        heapq.heappush(self._heap, (when, next(self._order), key))

    def next(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def pop_due(self, now: float) -> list[Hashable]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def __len__(self) -> int:
        return len(self._heap)
