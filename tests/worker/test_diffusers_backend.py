"""The diffusers backend on the tiny model: batching, cancel, schedulers,
single files, several models, out-of-memory."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hydramesh.common.task import SCHEDULERS, GenerateRequest
from hydramesh.worker.backends.base import Job, JobCancelled, Rendered
from hydramesh.worker.backends.diffusers import DiffusersBackend, OutOfMemory, PipelineLoader, free_accelerator_memory
from hydramesh.worker.devices import DevicePlan
from hydramesh.worker.model_pool import ModelPool
from hydramesh.worker.models import resolve_model

CPU = DevicePlan("cpu", "cpu", "float32", "none")
# Batched and one-by-one runs share every seed and so every starting noise;
# only the order of float reductions differs. Seen: at most 1 level of 255.
PIXEL_TOLERANCE = 2


@pytest.fixture(scope="module")
def backend(models_dir, tiny_model_dir, tiny_single_file):
    # The same weights under a second name, to serve two models at once.
    single = models_dir / "tiny-single.safetensors"
    if not single.exists():
        shutil.copy(tiny_single_file, single)
    sources = (
        resolve_model(str(tiny_model_dir), models_dir),
        resolve_model("tiny-single.safetensors", models_dir, config=str(tiny_model_dir)),
    )
    return DiffusersBackend(ModelPool(sources, 2, PipelineLoader(CPU), free_accelerator_memory), CPU, warmup=False)


def request(i=0, **kw):
    values = dict(width=64, height=64, steps=6, seed=100 + i)
    values.update(kw)
    return GenerateRequest(f"r{i}", f"prompt {i}", **values)


def run(backend, *requests, on_step=lambda job: None):
    jobs = [Job(r, None, 0.0) for r in requests]
    return jobs, backend._run(jobs, on_step)


def pixels(outcome: Rendered) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(outcome.data)), dtype=int)


def test_batched_results_equal_unbatched_per_seed(backend, pinned_threads):
    requests = [request(i) for i in range(4)]
    one_by_one = [run(backend, r)[1][0] for r in requests]
    _, batched = run(backend, *requests)
    assert all(isinstance(o, Rendered) for o in one_by_one + batched)
    for single, together in zip(one_by_one, batched):
        assert np.abs(pixels(single) - pixels(together)).max() <= PIXEL_TOLERANCE
        assert together.seed == single.seed and together.timings["batch"] == 4.0
    assert len({o.data for o in batched}) == 4  # four seeds, four images


def test_cancel_stops_at_the_next_step(backend):
    seen = []

    def cancel_at_three(job):
        seen.append(job.step)
        if job.step == 3:
            job.cancelled = True

    jobs, (outcome,) = run(backend, request(steps=40), on_step=cancel_at_three)
    assert isinstance(outcome, JobCancelled) and "step 3 of 40" in str(outcome)
    assert max(seen) == 3


def test_one_cancelled_item_of_a_batch_does_not_stop_the_others(backend):
    def cancel_first(job):
        if job.id == "r0":
            job.cancelled = True

    _, outcomes = run(backend, request(0), request(1), on_step=cancel_first)
    assert isinstance(outcomes[0], JobCancelled) and isinstance(outcomes[1], Rendered)


def test_every_scheduler_renders_and_changes_the_result(backend):
    default = run(backend, request())[1][0].data
    for name in SCHEDULERS:
        (outcome,) = run(backend, request(scheduler=name))[1]
        assert isinstance(outcome, Rendered), name
        if name != "pndm":  # the tiny model's own scheduler is PNDM
            assert outcome.data != default, name
    assert run(backend, request())[1][0].data == default  # the model's own again


def test_single_file_gives_the_directory_s_bytes(backend, pinned_threads):
    (from_dir,) = run(backend, request(model="hydramesh-tiny"))[1]
    (from_file,) = run(backend, request(model="tiny-single"))[1]
    assert from_dir.data == from_file.data


def test_models_are_advertised_with_residency(backend):
    run(backend, request(model="tiny-single"))
    states = {m.name: (m.state, m.loaded) for m in backend.models()}
    assert states == {"hydramesh-tiny": ("ready", True), "tiny-single": ("ready", True)}


def test_out_of_memory_fails_the_request_and_the_worker_goes_on(backend, monkeypatch):
    class Exploding:
        def __call__(self, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    real = backend.pool.acquire("hydramesh-tiny")
    fake = Exploding()
    fake.hydramesh_default_scheduler, fake.hydramesh_schedulers = real.hydramesh_default_scheduler, {}
    with monkeypatch.context() as patch:
        patch.setitem(backend.pool._loaded, "hydramesh-tiny", fake)
        _, outcomes = run(backend, request(0), request(1))
    assert all(isinstance(o, OutOfMemory) and "out of accelerator memory for 2 image(s)" in str(o) for o in outcomes)
    assert isinstance(run(backend, request(2))[1][0], Rendered)
