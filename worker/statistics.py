"""A frozen snapshot of a worker's state, read by its metrics endpoint."""

from __future__ import annotations

import attrs


@attrs.frozen
class WorkerStatistics:
    worker: str
    state: str
    queue: int
    running: int
    steps_done: int
    counts: dict[str, int]  # accepted, completed, failed, rejected_busy, resends
    drops: dict[str, int]
    results_cached: int

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)
