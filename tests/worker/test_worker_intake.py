"""The worker's intake: idempotent repeats, fenced cancels, busy, bad input."""

import trio

from hydramesh.common.errors import ErrorCode
from hydramesh.common.result import Accepted, Failure, decode_result
from hydramesh.common.task import CancelRequest, GenerateRequest
from hydramesh.common.wire import MsgType
from hydramesh.runtime.udp import DcfEndpoint
from hydramesh.worker.config import WorkerConfig
from hydramesh.worker.service import serve as serve_worker


class FakeHead:
    """A bare endpoint standing in for the head: send TASKs, read RESULTs."""

    def __init__(self, nursery):
        self.endpoint = DcfEndpoint.bind("127.0.0.1", 0)
        self.results = []
        self.changed = trio.Event()
        nursery.start_soon(self.endpoint.serve, self._on)

    def _on(self, datagram, sender):
        if datagram.msg_type is MsgType.RESULT:
            self.results.append(decode_result(datagram.payload)[0])
            self.changed.set()

    def send(self, worker, message):
        self.endpoint.send(MsgType.TASK, message.encode() if hasattr(message, "encode") else message, worker.address)

    async def settle(self):
        await trio.sleep(0.5)

    def take(self):
        out, self.results = self.results, []
        return out


async def start(nursery, head, **overrides):
    values = dict(head_ip="127.0.0.1", head_port=head.endpoint.address[1], host="127.0.0.1", http_port=-1, backend="null", worker_id="w")
    values.update(overrides)
    worker = await nursery.start(serve_worker, WorkerConfig(**values))
    while worker.state != "ready":
        await trio.sleep(0.01)
    return worker


async def test_a_stale_cancel_does_not_stop_a_newer_dispatch(autojump_clock, nursery):
    head = FakeHead(nursery)
    worker = await start(nursery, head, null_delay=10.0)
    head.send(worker, GenerateRequest("t", "p", attempt=2))
    await head.settle()
    head.send(worker, CancelRequest("t", attempt=1))  # delayed, about the first dispatch
    await trio.sleep(20)
    kinds = [type(m).__name__ for m in head.take()]
    assert kinds[0] == "Accepted" and "Failure" not in kinds and kinds.count("Chunk") >= 1
    head.send(worker, GenerateRequest("u", "p", attempt=1))
    await head.settle()
    head.send(worker, CancelRequest("u", attempt=1))
    await trio.sleep(20)
    assert [m.code for m in head.take() if isinstance(m, Failure)] == [ErrorCode.CANCELLED]
    head.send(worker, GenerateRequest("u", "p", attempt=2))  # re-dispatched after the cancel: runs anew
    await trio.sleep(20)
    assert any(type(m).__name__ == "Chunk" for m in head.take())


async def test_repeats_are_reacknowledged_and_answered_from_the_cache(autojump_clock, nursery):
    head = FakeHead(nursery)
    worker = await start(nursery, head, null_delay=1.0)
    head.send(worker, GenerateRequest("a", "p"))
    head.send(worker, GenerateRequest("a", "p"))
    await trio.sleep(5)
    first = head.take()
    assert first[:2] == [Accepted("a"), Accepted("a")]
    chunks = [m for m in first if type(m).__name__ == "Chunk"]
    head.send(worker, GenerateRequest("a", "p"))
    await head.settle()
    assert [m for m in head.take() if type(m).__name__ == "Chunk"] == chunks
    assert worker.statistics().count("accepted") == 1


async def test_busy_and_bad_payloads_are_answered(autojump_clock, nursery):
    head = FakeHead(nursery)
    worker = await start(nursery, head, capacity=1, null_delay=10.0)
    head.send(worker, GenerateRequest("a", "p"))
    head.send(worker, GenerateRequest("b", "p"))
    head.send(worker, b'{"id":"c","prompt":"p","steps":-1}')
    head.send(worker, b"garbage")
    await head.settle()
    answers = {m.id: m for m in head.take()}
    assert answers["a"] == Accepted("a")
    assert answers["b"].code is ErrorCode.BUSY and answers["b"].retry_after > 0
    assert answers["c"].code is ErrorCode.INVALID and answers["c"].field == "steps"
    assert answers[""].code is ErrorCode.INVALID
