"""Head + two null workers in one process, on loopback, on Trio's virtual clock."""

from __future__ import annotations

import trio
import pytest

from hydramesh.client.cluster import ClusterClient, ClusterError
from hydramesh.common.errors import ErrorCode
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig
from hydramesh.head.service import serve as serve_head
from hydramesh.worker.config import WorkerConfig
from hydramesh.worker.service import serve as serve_worker


async def start_cluster(nursery, *, workers=2, head_config=None, **worker_kwargs):
    head = await nursery.start(serve_head, head_config or HeadConfig(host="127.0.0.1", port=0, http_port=-1, seed=1))
    started = []
    for i in range(workers):
        config = WorkerConfig(
            head_ip="127.0.0.1",
            head_port=head.address[1],
            host="127.0.0.1",
            port=0,
            http_port=-1,
            backend="null",
            worker_id=f"w{i}",
            **worker_kwargs,
        )
        started.append(await nursery.start(serve_worker, config))
    while len(head.router.registry.workers) < workers:
        await trio.sleep(0.05)
    return head, started


async def test_hundred_requests_spread_round_robin(autojump_clock):
    async with trio.open_nursery() as nursery:
        # Room for every request at once: nothing but the rotation decides.
        head, _ = await start_cluster(nursery, capacity=64)
        async with ClusterClient.connect(head.address) as client:
            results = {}

            async def one(i):
                results[i] = await client.generate(GenerateRequest(f"r{i}", f"prompt {i}", width=32, height=16, seed=i))

            async with trio.open_nursery() as requests:
                for i in range(100):
                    requests.start_soon(one, i)
        assert len(results) == 100
        assert all(r.info.width == 32 and r.info.height == 16 for r in results.values())
        stats = head.statistics()
        by_worker = stats.dispatched_by_worker()
        assert sum(by_worker.values()) == 100
        assert by_worker == {"w0": 50, "w1": 50}
        assert stats.count("completed") == 100 and stats.count("redispatched") == 0
        nursery.cancel_scope.cancel()


async def test_unknown_model(autojump_clock):
    async with trio.open_nursery() as nursery:
        head, _ = await start_cluster(nursery)
        async with ClusterClient.connect(head.address) as client:
            with pytest.raises(ClusterError) as info:
                await client.generate(GenerateRequest("x", "p", model="sdxl"))
        assert info.value.code is ErrorCode.UNKNOWN_MODEL
        assert "sdxl" in info.value.message and "null" in info.value.message
        nursery.cancel_scope.cancel()


async def test_full_queue_answers_busy_with_retry_after(autojump_clock):
    async with trio.open_nursery() as nursery:
        head_config = HeadConfig(host="127.0.0.1", port=0, http_port=-1, queue_max=2, seed=1)
        head, _ = await start_cluster(nursery, workers=1, head_config=head_config, capacity=1, null_delay=30.0)
        async with ClusterClient.connect(head.address) as client:
            async with trio.open_nursery() as requests:
                # One running and two queued fill the cluster…
                for i in range(3):
                    requests.start_soon(client.generate, GenerateRequest(f"b{i}", "p"))
                while head.statistics().queue_depth < 2:
                    await trio.sleep(0.01)
                # …so the next is told "busy" at once instead of waiting.
                with pytest.raises(ClusterError) as info:
                    await client.generate(GenerateRequest("b3", "p"), retry_busy=False)
                assert info.value.code is ErrorCode.BUSY
                assert info.value.retry_after is not None and info.value.retry_after > 0
                assert head.statistics().count("rejected_busy") == 1
                # Waiting it out works: the queue drains and the retry gets in.
                image = await client.generate(GenerateRequest("b4", "p"))
                assert image.info.id == "b4"
        nursery.cancel_scope.cancel()


async def test_a_loading_worker_gets_no_work_until_ready(autojump_clock):
    from hydramesh.worker.backends.null import NullBackend

    class SlowLoading(NullBackend):
        async def load(self):
            await trio.sleep(5)

    async with trio.open_nursery() as nursery:
        head = await nursery.start(serve_head, HeadConfig(host="127.0.0.1", port=0, http_port=-1, seed=1))
        config = WorkerConfig(head_ip="127.0.0.1", head_port=head.address[1], host="127.0.0.1", http_port=-1, backend="null", worker_id="slow")
        worker = await nursery.start(lambda task_status: serve_worker(config, backend=SlowLoading(), task_status=task_status))
        async with ClusterClient.connect(head.address) as client:
            async with trio.open_nursery() as requests:
                requests.start_soon(client.generate, GenerateRequest("early", "p"))
                await trio.sleep(4)
                assert worker.heartbeat().state == "loading"
                assert [w.state for w in head.statistics().workers] == ["loading"]
                stats = head.statistics()
                assert stats.queue_depth == 1 and stats.count("dispatched") == 0
            assert trio.current_time() >= 5
        assert head.statistics().count("completed") == 1
        nursery.cancel_scope.cancel()
