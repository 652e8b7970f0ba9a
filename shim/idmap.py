"""The ingress's id mapping: (client address, client's id) <-> internal id.

Clients choose their own ids, so two clients may pick the same one. The shim
gives every (address, id) pair an internal id of its own and uses that one
towards the head, so the head's deduplication and result cache work per
client. A repeat of a request from the same address and id finds the same
internal id: retries stay idempotent through the shim.

Internal ids are ``shim.<26 hex: random per process>.<16 hex: counter>``,
48 characters: unique across shim restarts and across several shims in
front of one head (the head caches finished results by id for minutes), and
never shorter than a client id by more than 16 characters, so a RESULT whose
id is rewritten for its client never outgrows the DCF datagram it came in
(which had a 17-byte header).

The table is bounded — in total and per source address — and every mapping
expires ``ttl`` seconds after its last datagram in either direction, so a
client that disappears leaks nothing.
"""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict
from typing import Any

import attrs

Address = tuple[Any, ...]
INTERNAL_ID_LEN = 48
_BOOT_HEX = 26


def new_boot() -> str:
    return secrets.token_hex(_BOOT_HEX // 2)


@attrs.define(eq=False)
class Relay:
    """One client request as the shim tracks it."""

    internal: str
    client: Address
    client_id: str
    created: float
    last: float
    # A generate went to the head and no final answer (a chunk of the image,
    # an error, or busy) has come back since: the head holds work for it.
    waiting: bool = False


@attrs.define(eq=False)
class IdMap:
    ttl: float
    max_entries: int
    max_per_source: int
    boot: str = attrs.Factory(new_boot)
    counter: int = 0
    _by_internal: OrderedDict[str, Relay] = attrs.Factory(OrderedDict)  # least recently active first
    _by_client: dict[tuple[Address, str], Relay] = attrs.Factory(dict)
    _per_source: dict[Any, OrderedDict[str, None]] = attrs.Factory(dict)  # by host, least recently active first
    evictions: dict[str, int] = attrs.Factory(lambda: {"expired": 0, "table_full": 0, "source_full": 0})

    def __attrs_post_init__(self) -> None:
        if len(self.boot) != _BOOT_HEX:
            raise ValueError(f"boot must be {_BOOT_HEX} characters")

    def _next_id(self) -> str:
        self.counter += 1
        return f"shim.{self.boot}.{self.counter:016x}"

    def open(self, client: Address, client_id: str, now: float) -> tuple[Relay, bool]:
        """The relay for this request, made if new; ``(relay, created)``."""
        relay = self.find(client, client_id, now)
        if relay is not None:
            return relay, False
        source = client[0]
        mine = self._per_source.setdefault(source, OrderedDict())
        while len(mine) >= self.max_per_source:
            self._remove(self._by_internal[next(iter(mine))], "source_full")
        while len(self._by_internal) >= self.max_entries:
            self._remove(next(iter(self._by_internal.values())), "table_full")
        relay = Relay(self._next_id(), client, client_id, now, now)
        self._by_internal[relay.internal] = relay
        self._by_client[(client, client_id)] = relay
        self._per_source.setdefault(source, OrderedDict())[relay.internal] = None
        return relay, True

    def find(self, client: Address, client_id: str, now: float) -> Relay | None:
        """The live relay for this client's id (marks it active)."""
        relay = self._by_client.get((client, client_id))
        if relay is not None:
            self.touch(relay, now)
        return relay

    def internal(self, internal_id: str, now: float) -> Relay | None:
        """The live relay behind an internal id (marks it active)."""
        relay = self._by_internal.get(internal_id)
        if relay is not None:
            self.touch(relay, now)
        return relay

    def touch(self, relay: Relay, now: float) -> None:
        relay.last = max(relay.last, now)
        self._by_internal.move_to_end(relay.internal)
        self._per_source[relay.client[0]].move_to_end(relay.internal)

    def expire(self, now: float) -> int:
        gone = 0
        while self._by_internal:
            relay = next(iter(self._by_internal.values()))
            if relay.last + self.ttl > now:
                break
            self._remove(relay, "expired")
            gone += 1
        return gone

    def next_expiry(self) -> float:
        if not self._by_internal:
            return math.inf
        return next(iter(self._by_internal.values())).last + self.ttl

    def _remove(self, relay: Relay, why: str) -> None:
        del self._by_internal[relay.internal]
        del self._by_client[(relay.client, relay.client_id)]
        source = relay.client[0]
        mine = self._per_source[source]
        del mine[relay.internal]
        if not mine:
            del self._per_source[source]
        self.evictions[why] += 1

    def __len__(self) -> int:
        return len(self._by_internal)

    def __iter__(self):
        return iter(self._by_internal.values())

    @property
    def sources(self) -> int:
        return len(self._per_source)

    def waiting(self) -> int:
        """Relays whose request the head is working on (drain waits for these)."""
        return sum(1 for relay in self._by_internal.values() if relay.waiting)
