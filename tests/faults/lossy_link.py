"""A seeded lossy network in-process: a UDP relay that drops, duplicates and
reorders datagrams on their way to a target and back.

Each distinct sender gets its own upstream socket (like a NAT), so the target
answers the relay and the relay answers the right sender. Everything runs on
Trio sockets, so tests using it can run on ``autojump_clock``.
"""

from __future__ import annotations

import random
from collections import Counter

import attrs
import trio


@attrs.frozen
class Impairment:
    drop: float = 0.0
    duplicate: float = 0.0
    max_delay: float = 0.0  # uniform random delay per datagram: reorders them


@attrs.define(eq=False)
class LossyLink:
    target: tuple
    impairment: Impairment
    rng: random.Random
    counts: Counter = attrs.Factory(Counter)
    address: tuple | None = None

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await front.bind(("127.0.0.1", 0))
        self.address = front.getsockname()
        upstreams: dict[tuple, trio.socket.SocketType] = {}
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            while True:
                data, sender = await front.recvfrom(65536)
                upstream = upstreams.get(sender)
                if upstream is None:
                    upstream = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
                    await upstream.bind(("127.0.0.1", 0))
                    upstreams[sender] = upstream
                    nursery.start_soon(self._back, upstream, front, sender, nursery)
                self._impair(nursery, upstream, data, self.target)

    async def _back(self, upstream, front, sender, nursery) -> None:
        while True:
            data, _ = await upstream.recvfrom(65536)
            self._impair(nursery, front, data, sender)

    def _impair(self, nursery, sock, data: bytes, destination) -> None:
        self.counts["seen"] += 1
        if self.rng.random() < self.impairment.drop:
            self.counts["dropped"] += 1
            return
        copies = 2 if self.rng.random() < self.impairment.duplicate else 1
        self.counts["duplicated"] += copies - 1
        for _ in range(copies):
            nursery.start_soon(self._deliver, sock, data, destination, self.rng.uniform(0, self.impairment.max_delay))

    async def _deliver(self, sock, data, destination, delay) -> None:
        if delay:
            await trio.sleep(delay)
        try:
            await sock.sendto(data, destination)
        except OSError:
            self.counts["send_failed"] += 1
