"""Protection at the edge (DESIGN §5): a token bucket per source address and
an allow-list of source networks. Both are I/O-free; time is an argument.

The bucket table is bounded: a bucket idle long enough to be full again is
indistinguishable from no bucket and is forgotten, and past ``max_sources``
the least recently seen source is forgotten first (it comes back with a full
bucket, which is what an idle source would have anyway).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Hashable, Iterable

import attrs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the next token, when refused
    notify: bool = False  # refused, and the sender has not been told for a while


ALLOWED = Decision(True)


@attrs.define(eq=False)
class _Bucket:
    tokens: float
    last: float
    notified_until: float = -math.inf


@attrs.define(eq=False)
class RateLimiter:
    """``rate`` tokens per second per source, at most ``burst`` saved up.

    A refusal asks the caller to tell the sender (``notify``) at most once
    per ``notice_interval``: answering every refused datagram would turn a
    flood — or spoofed traffic — into a reflected flood.
    """

    rate: float  # 0 disables the limit
    burst: int
    max_sources: int = 65536
    notice_interval: float = 1.0
    _buckets: OrderedDict[Hashable, _Bucket] = attrs.Factory(OrderedDict)
    refused: int = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, source: Hashable, now: float) -> Decision:
        if not self.enabled:
            return ALLOWED
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[source] = bucket
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.last) * self.rate)
            bucket.last = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return ALLOWED
        self.refused += 1
        notify = now >= bucket.notified_until
        if notify:
            bucket.notified_until = now + self.notice_interval
        return Decision(False, retry_after=(1.0 - bucket.tokens) / self.rate, notify=notify)

    def prune(self, now: float) -> None:
        """Forget sources whose bucket has refilled completely."""
        while self._buckets:
            source, bucket = next(iter(self._buckets.items()))
            if self._full_at(bucket) > now:
                break
            del self._buckets[source]

    def next_prune(self) -> float:
        if not self._buckets or not self.enabled:
            return math.inf
        return self._full_at(next(iter(self._buckets.values())))

    def _full_at(self, bucket: _Bucket) -> float:
        # The one expression both prune() and next_prune() use: a timer
        # that wakes at next_prune() must find that bucket due, to the bit.
        return bucket.last + (self.burst / self.rate if self.enabled else 0.0)

    def __len__(self) -> int:
        return len(self._buckets)


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (``10.0.0.0/8``, ``2001:db8::/32``, a bare address) to networks.

    Each entry may itself be a comma-separated list, as in ``SHIM_ALLOW``.
    Raises ``ValueError`` naming the entry that is not a network.
    """
    networks = []
    for entry in entries:
        for part in entry.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"--allow: {part!r} is not an IP network (for example 10.0.0.0/8)") from None
    return tuple(networks)


@attrs.frozen
class AllowList:
    """Source networks let in; empty lets everything in."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        return cls(parse_networks(entries))

    def permits(self, host: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # a dual-stack socket's view of an IPv4 client
        return any(a in n for a in candidates for n in self.networks if a.version == n.version)
