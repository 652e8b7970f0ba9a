"""Frozen snapshots of the head's state, read by metrics and the status page."""

from __future__ import annotations

import attrs

from hydramesh.common.metrics import HistogramSnapshot


@attrs.frozen
class WorkerStatistics:
    id: str
    address: str
    state: str
    models: tuple[str, ...]
    capacity: int
    assigned: int
    queue: int
    dispatched: int
    completed: int
    failed: int
    last_seen: float  # seconds since its last heartbeat
    device: str
    dtype: str
    backend: str
    version: str


@attrs.frozen
class TaskRecord:
    id: str
    status: str
    worker: str
    model: str | None
    seconds: float
    attempts: int


@attrs.frozen
class HeadStatistics:
    workers: tuple[WorkerStatistics, ...]
    models: tuple[str, ...]
    queue_depth: int
    in_flight: int
    counts: dict[str, int]  # admitted, dispatched, redispatched, completed, failed, …
    failures: dict[str, int]  # by error code
    drops: dict[str, int]  # datagrams and payloads dropped, by reason
    latency: HistogramSnapshot
    results_cached: int
    recent: tuple[TaskRecord, ...]

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def dispatched_by_worker(self) -> dict[str, int]:
        return {w.id: w.dispatched for w in self.workers}
