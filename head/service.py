"""The head as a Trio service: the router behind one UDP socket (DESIGN §1).

    async with trio.open_nursery() as nursery:
        head = await nursery.start(serve, HeadConfig(port=0))
        head.address  # the bound UDP address

One receive task decodes datagrams and hands them to the router
synchronously; the router's replies go out through the endpoint's
non-blocking send. A timer task sleeps until the router's next deadline
(worker silence, lease expiry, chunk re-request) or until an earlier one
appears. Time is ``trio.current_time()``, so tests run on ``autojump_clock``.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import structlog
import trio

from hydramesh.common.wire import Datagram, MsgType
from hydramesh.runtime.http import serve_http
from hydramesh.runtime.lifecycle import read_key_file
from hydramesh.runtime.timer import DeadlineTimer
from hydramesh.runtime.udp import Address, DcfEndpoint

from .config import HeadConfig
from .http import make_app
from .router import Router
from .statistics import HeadStatistics


@attrs.define(eq=False)
class Head:
    config: HeadConfig
    endpoint: DcfEndpoint
    router: Router
    log: Any
    http_address: Address | None = None
    timer: DeadlineTimer = attrs.field(init=False)
    _drained: trio.Event = attrs.Factory(trio.Event)

    def __attrs_post_init__(self) -> None:
        self.timer = DeadlineTimer(self.router.next_deadline, self._tick)

    @property
    def address(self) -> Address:
        return self.endpoint.address

    def statistics(self) -> HeadStatistics:
        stats = self.router.statistics(trio.current_time())
        return attrs.evolve(stats, drops=dict(self.router.drops + self.endpoint.drops))

    def _on_datagram(self, datagram: Datagram, sender: Address) -> None:
        now = trio.current_time()
        if datagram.msg_type is MsgType.TASK:
            self.router.handle_task(datagram.payload, sender, now)
        elif datagram.msg_type is MsgType.HEARTBEAT:
            self.router.handle_heartbeat(datagram.payload, sender, now)
        else:
            self.router.handle_result(datagram.payload, sender, now)
        self._flush()

    def _flush(self) -> None:
        outbox = self.router.outbox
        for out in outbox:
            self.endpoint.send(out.msg_type, out.payload, out.address)
        outbox.clear()
        self.timer.check()
        if self.router.draining and not self.router.tasks:
            self._drained.set()

    def _tick(self, now: float) -> None:
        self.router.tick(now)
        self._flush()

    async def drain(self, timeout: float) -> None:
        """Refuse new work (``busy``) and wait for what is in flight."""
        self.router.draining = True
        self.log.info("drain_started", tasks=len(self.router.tasks))
        self._flush()
        with trio.move_on_after(timeout):
            await self._drained.wait()
        self.log.info("drain_finished", abandoned=len(self.router.tasks))


async def serve(config: HeadConfig, *, task_status: trio.TaskStatus[Head] = trio.TASK_STATUS_IGNORED) -> None:
    log = structlog.get_logger().bind(service="head")
    endpoint = DcfEndpoint.bind(config.host, config.port, key=read_key_file(config.cluster_key_file))
    try:
        rng = random.Random(config.seed) if config.seed is not None else random.Random()
        head = Head(config, endpoint, Router(config, rng=rng, log=log), log)
        async with trio.open_nursery() as nursery:
            await nursery.start(endpoint.serve, head._on_datagram)
            nursery.start_soon(head.timer.run)
            if config.http_port >= 0:
                head.http_address = await nursery.start(serve_http, make_app(head), config.http_host, config.http_port)
            log.info("head_listening", udp=list(head.address[:2]), http=head.http_address and list(head.http_address))
            task_status.started(head)
    finally:
        endpoint.close()
