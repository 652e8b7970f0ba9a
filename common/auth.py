"""Freshness and replay checks for keyed clusters (DESIGN §5).

The HMAC tag itself lives in :mod:`.wire`; it proves who sent a datagram.
This module rejects the same datagram sent twice, and datagrams whose
(authenticated) timestamp is too far from now. Both need the tag to mean
anything, so they run only when a cluster key is set.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import attrs

from .errors import Replayed, Stale
from .wire import SEQUENCE_MODULUS, Header

_HALF = SEQUENCE_MODULUS // 2


@attrs.define(eq=False)
class _SenderWindow:
    highest: int
    highest_ts: int
    seen: int = 1  # bit i set: sequence (highest - i) was seen


@attrs.define(eq=False)
class ReplayGuard:
    """A sliding anti-replay window per sender, like IPsec's, plus a clock check.

    A sender that restarts begins its sequence again; its datagrams then look
    "old" but carry newer timestamps, which is how a restart is told apart
    from a replay. Senders are remembered up to ``max_senders`` (LRU).
    """

    window_us: int = 30_000_000
    width: int = 1024
    reorder_us: int = 1_000_000
    max_senders: int = 4096
    _senders: OrderedDict[Hashable, _SenderWindow] = attrs.Factory(OrderedDict)

    def check(self, sender: Hashable, header: Header, now_us: int) -> None:
        ts, seq = header.timestamp_us, header.sequence
        if abs(now_us - ts) > self.window_us:
            raise Stale(f"timestamp is {(now_us - ts) / 1e6:+.1f} s from now; the window is ±{self.window_us / 1e6:g} s")
        state = self._senders.get(sender)
        if state is None:
            self._remember(sender, _SenderWindow(seq, ts))
            return
        self._senders.move_to_end(sender)
        ahead = (seq - state.highest) % SEQUENCE_MODULUS
        if 0 < ahead < _HALF:
            if ts + self.reorder_us < state.highest_ts:
                raise Replayed("sequence is ahead but the timestamp is older: a replay from an earlier run")
            state.seen = ((state.seen << ahead) | 1) & ((1 << self.width) - 1)
            state.highest, state.highest_ts = seq, max(ts, state.highest_ts)
            return
        behind = (state.highest - seq) % SEQUENCE_MODULUS
        if behind < self.width:
            bit = 1 << behind
            if state.seen & bit:
                raise Replayed(f"sequence {seq} was already received")
            state.seen |= bit
            return
        if ts > state.highest_ts + self.reorder_us:
            # Far behind but newer: the sender restarted its counter.
            self._senders[sender] = _SenderWindow(seq, ts)
            return
        raise Replayed(f"sequence {seq} is older than the {self.width}-datagram window")

    def _remember(self, sender: Hashable, state: _SenderWindow) -> None:
        self._senders[sender] = state
        while len(self._senders) > self.max_senders:
            self._senders.popitem(last=False)
