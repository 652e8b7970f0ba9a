"""The UDP ingress as an I/O-free state machine (DESIGN §2, §5).

External clients send a bare TASK payload (JSON, no header) as the whole
datagram and get bare RESULT payloads back. In between, every datagram is a
method call with ``now``, and what it causes is appended to ``outbox``:

* ``handle_datagram(data, source, now)`` — a client's datagram. It passes
  the allow-list, the source's token bucket, the size limit and full TASK
  validation at the edge; then ``generate``, ``cancel`` and ``resend`` go on
  to the head (:class:`ToHead`) under the request's internal id.
* ``handle_result(payload, now)`` — a RESULT payload from the head. Its id
  is mapped back to the client's own and it goes to that client
  (:class:`ToClient`): ``accepted``, ``progress``, chunks and errors alike.
* ``tick(now)`` — expire id mappings and forget refilled token buckets.

What is refused is counted by reason (``drops``). Where the sender can be
told, it gets an ``error`` RESULT: ``busy`` with ``retry_after`` when rate
limited (at most once per second per source), ``invalid`` for a datagram that
is oversize, not a JSON object, or breaks a field rule. Nothing is answered
before the rate limit has been applied, so no answer can be used to reflect
a flood. A refused datagram never touches the state of any other request.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import attrs

from hydramesh.common.errors import BadPayload, DecodeError, ErrorCode
from hydramesh.common.jsonfields import dump_object, load_object
from hydramesh.common.result import META_LEN, Chunk, Failure, ResultMessage, decode_result, encode_result
from hydramesh.common.task import (
    DEFAULT_LIMITS,
    CancelRequest,
    GenerateRequest,
    Limits,
    ResendRequest,
    parse_task,
    request_id_of,
)

from .idmap import IdMap, Relay
from .limits import AllowList, RateLimiter

Address = tuple[Any, ...]
DRAIN_RETRY_AFTER = 5.0


@attrs.frozen
class ToHead:
    payload: bytes  # a TASK payload, for the head


@attrs.frozen
class ToClient:
    address: Address
    payload: bytes  # a bare RESULT payload, for an external client


Outbound = ToHead | ToClient


def readdress_result(payload: bytes, new_id: str) -> bytes:
    """The same RESULT payload with ``meta.id`` replaced; data untouched.

    Every other meta field is kept as the head sent it, unknown ones too.
    Raises ``ValueError`` if the payload is not RESULT framing or the new
    meta would not fit its 16-bit length.
    """
    if len(payload) < META_LEN.size:
        raise ValueError("RESULT payload is shorter than its meta length")
    (meta_len,) = META_LEN.unpack_from(payload)
    end = META_LEN.size + meta_len
    meta = load_object(payload[META_LEN.size : end], "RESULT meta")
    meta["id"] = new_id
    encoded = dump_object(meta)
    if len(encoded) >= 1 << 16:
        raise ValueError("rewritten RESULT meta does not fit a u16 length")
    return META_LEN.pack(len(encoded)) + encoded + payload[end:]


@attrs.define(eq=False)
class Ingress:
    ids: IdMap
    limiter: RateLimiter
    allow: AllowList = AllowList()
    max_datagram: int = 16384
    limits: Limits = DEFAULT_LIMITS
    draining: bool = False  # shutting down: new requests get ``busy``
    outbox: list[Outbound] = attrs.Factory(list)
    counts: collections.Counter[str] = attrs.Factory(collections.Counter)
    drops: collections.Counter[str] = attrs.Factory(collections.Counter)
    relayed: collections.Counter[str] = attrs.Factory(collections.Counter)  # RESULTs to clients, by status

    # -- from clients ------------------------------------------------------

    def handle_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.counts["received"] += 1
        host = source[0]
        if not self.allow.permits(str(host)):
            self.drops["not_allowed"] += 1  # not our client: never answered
            return
        decision = self.limiter.take(host, now)
        if not decision.allowed:
            self.drops["rate_limited"] += 1
            if decision.notify:
                message = (
                    f"rate limit: at most {self.limiter.rate:g} datagrams/s from one address "
                    f"(bursts of {self.limiter.burst})"
                )
                self._answer(source, Failure(self._peek_id(data), ErrorCode.BUSY, message, retry_after=_ceil_ms(decision.retry_after)))
            return
        if not data:
            self.drops["empty"] += 1  # nothing to answer about
            return
        if len(data) > self.max_datagram:
            self.drops["oversize"] += 1
            message = f"datagram of {len(data)} bytes exceeds the ingress limit of {self.max_datagram}"
            self._answer(source, Failure("", ErrorCode.INVALID, message))
            return
        try:
            message = parse_task(data, self.limits)
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            self._answer(source, Failure.rejecting(exc))
            return
        if isinstance(message, GenerateRequest):
            self._on_generate(message, source, now)
        elif isinstance(message, CancelRequest):
            relay = self._known(message.id, source, now)
            if relay is not None:
                self.counts["forwarded_cancel"] += 1
                self.outbox.append(ToHead(CancelRequest(relay.internal).encode()))
        else:
            relay = self._known(message.id, source, now)
            if relay is not None:
                self.counts["forwarded_resend"] += 1
                self.outbox.append(ToHead(ResendRequest(relay.internal, message.missing).encode()))

    def _on_generate(self, request: GenerateRequest, source: Address, now: float) -> None:
        relay = self.ids.find(source, request.id, now)
        if relay is None:
            if self.draining:
                self.counts["rejected_draining"] += 1
                self._answer(source, Failure(request.id, ErrorCode.BUSY, "the shim is shutting down", retry_after=DRAIN_RETRY_AFTER))
                return
            relay, _ = self.ids.open(source, request.id, now)
            self.counts["mapped"] += 1
        else:
            self.counts["repeated"] += 1
        self.counts["forwarded_generate"] += 1
        relay.waiting = True
        self.outbox.append(ToHead(attrs.evolve(request, id=relay.internal).encode()))

    def _known(self, client_id: str, source: Address, now: float) -> Relay | None:
        relay = self.ids.find(source, client_id, now)
        if relay is None:
            # Nothing to cancel or resend under this id from this address;
            # as at the head, no answer (a client then repeats its generate).
            self.drops["unknown_id"] += 1
        return relay

    def _peek_id(self, data: bytes) -> str:
        """The request's id, to address a refusal (only parsed when answering)."""
        if not data or len(data) > self.max_datagram:
            return ""
        try:
            return request_id_of(load_object(data, "TASK"))
        except BadPayload:
            return ""

    def _answer(self, address: Address, message: ResultMessage) -> None:
        self.counts["answered"] += 1
        self.outbox.append(ToClient(address, encode_result(message)))

    # -- from the head -------------------------------------------------------

    def handle_result(self, payload: bytes, now: float) -> None:
        try:
            message, _ = decode_result(payload)
        except DecodeError:
            self.drops["bad_result"] += 1
            return
        relay = self.ids.internal(message.id, now)
        if relay is None:
            self.drops["unmapped_result"] += 1  # expired, evicted, or not ours
            return
        try:
            out = readdress_result(payload, relay.client_id)
        except ValueError:
            self.drops["bad_result"] += 1
            return
        if isinstance(message, (Chunk, Failure)):
            relay.waiting = False  # an image, an error, or busy: nothing held for it now
        self.relayed[message.status] += 1
        self.outbox.append(ToClient(relay.client, out))

    # -- time ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self.ids.expire(now)
        self.limiter.prune(now)

    def next_deadline(self) -> float:
        limiter_next = self.limiter.next_prune() if self.limiter.enabled else math.inf
        return min(self.ids.next_expiry(), limiter_next)


def _ceil_ms(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000
