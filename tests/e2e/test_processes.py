"""Head and workers as separate OS processes, the tiny diffusers model, loopback."""

from __future__ import annotations

import io
import os
import signal

import pytest
import trio
from PIL import Image as PILImage

from hydramesh.client.cluster import ClusterClient
from hydramesh.client.local_cluster import fetch_json
from hydramesh.common.task import GenerateRequest

from .conftest import start

pytestmark = pytest.mark.e2e


def decode(image):
    picture = PILImage.open(io.BytesIO(image.data))
    picture.load()
    return picture


async def test_ten_prompts_over_two_workers(cluster_spec, cluster_log):
    async with trio.open_nursery() as nursery:
        cluster = await start(nursery, cluster_spec(), cluster_log)
        async with ClusterClient.connect(cluster.head_address) as client:
            images = {}

            async def one(i):
                size = (64, 64) if i % 2 else (64, 32)
                request = GenerateRequest(f"p{i}", f"prompt number {i}", width=size[0], height=size[1], steps=4, seed=i)
                images[i] = (size, await client.generate(request, timeout=120))

            with trio.fail_after(180):
                async with trio.open_nursery() as requests:
                    for i in range(10):
                        requests.start_soon(one, i)
        assert len(images) == 10
        for size, image in images.values():
            picture = decode(image)
            assert picture.format == "PNG" and picture.size == size
        assert {image.info.worker for _, image in images.values()} == {"worker-0", "worker-1"}
        nursery.cancel_scope.cancel()
    # SIGTERM on shutdown: every process drained and exited 0.
    assert [c.process.returncode for c in cluster.children] == [0, 0, 0]


async def test_same_seed_gives_identical_bytes_across_processes(cluster_spec, cluster_log):
    async with trio.open_nursery() as nursery:
        cluster = await start(nursery, cluster_spec(), cluster_log)
        async with ClusterClient.connect(cluster.head_address) as client:
            request = GenerateRequest("a", "a lighthouse at dusk", width=64, height=64, steps=4, seed=1234)
            with trio.fail_after(120):
                first = await client.generate(request)
                second = await client.generate(GenerateRequest("b", request.prompt, width=64, height=64, steps=4, seed=1234))
                other = await client.generate(GenerateRequest("c", request.prompt, width=64, height=64, steps=4, seed=1235))
        # Round-robin sends "a" and "b" to different worker processes.
        assert first.info.worker != second.info.worker
        assert first.data == second.data
        assert other.data != first.data
        nursery.cancel_scope.cancel()


async def test_kill_9_of_a_worker_loses_no_request(cluster_spec, cluster_log):
    spec = cluster_spec(restart=False, worker_args=("--capacity", "4"))
    async with trio.open_nursery() as nursery:
        cluster = await start(nursery, spec, cluster_log)
        async with ClusterClient.connect(cluster.head_address) as client:
            images = {}

            async def one(i):
                request = GenerateRequest(f"k{i}", f"prompt {i}", width=64, height=64, steps=12, seed=i)
                images[i] = await client.generate(request, timeout=180)

            with trio.fail_after(240):
                async with trio.open_nursery() as requests:
                    for i in range(10):
                        requests.start_soon(one, i)
                    # Wait until worker-1 holds work, then kill it without warning.
                    while True:
                        status = await trio.to_thread.run_sync(fetch_json, cluster.status_url)
                        held = {w["id"]: w["assigned"] for w in (status or {}).get("workers", [])}
                        if held.get("worker-1", 0) > 0:
                            break
                        await trio.sleep(0.05)
                    os.kill(cluster.pid("worker-1"), signal.SIGKILL)
        assert sorted(images) == list(range(10))
        assert all(decode(image).size == (64, 64) for image in images.values())
        status = await trio.to_thread.run_sync(fetch_json, cluster.status_url)
        assert status["counts"]["redispatched"] >= 1
        assert [w["id"] for w in status["workers"]] == ["worker-0"]
        nursery.cancel_scope.cancel()


async def test_sigterm_drains_held_work_and_exits_zero(cluster_spec, cluster_log):
    spec = cluster_spec(workers=1, restart=False)
    async with trio.open_nursery() as nursery:
        cluster = await start(nursery, spec, cluster_log)
        async with ClusterClient.connect(cluster.head_address) as client:
            started = trio.Event()
            with trio.fail_after(120):
                async with trio.open_nursery() as requests:
                    result = {}

                    async def long_request():
                        request = GenerateRequest("drain", "finish me", width=64, height=64, steps=60, seed=1, progress=True)
                        result["image"] = await client.generate(
                            request, on_progress=lambda _id, step, steps: step >= 1 and started.set()
                        )

                    requests.start_soon(long_request)
                    await started.wait()
                    worker = next(c for c in cluster.children if c.name == "worker-0")
                    worker.process.send_signal(signal.SIGTERM)
                    assert await worker.process.wait() == 0
        assert decode(result["image"]).size == (64, 64)
        nursery.cancel_scope.cancel()
    assert [c.process.returncode for c in cluster.children] == [0, 0]
