"""A DCF client for the head: many concurrent requests over one socket.

    async with ClusterClient.connect(("127.0.0.1", 7777)) as client:
        image = await client.generate(GenerateRequest(new_id(), "a red fox"))

Delivery follows DESIGN §3 from the client's side: the request id is the
idempotency key, so every retry simply sends the same request again. Until
the head acknowledges, retries back off exponentially; once it has, the
client re-sends at a slow poll interval (the head re-acknowledges a live
request and answers a finished one from its cache, which also recovers a
completely lost result); chunks missing after a quiet period are
re-requested with ``resend``. ``busy`` waits ``retry_after``. Everything
ends at the caller's deadline.

With ``bare=True`` the same client talks to a shim's UDP ingress instead:
each TASK payload is the whole datagram and RESULT payloads come back without
a header (PROTOCOL.md §6); everything else is the same.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
import attrs
import structlog
import trio

from hydramesh.common.chunking import Image, Reassembly
from hydramesh.common.errors import DecodeError, ErrorCode
from hydramesh.common.result import Accepted, Chunk, Failure, Progress, decode_result
from hydramesh.common.task import CancelRequest, GenerateRequest, ResendRequest
from hydramesh.common.wire import Datagram, MsgType
from hydramesh.runtime.groups import single_exception
from hydramesh.runtime.udp import Address, DcfEndpoint

log = structlog.get_logger()


def new_id() -> str:
    return uuid.uuid4().hex[:20]


class ClusterError(Exception):
    """A terminal ``error`` result, or the client's own deadline (``timeout``)."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None, retry_after: float | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after


@attrs.frozen
class RetryPolicy:
    first_wait: float = 0.25  # until the first acknowledgement, doubling…
    max_wait: float = 4.0  # …up to this
    poll: float = 5.0  # re-send while acknowledged but silent
    chunk_quiet: float = 0.3  # re-request missing chunks after this much quiet
    busy_jitter: float = 0.25  # spread busy retries so clients don't return in lockstep


ProgressCallback = Callable[[str, int, int], None]


@attrs.define(eq=False)
class _Pending:
    request: GenerateRequest
    on_progress: ProgressCallback | None
    retry_busy: bool
    reassembly: Reassembly = attrs.Factory(Reassembly)
    accepted: bool = False
    busy: Failure | None = None
    failure: Failure | None = None
    image: Image | None = None
    changed: trio.Event = attrs.Factory(trio.Event)
    datagrams: int = 0

    def notify(self) -> None:
        self.changed.set()


@attrs.define(eq=False)
class ClusterClient:
    endpoint: DcfEndpoint
    target: Address
    policy: RetryPolicy = attrs.Factory(RetryPolicy)
    rng: random.Random = attrs.Factory(random.Random)
    _pending: dict[str, _Pending] = attrs.Factory(dict)
    counts: dict[str, int] = attrs.Factory(lambda: {"sent": 0, "retries": 0, "resends": 0, "stray": 0})
    bare: bool = False  # no DCF header: a shim's ingress

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        target: Address,
        *,
        key: bytes | None = None,
        policy: RetryPolicy | None = None,
        bare: bool = False,
    ) -> AsyncIterator[ClusterClient]:
        """``bare=True``: talk to a shim's ingress (no header; ``key`` unused)."""
        host = socket.gethostbyname(target[0]) if ":" not in target[0] else target[0]
        target = (host, target[1])
        bind_host = "::" if ":" in host else "0.0.0.0"
        endpoint = DcfEndpoint.bind(bind_host, 0, key=None if bare else key)
        client = cls(endpoint, target, policy or RetryPolicy(), bare=bare)
        try:
            with single_exception():
                async with trio.open_nursery() as nursery:
                    if bare:
                        await nursery.start(endpoint.serve_raw, client._on_result)
                    else:
                        await nursery.start(endpoint.serve, client._on_datagram)
                    yield client
                    nursery.cancel_scope.cancel()
        finally:
            endpoint.close()

    # -- receiving -------------------------------------------------------

    def _on_datagram(self, datagram: Datagram, sender: Address) -> None:
        if datagram.msg_type is not MsgType.RESULT:
            self.counts["stray"] += 1
            return
        self._on_result(datagram.payload, sender)

    def _on_result(self, payload: bytes, sender: Address) -> None:
        try:
            message, data = decode_result(payload)
        except DecodeError:
            self.counts["stray"] += 1
            return
        pending = self._pending.get(message.id)
        if pending is None:
            if isinstance(message, Failure) and not message.id:
                log.warning("unaddressed_error", code=str(message.code), message=message.message)
            self.counts["stray"] += 1
            return
        pending.datagrams += 1
        if isinstance(message, Accepted):
            pending.accepted = True
        elif isinstance(message, Progress):
            pending.accepted = True
            if pending.on_progress is not None:
                pending.on_progress(message.id, message.step, message.steps)
        elif isinstance(message, Failure):
            if message.code is ErrorCode.BUSY:
                pending.busy = message
            else:
                pending.failure = message
        elif isinstance(message, Chunk):
            pending.accepted = True
            try:
                image = pending.reassembly.add(message, data)
            except ValueError:
                image = None  # corrupt: collection restarted, resends follow
            if image is not None:
                pending.image = image
        pending.notify()

    # -- requests --------------------------------------------------------

    def _send(self, payload: bytes) -> None:
        self.counts["sent"] += 1
        if self.bare:
            self.endpoint.send_raw(payload, self.target)
        else:
            self.endpoint.send(MsgType.TASK, payload, self.target)

    async def generate(
        self,
        request: GenerateRequest,
        *,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        retry_busy: bool = True,
    ) -> Image:
        """Deliver ``request`` and return the verified image, or raise
        :class:`ClusterError` (``code`` ``timeout`` at the deadline).

        With ``retry_busy=False`` a ``busy`` answer is raised at once (with
        its ``retry_after``) instead of waited out: for callers that pass
        back-pressure on, such as an HTTP front end answering 429."""
        if request.id in self._pending:
            raise ValueError(f"request id {request.id!r} is already in flight on this client")
        pending = _Pending(request, on_progress, retry_busy)
        self._pending[request.id] = pending
        try:
            with trio.move_on_after(timeout):
                return await self._deliver(pending)
            raise ClusterError(ErrorCode.TIMEOUT, f"no result within {timeout:g} s")
        finally:
            del self._pending[request.id]

    async def _deliver(self, pending: _Pending) -> Image:
        policy = self.policy
        payload = pending.request.encode()
        self._send(payload)
        wait = policy.first_wait
        while True:
            pending.changed = trio.Event()
            quiet = self._quiet_period(pending, wait)
            with trio.move_on_after(quiet) as waited:
                await pending.changed.wait()
            if pending.image is not None:
                return pending.image
            if pending.failure is not None:
                f = pending.failure
                raise ClusterError(f.code, f.message, field=f.field, retry_after=f.retry_after)
            if pending.busy is not None:
                if not pending.retry_busy:
                    b = pending.busy
                    raise ClusterError(b.code, b.message, retry_after=b.retry_after)
                delay = (pending.busy.retry_after or wait) * (1 + policy.busy_jitter * self.rng.random())
                pending.busy = None
                await trio.sleep(delay)
                self.counts["retries"] += 1
                self._send(payload)
                continue
            if not waited.cancelled_caught:
                continue  # news arrived; the quiet period starts over
            missing = pending.reassembly.missing() if pending.reassembly.info is not None else []
            if missing:
                self.counts["resends"] += 1
                self._send(ResendRequest(pending.request.id, tuple(missing)).encode())
            else:
                self.counts["retries"] += 1
                self._send(payload)
                if not pending.accepted:
                    wait = min(wait * 2, policy.max_wait)

    def _quiet_period(self, pending: _Pending, wait: float) -> float:
        if pending.reassembly.info is not None:
            return self.policy.chunk_quiet
        return self.policy.poll if pending.accepted else wait

    async def cancel(self, request_id: str) -> None:
        self._send(CancelRequest(request_id).encode())
