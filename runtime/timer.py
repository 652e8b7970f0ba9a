"""Waking an I/O-free state machine when its next deadline comes due.

The state machines (the head's router, the shim's ingress) only say when
they next need the time to move on; this timer sleeps until then. Whoever
hands the machine an input calls :meth:`DeadlineTimer.check` afterwards, which
wakes the timer early if that input created an earlier deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import trio


@attrs.define(eq=False)
class DeadlineTimer:
    next_deadline: Callable[[], float]
    on_due: Callable[[float], None]  # called with trio.current_time()
    _sleeping_until: float = math.inf
    _wakeup: trio.Event = attrs.Factory(trio.Event)

    def check(self) -> None:
        if self.next_deadline() < self._sleeping_until:
            self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._sleeping_until = self.next_deadline()
            with trio.move_on_at(self._sleeping_until):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self.on_due(trio.current_time())
