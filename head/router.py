"""The head's routing state machine, free of I/O (DESIGN §3).

Every input — a TASK from a client, a HEARTBEAT or RESULT from a worker, the
passage of time — is a method call with ``now``; every output is appended to
``outbox`` for the service to send. Tests drive it with exact times.

Delivery rests on one mechanism at every hop, idempotent re-request:

* the request ``id`` is the idempotency key: a repeat of a live request is
  re-acknowledged, a repeat of a finished one is answered from the cache;
* each dispatched task holds a *lease* on one worker. The lease ends in a
  re-dispatch to another worker when the TASK datagram was lost (the
  worker's heartbeats do not list it after ``ack_grace``), when it expires
  without progress, or when the worker dies or restarts;
* missing result chunks are re-requested from the worker after a quiet
  period; a worker that cannot resend loses the lease;
* admission is bounded: a full queue answers ``busy`` with ``retry_after``.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import attrs
import structlog

from hydramesh.common.chunking import Reassembly
from hydramesh.common.deadlines import Deadlines
from hydramesh.common.errors import DecodeError, ErrorCode
from hydramesh.common.heartbeat import parse_heartbeat
from hydramesh.common.metrics import Histogram
from hydramesh.common.result import Accepted, Chunk, Failure, Progress, ResultMessage, decode_result, encode_result
from hydramesh.common.task import (
    MAX_SEED,
    CancelRequest,
    GenerateRequest,
    Limits,
    ResendRequest,
    parse_task,
)
from hydramesh.common.wire import MsgType

from .config import HeadConfig
from .registry import Change, Registry, WorkerEntry
from hydramesh.common.result_cache import ResultCache
from .statistics import HeadStatistics, TaskRecord, WorkerStatistics

Address = tuple[Any, ...]

# Sizes assumed for the lease TTL when a request leaves them to the model.
_ASSUMED_STEPS = 50
_ASSUMED_PIXELS = 1024 * 1024
_RECENT_TASKS = 50


@attrs.frozen
class Outbound:
    address: Address
    msg_type: MsgType
    payload: bytes


@attrs.define(eq=False)
class Lease:
    worker: str
    dispatched: float
    expires: float
    acked: bool = False
    step: int = 0
    steps: int = 0
    reported_step: int = -1
    reassembly: Reassembly = attrs.Factory(Reassembly)
    payloads: dict[int, bytes] = attrs.Factory(dict)
    last_chunk: float | None = None
    resend_rounds: int = 0


@attrs.define(eq=False)
class Task:
    request: GenerateRequest
    client: Address
    admitted: float
    queued_at: float
    attempts: int = 0  # dispatches so far; also the fencing token of the newest
    failures: int = 0  # dispatches a worker acknowledged and then lost
    lease: Lease | None = None
    cancel_requested: bool = False
    tried: list[str] = attrs.Factory(list)  # workers that held it and lost it

    @property
    def id(self) -> str:
        return self.request.id


@attrs.define(eq=False)
class Router:
    config: HeadConfig
    limits: Limits = attrs.Factory(Limits)
    log: Any = attrs.Factory(structlog.get_logger)
    draining: bool = False  # shutting down: new requests get ``busy``
    rng: random.Random = attrs.Factory(random.Random)
    outbox: list[Outbound] = attrs.Factory(list)
    deadlines: Deadlines = attrs.Factory(Deadlines)
    registry: Registry = attrs.field(init=False)
    results: ResultCache = attrs.field(init=False)
    tasks: dict[str, Task] = attrs.Factory(dict)
    queue: collections.deque[str] = attrs.Factory(collections.deque)
    # counters for statistics()
    counts: collections.Counter[str] = attrs.Factory(collections.Counter)
    drops: collections.Counter[str] = attrs.Factory(collections.Counter)
    failures: collections.Counter[str] = attrs.Factory(collections.Counter)
    latency: Histogram = attrs.Factory(Histogram)
    recent: collections.deque[TaskRecord] = attrs.Factory(lambda: collections.deque(maxlen=_RECENT_TASKS))
    service_time: float = 1.0  # EWMA of dispatch-to-done seconds, for retry_after

    def __attrs_post_init__(self) -> None:
        self.registry = Registry(self.config.heartbeat_timeout)
        self.results = ResultCache(
            self.config.result_cache_entries, self.config.result_cache_mb << 20, self.config.result_ttl
        )

    # -- inputs ----------------------------------------------------------

    def handle_task(self, payload: bytes, sender: Address, now: float) -> None:
        try:
            message = parse_task(payload, self.limits)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            self._reply(sender, Failure.rejecting(exc))
            return
        if isinstance(message, GenerateRequest):
            self._on_generate(message, sender, now)
        elif isinstance(message, CancelRequest):
            self._on_cancel(message, sender, now)
        else:
            self._on_resend(message, sender, now)

    def handle_heartbeat(self, payload: bytes, sender: Address, now: float) -> None:
        try:
            beat = parse_heartbeat(payload)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            return
        entry, change = self.registry.observe(beat, sender, now)
        if change is Change.JOINED:
            self.counts["workers_joined"] += 1
            self.log.info("worker_joined", worker=entry.id, address=list(sender[:2]), models=[m.name for m in beat.models])
            self.deadlines.push(self.registry.expiry(entry.id), ("worker", entry.id))
        elif change is Change.RESTARTED:
            self.counts["workers_restarted"] += 1
            self.log.warning("worker_restarted", worker=entry.id, address=list(sender[:2]), lost=len(entry.assigned))
            self._redispatch_all(entry, "worker restarted", now)
        self._reconcile(entry, now)
        if beat.progress > entry.progress:
            entry.progress = beat.progress
            for task_id in entry.assigned:
                lease = self.tasks[task_id].lease
                assert lease is not None
                lease.expires = max(lease.expires, now + self._ttl(self.tasks[task_id].request))
        self._dispatch(now)

    def handle_result(self, payload: bytes, sender: Address, now: float) -> None:
        entry = self.registry.at(sender)
        if entry is None:
            self.drops["unknown_worker"] += 1
            return
        try:
            message, data = decode_result(payload)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            return
        task = self.tasks.get(message.id)
        lease = task.lease if task is not None else None
        if task is None or lease is None or lease.worker != entry.id:
            # A re-dispatched task's first worker, or a repeat after the end.
            self.drops["stale_result"] += 1
            return
        if isinstance(message, Accepted):
            lease.acked = True
        elif isinstance(message, Progress):
            lease.acked = True
            self._report_progress(task, lease, message.step, message.steps)
        elif isinstance(message, Failure):
            self._on_worker_failure(task, entry, message, payload, now)
        else:
            self._on_chunk(task, lease, message, data, payload, now)

    def tick(self, now: float) -> None:
        """Act on every deadline that has come due."""
        for key in self.deadlines.pop_due(now):
            kind, ident = key
            if kind == "worker":
                self._check_worker(ident, now)
            elif kind == "lease":
                self._check_lease(ident, now)
            elif kind == "chunks":
                self._check_chunks(ident, now)
            elif kind == "queued":
                self._check_queued(ident, now)
        self.results.expire(now)
        self._dispatch(now)

    def next_deadline(self) -> float:
        return self.deadlines.next()

    # -- client requests -------------------------------------------------

    def _on_generate(self, request: GenerateRequest, sender: Address, now: float) -> None:
        task = self.tasks.get(request.id)
        if task is not None:
            self.counts["duplicates"] += 1
            task.client = sender  # answer wherever the client now listens
            self._reply(sender, Accepted(request.id))
            return
        cached = self.results.get(request.id, now)
        if cached is not None:
            self.counts["cache_hits"] += 1
            for payload in cached.payloads:
                self._send(sender, MsgType.RESULT, payload)
            return
        if not self.registry.advertised(request.model):
            self.failures[ErrorCode.UNKNOWN_MODEL] += 1
            if request.model is None:
                message = "no worker is registered with the head"
            else:
                known = ", ".join(self.registry.models()) or "none"
                message = f"no live worker serves model {request.model!r} (served: {known})"
            self._reply(sender, Failure(request.id, ErrorCode.UNKNOWN_MODEL, message))
            return
        if self.draining:
            self.counts["rejected_busy"] += 1
            self._reply(sender, Failure(request.id, ErrorCode.BUSY, "the head is shutting down", retry_after=5.0))
            return
        if len(self.queue) >= self.config.queue_max:
            self.counts["rejected_busy"] += 1
            self._reply(sender, Failure(request.id, ErrorCode.BUSY, "the head's queue is full", retry_after=self._retry_after()))
            return
        if request.seed is None:
            # Pinned here so that a re-dispatch renders the same image.
            request = attrs.evolve(request, seed=self.rng.randint(0, MAX_SEED))
        task = Task(request, sender, now, now)
        self.tasks[request.id] = task
        self._enqueue(task, now)
        self.counts["admitted"] += 1
        self._reply(sender, Accepted(request.id))
        self._dispatch(now)

    def _on_cancel(self, message: CancelRequest, sender: Address, now: float) -> None:
        task = self.tasks.get(message.id)
        if task is None:
            cached = self.results.get(message.id, now)
            if cached is not None and not cached.ok:
                self._send(sender, MsgType.RESULT, cached.payloads[0])
            return
        task.client = sender
        task.cancel_requested = True
        if task.lease is None:
            self._finish_failed(task, ErrorCode.CANCELLED, "cancelled before it started", now)
        else:
            self._cancel_on_worker(task, task.lease.worker)

    def _on_resend(self, message: ResendRequest, sender: Address, now: float) -> None:
        cached = self.results.get(message.id, now)
        if cached is not None:
            self.counts["resends_served"] += 1
            wanted = message.missing or range(len(cached.payloads))
            for index in wanted:
                if index < len(cached.payloads):
                    self._send(sender, MsgType.RESULT, cached.payloads[index])
            return
        task = self.tasks.get(message.id)
        if task is not None and task.lease is not None:
            task.client = sender
            for index in message.missing:
                payload = task.lease.payloads.get(index)
                if payload is not None:
                    self._send(sender, MsgType.RESULT, payload)
        # Unknown ids get no answer: the client falls back to re-sending its
        # generate request, which is idempotent.

    # -- worker traffic ----------------------------------------------------

    def _reconcile(self, entry: WorkerEntry, now: float) -> None:
        """Compare what the head leased to a worker with what it reports."""
        listed = {t.id: t for t in entry.beat.in_flight}
        for task_id in list(entry.assigned):
            task = self.tasks[task_id]
            lease = task.lease
            assert lease is not None
            held = listed.get(task_id)
            if held is not None:
                lease.acked = True
                self._report_progress(task, lease, held.step, held.steps)
                if task.cancel_requested:
                    self._cancel_on_worker(task, entry.id)
                continue
            if not lease.acked:
                if now - lease.dispatched >= self.config.ack_grace:
                    self.counts["lost_dispatches"] += 1
                    self._redispatch(task, "the worker never acknowledged the task", now)
                continue
            # Acknowledged, no longer held, not complete here: its result
            # was lost on the way, or the worker lost the task.
            if lease.last_chunk is not None and now - lease.last_chunk < self.config.resend_quiet:
                continue  # chunks are still arriving
            self._request_resend(task, lease, now)

    def _on_chunk(self, task: Task, lease: Lease, chunk: Chunk, data: bytes, payload: bytes, now: float) -> None:
        lease.acked = True
        self._send(task.client, MsgType.RESULT, payload)  # stream it on at once
        if lease.last_chunk is None:
            self.deadlines.push(now + self.config.resend_quiet, ("chunks", task.id))
        lease.last_chunk = now
        restarts = lease.reassembly.restarts
        try:
            image = lease.reassembly.add(chunk, data)
        except ValueError:
            self.drops["corrupt_result"] += 1
            lease.payloads.clear()
            return
        if lease.reassembly.restarts != restarts:
            lease.payloads.clear()
        lease.payloads[chunk.index] = payload
        if image is None:
            return
        entry = self.registry.workers.get(lease.worker)
        if entry is not None:
            entry.completed += 1
        payloads = tuple(lease.payloads[i] for i in range(chunk.count))
        self._finish(task, payloads, ok=True, now=now, status="ok")

    def _on_worker_failure(self, task: Task, entry: WorkerEntry, failure: Failure, payload: bytes, now: float) -> None:
        if failure.code is ErrorCode.BUSY:
            # The worker's own queue was full: not the task's fault.
            self._release(task)
            self._enqueue(task, now, front=True)
            self._dispatch(now)
            return
        if failure.code is ErrorCode.CANCELLED and not task.cancel_requested:
            # The answer to a cancel the head sent when it moved the task:
            # the client asked for nothing of the sort.
            self.drops["unrequested_cancel"] += 1
            return
        if failure.code is ErrorCode.UNKNOWN_MODEL and task.request.model is not None:
            # This worker could not load the model; another may still serve it.
            entry.failed += 1
            self._redispatch(task, f"worker {entry.id}: {failure.message}", now)
            self._dispatch(now)
            return
        entry.failed += 1
        self.failures[failure.code] += 1
        self._send(task.client, MsgType.RESULT, payload)
        self._finish(task, (payload,), ok=False, now=now, status=str(failure.code))

    def _report_progress(self, task: Task, lease: Lease, step: int, steps: int) -> None:
        lease.step, lease.steps = step, steps
        if task.request.progress and step != lease.reported_step:
            lease.reported_step = step
            self._reply(task.client, Progress(task.id, step, steps))

    def _request_resend(self, task: Task, lease: Lease, now: float) -> None:
        if lease.resend_rounds >= self.config.resend_rounds:
            self.counts["results_lost"] += 1
            self._redispatch(task, "its result could not be recovered from the worker", now)
            return
        lease.resend_rounds += 1
        lease.last_chunk = now
        self.counts["resend_requests"] += 1
        missing = tuple(lease.reassembly.missing()) if lease.reassembly.info is not None else ()
        self._to_worker(lease.worker, MsgType.TASK, ResendRequest(task.id, missing).encode())
        self.deadlines.push(now + self.config.resend_quiet, ("chunks", task.id))

    # -- deadlines ---------------------------------------------------------

    def _check_worker(self, worker: str, now: float) -> None:
        entry = self.registry.workers.get(worker)
        if entry is None:
            return
        expiry = self.registry.expiry(worker)
        if expiry > now:
            self.deadlines.push(expiry, ("worker", worker))
            return
        for gone in self.registry.reap(now):
            self.counts["workers_reaped"] += 1
            self.log.warning("worker_reaped", worker=gone.id, silent_s=round(now - gone.last_seen, 3), lost=len(gone.assigned))
            self._redispatch_all(gone, "worker stopped sending heartbeats", now)

    def _check_lease(self, task_id: str, now: float) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.lease is None:
            return
        if task.lease.expires > now:
            self.deadlines.push(task.lease.expires, ("lease", task_id))
            return
        self.counts["leases_expired"] += 1
        self._redispatch(task, "its lease expired without progress", now)

    def _check_chunks(self, task_id: str, now: float) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.lease is None or task.lease.last_chunk is None:
            return
        quiet_until = task.lease.last_chunk + self.config.resend_quiet
        if quiet_until > now:
            self.deadlines.push(quiet_until, ("chunks", task_id))
            return
        self._request_resend(task, task.lease, now)

    def _check_queued(self, task_id: str, now: float) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.lease is not None or now - task.queued_at < self.config.queue_timeout:
            return
        self._finish_failed(task, ErrorCode.TIMEOUT, f"no worker took the task within {self.config.queue_timeout:g} s", now)

    # -- dispatch and leases -----------------------------------------------

    def _enqueue(self, task: Task, now: float, *, front: bool = False) -> None:
        task.queued_at = now
        if front:
            self.queue.appendleft(task.id)
        else:
            self.queue.append(task.id)
        self.deadlines.push(now + self.config.queue_timeout, ("queued", task.id))

    def _dispatch(self, now: float) -> None:
        if not self.queue or not self.registry.has_free_slot():
            return
        waiting = collections.deque()
        while self.queue:
            task_id = self.queue.popleft()
            task = self.tasks[task_id]
            entry = self.registry.pick(task.request.model, avoid=task.tried)
            if entry is None:
                waiting.append(task_id)
                if not self.registry.has_free_slot():
                    break
                continue
            self._lease(task, entry, now)
        waiting.extend(self.queue)
        self.queue = waiting

    def _lease(self, task: Task, entry: WorkerEntry, now: float) -> None:
        task.attempts += 1
        lease = Lease(entry.id, now, now + self._ttl(task.request))
        task.lease = lease
        entry.assigned.add(task.id)
        entry.dispatched += 1
        self.counts["dispatched"] += 1
        self.deadlines.push(lease.expires, ("lease", task.id))
        self._send(entry.address, MsgType.TASK, attrs.evolve(task.request, attempt=task.attempts).encode())

    def _cancel_on_worker(self, task: Task, worker: str) -> None:
        # Fenced by the attempt: a delayed cancel of an abandoned dispatch
        # must not stop a newer dispatch of the same id on the same worker.
        self._to_worker(worker, MsgType.TASK, CancelRequest(task.id, attempt=task.attempts).encode())

    def _ttl(self, request: GenerateRequest) -> float:
        steps = request.steps or _ASSUMED_STEPS
        pixels = request.width * request.height if request.width and request.height else _ASSUMED_PIXELS
        return self.config.lease_base + self.config.lease_per_step_mp * steps * pixels / 1e6

    def _release(self, task: Task) -> Lease | None:
        lease, task.lease = task.lease, None
        if lease is not None:
            entry = self.registry.workers.get(lease.worker)
            if entry is not None:
                entry.assigned.discard(task.id)
        return lease

    def _redispatch_all(self, entry: WorkerEntry, reason: str, now: float) -> None:
        for task_id in list(entry.assigned):
            self._redispatch(self.tasks[task_id], reason, now)

    def _redispatch(self, task: Task, reason: str, now: float) -> None:
        lease = self._release(task)
        if lease is not None:
            task.tried.append(lease.worker)
            # Tell the old worker to stop; if it is dead this is lost, harmlessly.
            self._cancel_on_worker(task, lease.worker)
        # Only work a worker acknowledged and then lost counts as its failure;
        # a TASK datagram lost on the way says nothing about the task.
        if lease is not None and lease.acked:
            task.failures += 1
        self.log.info("task_lost", task_id=task.id, worker=lease and lease.worker, reason=reason, attempts=task.attempts)
        if task.cancel_requested:
            self._finish_failed(task, ErrorCode.CANCELLED, "cancelled", now)
            return
        if task.failures >= self.config.max_attempts or task.attempts >= self.config.max_dispatches:
            self._finish_failed(
                task,
                ErrorCode.WORKER_FAILED,
                f"lost by {task.failures} worker(s) in {task.attempts} dispatch(es); last: {reason}",
                now,
            )
            return
        self.counts["redispatched"] += 1
        self._enqueue(task, now, front=True)

    # -- endings -------------------------------------------------------------

    def _finish_failed(self, task: Task, code: ErrorCode, message: str, now: float) -> None:
        self.failures[code] += 1
        payload = encode_result(Failure(task.id, code, message))
        self._send(task.client, MsgType.RESULT, payload)
        self._finish(task, (payload,), ok=False, now=now, status=str(code))

    def _finish(self, task: Task, payloads: tuple[bytes, ...], *, ok: bool, now: float, status: str) -> None:
        lease = self._release(task)
        del self.tasks[task.id]
        try:
            self.queue.remove(task.id)
        except ValueError:
            pass
        self.results.put(task.id, payloads, ok, now)
        self.counts["completed" if ok else "failed"] += 1
        elapsed = now - task.admitted
        if ok:
            self.latency.observe(elapsed)
            if lease is not None:
                self.service_time += 0.2 * ((now - lease.dispatched) - self.service_time)
        self.recent.appendleft(
            TaskRecord(task.id, status, lease.worker if lease else "", task.request.model, elapsed, task.attempts)
        )
        self._dispatch(now)

    # -- output helpers --------------------------------------------------------

    def _retry_after(self) -> float:
        capacity = sum(w.beat.capacity for w in self.registry.workers.values()) or 1
        estimate = self.service_time * (len(self.queue) + 1) / capacity
        return round(min(60.0, max(0.5, estimate)), 1)

    def _reply(self, address: Address, message: ResultMessage) -> None:
        self._send(address, MsgType.RESULT, encode_result(message))

    def _send(self, address: Address, msg_type: MsgType, payload: bytes) -> None:
        self.outbox.append(Outbound(address, msg_type, payload))

    def _to_worker(self, worker: str, msg_type: MsgType, payload: bytes) -> None:
        entry = self.registry.workers.get(worker)
        if entry is not None:
            self._send(entry.address, msg_type, payload)

    # -- observation -------------------------------------------------------------

    def statistics(self, now: float) -> HeadStatistics:
        workers = tuple(
            WorkerStatistics(
                id=w.id,
                address=f"{w.address[0]}:{w.address[1]}",
                state=w.beat.state,
                models=tuple(f"{m.name}" + ("" if m.state == "ready" else f" ({m.state})") for m in w.beat.models),
                capacity=w.beat.capacity,
                assigned=len(w.assigned),
                queue=w.beat.queue,
                dispatched=w.dispatched,
                completed=w.completed,
                failed=w.failed,
                last_seen=now - w.last_seen,
                device=w.beat.device,
                dtype=w.beat.dtype,
                backend=w.beat.backend,
                version=w.beat.version,
            )
            for w in self.registry.workers.values()
        )
        return HeadStatistics(
            workers=workers,
            models=tuple(self.registry.models()),
            queue_depth=len(self.queue),
            in_flight=sum(1 for t in self.tasks.values() if t.lease is not None),
            counts=dict(self.counts),
            failures={str(k): v for k, v in self.failures.items()},
            drops=dict(self.drops),
            latency=self.latency.snapshot(),
            results_cached=len(self.results),
            recent=tuple(self.recent),
        )

