"""Head + a diffusers worker in one process, on the real clock (the model runs
in a real thread): progress, cancellation, several models per worker."""

from __future__ import annotations

import shutil

import pytest
import trio

from hydramesh.client.cluster import ClusterClient, ClusterError
from hydramesh.common.errors import ErrorCode
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig
from hydramesh.head.service import serve as serve_head
from hydramesh.worker.config import WorkerConfig
from hydramesh.worker.service import serve as serve_worker


@pytest.fixture
async def cluster(nursery, models_dir, tiny_model_dir, tiny_single_file):
    single = models_dir / "tiny-single.safetensors"
    if not single.exists():
        shutil.copy(tiny_single_file, single)
    head = await nursery.start(serve_head, HeadConfig(host="127.0.0.1", port=0, http_port=-1))
    worker = await nursery.start(
        serve_worker,
        WorkerConfig(
            head_ip="127.0.0.1",
            head_port=head.address[1],
            host="127.0.0.1",
            http_port=-1,
            models_dir=models_dir,
            model_path=(str(tiny_model_dir), "tiny-single.safetensors"),
            model_config=str(tiny_model_dir),
            max_loaded=1,
            warmup=False,
            heartbeat_interval=0.05,
            worker_id="gpu-0",
        ),
    )
    with trio.fail_after(60):
        while not head.router.registry.workers or worker.state != "ready":
            await trio.sleep(0.05)
    async with ClusterClient.connect(head.address) as client:
        yield head, worker, client


async def test_progress_reaches_the_client(cluster):
    head, worker, client = cluster
    seen = []
    with trio.fail_after(60):
        image = await client.generate(
            GenerateRequest("p1", "progress", width=64, height=64, steps=30, seed=1, progress=True),
            on_progress=lambda request_id, step, steps: seen.append((step, steps)),
        )
    assert image.info.worker == "gpu-0"
    assert seen, "no progress reported"
    assert all(steps == 30 for _, steps in seen)
    assert [step for step, _ in seen] == sorted(step for step, _ in seen)


async def test_cancel_stops_a_running_request_and_the_worker_goes_on(cluster):
    head, worker, client = cluster
    request = GenerateRequest("long", "cancel me", width=64, height=64, steps=150, seed=1, progress=True)
    started = trio.Event()

    def on_progress(request_id, step, steps):
        if step >= 2:
            started.set()

    async def cancel_when_started():
        await started.wait()
        await client.cancel("long")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_when_started)
            with pytest.raises(ClusterError) as info:
                await client.generate(request, on_progress=on_progress)
    assert info.value.code is ErrorCode.CANCELLED
    assert "of 150" in info.value.message and worker.steps_done < 150
    image = await client.generate(GenerateRequest("after", "still serving", width=64, height=64, steps=2, seed=1))
    assert image.info.size > 0


async def test_requests_route_to_each_of_several_models(cluster):
    head, worker, client = cluster
    with trio.fail_after(60):
        a = await client.generate(GenerateRequest("m1", "x", model="hydramesh-tiny", width=64, height=64, steps=2, seed=5))
        b = await client.generate(GenerateRequest("m2", "x", model="tiny-single", width=64, height=64, steps=2, seed=5))
    assert a.data == b.data  # the same weights, one as a directory and one as a single file
    # max_loaded=1: the second model evicted the first; heartbeats say so.
    states = {m.name: m.loaded for m in worker.heartbeat().models}
    assert states == {"hydramesh-tiny": False, "tiny-single": True}
    assert set(head.statistics().models) == {"hydramesh-tiny", "tiny-single"}
    with pytest.raises(ClusterError) as info:
        await client.generate(GenerateRequest("m3", "x", model="sdxl-base"))
    assert info.value.code is ErrorCode.UNKNOWN_MODEL
