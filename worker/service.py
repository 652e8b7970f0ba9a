"""The worker as a Trio service (DESIGN §1, §4).

One UDP socket: heartbeats go to the head every interval, TASKs come in on
the same socket. Accepted requests wait in a bounded intake queue; one
inference loop takes a batch of compatible requests at a time and hands it to
the backend, which runs the model in a worker thread (a limiter of one) so
the event loop never blocks on torch. Finished results are chunked, sent,
and kept for a while so that a ``resend`` can be served.
"""

from __future__ import annotations

import collections
import socket
import time
import uuid
from typing import Any

import attrs
import structlog
import trio

from hydramesh.common.chunking import Image, split
from hydramesh.common.errors import DecodeError, ErrorCode
from hydramesh.common.heartbeat import Heartbeat, TaskProgress
from hydramesh.common.result import Accepted, Failure, ResultMessage, encode_result
from hydramesh.common.result_cache import ResultCache
from hydramesh.common.task import CancelRequest, GenerateRequest, ResendRequest, parse_task
from hydramesh.common.wire import Datagram, MsgType
from hydramesh.runtime.http import serve_http
from hydramesh.runtime.lifecycle import read_key_file
from hydramesh.runtime.udp import Address, DcfEndpoint

from .backends.base import Backend, Job, JobCancelled, Outcome, Rendered, UnknownModel
from .config import WorkerConfig
from .http import make_app
from .statistics import WorkerStatistics
from .version import VERSION

def error_code(exc: BaseException) -> ErrorCode:
    if isinstance(exc, JobCancelled):
        return ErrorCode.CANCELLED
    if isinstance(exc, UnknownModel):
        return ErrorCode.UNKNOWN_MODEL
    return ErrorCode.INTERNAL


@attrs.define(eq=False)
class Worker:
    config: WorkerConfig
    endpoint: DcfEndpoint
    backend: Backend
    head: Address
    log: Any
    worker_id: str = ""
    boot: str = attrs.Factory(lambda: uuid.uuid4().hex[:12])
    state: str = "loading"
    jobs: dict[str, Job] = attrs.Factory(dict)  # queued and running, by id
    queue: collections.deque[str] = attrs.Factory(collections.deque)
    finished: ResultCache = attrs.field(init=False)
    steps_done: int = 0
    counts: collections.Counter[str] = attrs.Factory(collections.Counter)
    drops: collections.Counter[str] = attrs.Factory(collections.Counter)
    http_address: Address | None = None
    _work: trio.Event = attrs.Factory(trio.Event)
    _idle: trio.Event = attrs.Factory(trio.Event)
    _beat_now: trio.Event = attrs.Factory(trio.Event)

    def __attrs_post_init__(self) -> None:
        self.finished = ResultCache(4096, self.config.result_cache_mb << 20, self.config.result_ttl)

    @property
    def address(self) -> Address:
        return self.endpoint.address

    # -- intake ------------------------------------------------------------

    def _on_datagram(self, datagram: Datagram, sender: Address) -> None:
        if datagram.msg_type is not MsgType.TASK:
            self.drops["unexpected_type"] += 1
            return
        try:
            message = parse_task(datagram.payload)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            self._reply(sender, Failure.rejecting(exc))
            return
        now = trio.current_time()
        if isinstance(message, GenerateRequest):
            self._on_generate(message, sender, now)
        elif isinstance(message, CancelRequest):
            self._on_cancel(message, sender)
        else:
            self._on_resend(message, sender, now)

    def _on_generate(self, request: GenerateRequest, sender: Address, now: float) -> None:
        job = self.jobs.get(request.id)
        if job is not None:
            job.reply_to = sender
            job.attempt = max(job.attempt, request.attempt or 0)
            self._reply(sender, Accepted(request.id))
            return
        cached = self.finished.get(request.id, now)
        if cached is not None:
            for payload in cached.payloads:
                self.endpoint.send(MsgType.RESULT, payload, sender)
            return
        if self.state == "draining" or len(self.jobs) >= self.config.capacity:
            self.counts["rejected_busy"] += 1
            self._reply(sender, Failure(request.id, ErrorCode.BUSY, f"worker {self.worker_id} is full", retry_after=1.0))
            return
        served = {m.name for m in self.backend.models()}
        if request.model is not None and request.model not in served:
            self._reply(
                sender, Failure(request.id, ErrorCode.UNKNOWN_MODEL, f"worker {self.worker_id} serves {', '.join(sorted(served))}")
            )
            return
        self.jobs[request.id] = Job(request, sender, now, attempt=request.attempt or 0)
        self.queue.append(request.id)
        self.counts["accepted"] += 1
        self._reply(sender, Accepted(request.id))
        self._work.set()

    def _on_cancel(self, message: CancelRequest, sender: Address) -> None:
        job = self.jobs.get(message.id)
        if job is None or (message.attempt is not None and message.attempt < job.attempt):
            return  # unknown, or about an earlier dispatch this one replaced
        job.cancelled = True
        if not job.running:
            self.queue.remove(job.id)
            self._complete(job, JobCancelled("cancelled before it started"))

    def _on_resend(self, message: ResendRequest, sender: Address, now: float) -> None:
        cached = self.finished.get(message.id, now)
        if cached is None:
            if message.id in self.jobs:
                self._reply(sender, Accepted(message.id))
            return
        self.counts["resends"] += 1
        wanted = message.missing or range(len(cached.payloads))
        for index in wanted:
            if index < len(cached.payloads):
                self.endpoint.send(MsgType.RESULT, cached.payloads[index], sender)

    def _reply(self, address: Address, message: ResultMessage) -> None:
        self.endpoint.send(MsgType.RESULT, encode_result(message), address)

    # -- inference -----------------------------------------------------------

    def _next_batch(self) -> list[Job]:
        first = self.jobs[self.queue.popleft()]
        batch = [first]
        key = self.backend.batch_key(first.request)
        for task_id in list(self.queue):
            if len(batch) >= self.config.max_batch:
                break
            job = self.jobs[task_id]
            if self.backend.batch_key(job.request) == key:
                self.queue.remove(task_id)
                batch.append(job)
        return batch

    def _on_step(self, job: Job) -> None:
        # Called from the inference thread: a plain int update, no Trio calls.
        self.steps_done += 1

    async def _inference_loop(self) -> None:
        started = time.perf_counter()
        await self.backend.load()
        if self.state == "loading":
            self.state = "ready"
        self.log.info("worker_ready", load_s=round(time.perf_counter() - started, 3), models=[m.name for m in self.backend.models()])
        self._beat_now.set()
        while True:
            while not self.queue:
                self._work = trio.Event()
                await self._work.wait()
            batch = self._next_batch()
            for job in batch:
                job.running = True
            now = trio.current_time()
            outcomes = await self.backend.run(batch, self._on_step)
            for job, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Rendered):
                    outcome.timings["queue_s"] = round(now - job.received, 6)
                self._complete(job, outcome)

    def _complete(self, job: Job, outcome: Outcome) -> None:
        del self.jobs[job.id]
        if not self.jobs:
            self._idle.set()
        now = trio.current_time()
        if isinstance(outcome, Rendered):
            image = Image.build(
                job.id,
                outcome.data,
                mime=outcome.mime,
                seed=outcome.seed,
                worker=self.worker_id,
                width=outcome.width,
                height=outcome.height,
                timings={k: round(v, 6) for k, v in outcome.timings.items()},
            )
            payloads = tuple(split(image, max_datagram=self.config.max_datagram, keyed=self.endpoint.key is not None))
            self.counts["completed"] += 1
            ok = True
        else:
            code = error_code(outcome)
            if code is ErrorCode.INTERNAL:
                self.log.error("job_failed", task_id=job.id, error=repr(outcome), exc_info=outcome)
            payloads = (encode_result(Failure(job.id, code, str(outcome) or type(outcome).__name__)),)
            self.counts["failed"] += 1
            ok = False
        # A cancellation is not a result to serve again: a newer dispatch of
        # the same id must run, not be answered "cancelled".
        if not isinstance(outcome, JobCancelled):
            self.finished.put(job.id, payloads, ok, now)
        for payload in payloads:
            self.endpoint.send(MsgType.RESULT, payload, job.reply_to)

    # -- heartbeats --------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            worker=self.worker_id,
            boot=self.boot,
            models=self.backend.models(),
            capacity=self.config.capacity,
            free=max(0, self.config.capacity - len(self.jobs)),
            queue=len(self.queue),
            in_flight=tuple(TaskProgress(j.id, j.step, j.steps) for j in self.jobs.values()),
            progress=self.steps_done,
            state=self.state,
            device=self.backend.device,
            dtype=self.backend.dtype,
            mem_free=self.backend.mem_free(),
            version=VERSION,
            backend=self.backend.name,
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            self.endpoint.send(MsgType.HEARTBEAT, self.heartbeat().encode(), self.head)
            self._beat_now = trio.Event()
            with trio.move_on_after(self.config.heartbeat_interval):
                await self._beat_now.wait()

    async def drain(self, timeout: float) -> None:
        """Refuse new work, finish what is held, then say goodbye."""
        self.state = "draining"
        self._beat_now.set()
        self.log.info("drain_started", jobs=len(self.jobs))
        with trio.move_on_after(timeout):
            while self.jobs:
                self._idle = trio.Event()
                await self._idle.wait()
        for job in self.jobs.values():
            job.cancelled = True
        self.log.info("drain_finished", abandoned=len(self.jobs))

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            worker=self.worker_id,
            state=self.state,
            queue=len(self.queue),
            running=sum(1 for j in self.jobs.values() if j.running),
            steps_done=self.steps_done,
            counts=dict(self.counts),
            drops=dict(self.drops + self.endpoint.drops),
            results_cached=len(self.finished),
        )


def make_backend(config: WorkerConfig) -> Backend:
    if config.backend == "null":
        from .backends.null import NullBackend

        return NullBackend(delay=config.null_delay, model_names=config.model_path or ("null",))
    from .backends.diffusers import DiffusersBackend

    return DiffusersBackend.from_config(config)


async def serve(
    config: WorkerConfig,
    *,
    backend: Backend | None = None,
    task_status: trio.TaskStatus[Worker] = trio.TASK_STATUS_IGNORED,
) -> None:
    log = structlog.get_logger().bind(service="worker")
    head = (socket.gethostbyname(config.head_ip), config.head_port)
    endpoint = DcfEndpoint.bind(config.host, config.port, key=read_key_file(config.cluster_key_file))
    try:
        worker_id = config.worker_id or f"{socket.gethostname()}:{endpoint.address[1]}"
        log = log.bind(worker=worker_id)
        worker = Worker(config, endpoint, backend or make_backend(config), head, log, worker_id)
        async with trio.open_nursery() as nursery:
            await nursery.start(endpoint.serve, worker._on_datagram)
            nursery.start_soon(worker._heartbeat_loop)
            nursery.start_soon(worker._inference_loop)
            if config.http_port >= 0:
                worker.http_address = await nursery.start(serve_http, make_app(worker), config.http_host, config.http_port)
            log.info("worker_listening", udp=list(worker.address[:2]), head=list(head), backend=worker.backend.name)
            task_status.started(worker)
    finally:
        endpoint.close()
