"""Driving the head's router by hand: fake workers and clients, exact times."""

from __future__ import annotations

import attrs

from hydramesh.common.chunking import Image, split
from hydramesh.common.heartbeat import Heartbeat, ModelState, TaskProgress
from hydramesh.common.result import Accepted, decode_result, encode_result
from hydramesh.common.task import GenerateRequest, parse_task
from hydramesh.common.wire import MsgType
from hydramesh.head.config import HeadConfig
from hydramesh.head.router import Router

CLIENT = ("10.0.0.1", 5000)


def make_router(**overrides) -> Router:
    import random

    return Router(HeadConfig(**overrides), rng=random.Random(7))


@attrs.define
class FakeWorker:
    router: Router
    id: str
    address: tuple
    models: tuple = ("m",)
    capacity: int = 2
    boot: str = "boot-1"
    progress: int = 0
    holding: dict = attrs.Factory(dict)  # id -> step

    def beat(self, now: float, **overrides) -> None:
        beat = Heartbeat(
            worker=self.id,
            boot=self.boot,
            models=tuple(ModelState(m) for m in self.models),
            capacity=self.capacity,
            free=self.capacity - len(self.holding),
            queue=0,
            in_flight=tuple(TaskProgress(i, s, 10) for i, s in self.holding.items()),
            progress=self.progress,
        )
        self.router.handle_heartbeat(attrs.evolve(beat, **overrides).encode(), self.address, now)

    def received(self) -> list:
        """TASK messages the router sent this worker (and drops them from the outbox)."""
        mine = [o for o in self.router.outbox if o.address == self.address and o.msg_type is MsgType.TASK]
        self.router.outbox[:] = [o for o in self.router.outbox if o not in mine]
        return [parse_task(o.payload) for o in mine]

    def accept(self, request_id: str, now: float) -> None:
        self.holding[request_id] = 0
        self.router.handle_result(encode_result(Accepted(request_id)), self.address, now)

    def finish(self, request: GenerateRequest, now: float, data: bytes = b"x" * 3000, only=None) -> list[bytes]:
        self.holding.pop(request.id, None)
        image = Image.build(request.id, data, mime="image/png", seed=request.seed, worker=self.id, width=8, height=8)
        payloads = split(image, max_datagram=600)
        for i, payload in enumerate(payloads):
            if only is None or i in only:
                self.router.handle_result(payload, self.address, now)
        return payloads


def client_results(router: Router, client=CLIENT) -> list:
    mine = [o for o in router.outbox if o.address == client]
    router.outbox[:] = [o for o in router.outbox if o.address != client]
    return [decode_result(o.payload)[0] for o in mine]


def submit(router: Router, request: GenerateRequest, now: float, client=CLIENT) -> None:
    router.handle_task(request.encode(), client, now)
