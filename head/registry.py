"""The worker registry: who is alive, what they serve, and whose turn it is.

Workers are learned from heartbeats and forgotten after ``timeout`` seconds
of silence. Dispatch order is round-robin over the registration order,
skipping workers that cannot take the task; among those that can, workers
with the model already resident in memory are preferred.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from hydramesh.common.heartbeat import Heartbeat

Address = tuple[Any, ...]


class Change(enum.Enum):
    JOINED = "joined"
    BEAT = "beat"
    RESTARTED = "restarted"  # same worker id, new process (or new address)


@attrs.define(eq=False)
class WorkerEntry:
    id: str
    address: Address
    beat: Heartbeat
    first_seen: float
    last_seen: float
    assigned: set[str] = attrs.Factory(set)  # ids of tasks leased to this worker
    dispatched: int = 0
    completed: int = 0
    failed: int = 0
    progress: int = 0  # the heartbeat's steps-done counter, last value seen

    @property
    def free_slots(self) -> int:
        if self.beat.state != "ready":
            return 0
        return max(0, self.beat.capacity - len(self.assigned))

    def model_state(self, model: str | None) -> tuple[bool, bool]:
        """``(ready, loaded)`` for ``model``; ``None`` means the worker's default."""
        models = self.beat.models
        if model is None:
            ready = [m for m in models if m.state == "ready"]
            return bool(ready), any(m.loaded for m in ready)
        for m in models:
            if m.name == model:
                return m.state == "ready", m.state == "ready" and m.loaded
        return False, False

    def advertises(self, model: str | None) -> bool:
        if model is None:
            return bool(self.beat.models)
        return any(m.name == model and m.state != "failed" for m in self.beat.models)


@attrs.define(eq=False)
class Registry:
    timeout: float
    workers: dict[str, WorkerEntry] = attrs.Factory(dict)
    _by_address: dict[Address, str] = attrs.Factory(dict)
    _cursor: int = 0

    def observe(self, beat: Heartbeat, address: Address, now: float) -> tuple[WorkerEntry, Change]:
        entry = self.workers.get(beat.worker)
        if entry is None:
            self._forget_address(address)
            entry = WorkerEntry(beat.worker, address, beat, now, now, progress=beat.progress)
            self.workers[beat.worker] = entry
            self._by_address[address] = beat.worker
            return entry, Change.JOINED
        change = Change.BEAT
        if beat.boot != entry.beat.boot or address != entry.address:
            change = Change.RESTARTED
            self._by_address.pop(entry.address, None)
            self._forget_address(address)
            self._by_address[address] = beat.worker
            entry.address = address
            entry.progress = 0
        entry.beat = beat
        entry.last_seen = now
        return entry, change

    def _forget_address(self, address: Address) -> None:
        """Another worker id now speaks from this address: the old one is gone."""
        old = self._by_address.pop(address, None)
        if old is not None and old in self.workers and self.workers[old].address == address:
            self.workers[old].last_seen = float("-inf")  # the reaper takes it next

    def at(self, address: Address) -> WorkerEntry | None:
        worker = self._by_address.get(address)
        return self.workers.get(worker) if worker is not None else None

    def expiry(self, worker: str) -> float:
        return self.workers[worker].last_seen + self.timeout

    def reap(self, now: float) -> list[WorkerEntry]:
        """Remove and return every worker silent for ``timeout`` or longer."""
        gone = [w for w in self.workers.values() if now - w.last_seen >= self.timeout]
        for entry in gone:
            del self.workers[entry.id]
            if self._by_address.get(entry.address) == entry.id:
                del self._by_address[entry.address]
        return gone

    def advertised(self, model: str | None) -> bool:
        return any(w.advertises(model) for w in self.workers.values())

    def models(self) -> list[str]:
        return sorted({m.name for w in self.workers.values() for m in w.beat.models if m.state != "failed"})

    def has_free_slot(self) -> bool:
        return any(w.free_slots for w in self.workers.values())

    def pick(self, model: str | None, avoid: Iterable[str] = ()) -> WorkerEntry | None:
        """The next worker in round-robin order that can take ``model`` now.

        Preference, best first: model resident and not in ``avoid`` (workers
        that already failed this task); model loadable, not avoided; then the
        same two with avoided workers allowed, since a retry on the same
        worker beats no retry at all.
        """
        order = list(self.workers.values())
        if not order:
            return None
        avoid = set(avoid)
        start = self._cursor % len(order)
        rotated = order[start:] + order[:start]
        candidates = []
        for entry in rotated:
            if entry.free_slots <= 0:
                continue
            ready, loaded = entry.model_state(model)
            if ready:
                candidates.append((entry.id in avoid, not loaded, entry))
        if not candidates:
            return None
        best = min(candidates, key=lambda c: (c[0], c[1]))  # min is stable: keeps round-robin order
        chosen = best[2]
        self._cursor = (order.index(chosen) + 1) % len(order)
        return chosen
