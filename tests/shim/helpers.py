"""Driving the shim's ingress by hand: fake clients and a fake head."""

from __future__ import annotations

from hydramesh.common.result import decode_result, encode_result
from hydramesh.common.task import parse_task
from hydramesh.shim.idmap import IdMap
from hydramesh.shim.ingress import Ingress, ToClient, ToHead
from hydramesh.shim.limits import AllowList, RateLimiter

BOOT = "0123456789abcdef0123456789"
ALICE = ("10.0.0.1", 5000)
BOB = ("10.0.0.2", 6000)


def make_ingress(*, rate=0.0, burst=10, ttl=60.0, max_entries=1000, max_per_source=100, allow=(), max_datagram=4096) -> Ingress:
    return Ingress(
        IdMap(ttl, max_entries, max_per_source, boot=BOOT),
        RateLimiter(rate, burst),
        AllowList.parse(allow),
        max_datagram,
    )


def to_head(ingress: Ingress) -> list:
    """TASK messages for the head, parsed (and taken from the outbox)."""
    mine = [o for o in ingress.outbox if isinstance(o, ToHead)]
    ingress.outbox[:] = [o for o in ingress.outbox if not isinstance(o, ToHead)]
    return [parse_task(o.payload) for o in mine]


def to_client(ingress: Ingress, client=None) -> list:
    """``(message, data)`` RESULTs for ``client`` (or anyone), taken from the outbox."""
    mine = [o for o in ingress.outbox if isinstance(o, ToClient) and (client is None or o.address == client)]
    ingress.outbox[:] = [o for o in ingress.outbox if o not in mine]
    return [decode_result(o.payload) for o in mine]


def head_says(ingress: Ingress, message, data: bytes = b"", now: float = 0.0) -> None:
    ingress.handle_result(encode_result(message, data), now)
