"""The ``null`` backend: no ML at all, for routing tests and benchmarks.

It renders a deterministic test pattern derived from the request (prompt,
seed, size) after an optional delay spread over the "denoising steps", so
progress and cancellation behave as with a real pipeline. Because it waits
with ``trio.sleep``, tests that use it run on Trio's virtual clock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable, Sequence
from typing import Any

import attrs
import trio
from PIL import Image

from hydramesh.common.heartbeat import ModelState
from hydramesh.common.task import GenerateRequest

from ..encode import encode_image
from .base import Job, JobCancelled, Outcome, Rendered, UnknownModel

NULL_MODEL = "null"
DEFAULT_SIDE = 64
DEFAULT_STEPS = 4


def pattern(request: GenerateRequest, width: int, height: int) -> Image.Image:
    """A small deterministic RGB pattern, scaled up: cheap at any size."""
    digest = hashlib.sha256(f"{request.prompt}\0{request.seed}\0{request.negative_prompt}".encode()).digest()
    tile = Image.frombytes("RGB", (4, 4), (digest * 2)[:48])
    return tile.resize((width, height), Image.Resampling.NEAREST)


@attrs.define(eq=False)
class NullBackend:
    delay: float = 0.0
    model_names: tuple[str, ...] = (NULL_MODEL,)
    name: str = "null"
    device: str = "none"
    dtype: str = "none"

    def models(self) -> tuple[ModelState, ...]:
        return tuple(ModelState(n) for n in self.model_names)

    async def load(self) -> None:
        return None

    def batch_key(self, request: GenerateRequest) -> Hashable:
        return (request.model, request.width, request.height, request.steps)

    async def run(self, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        steps = max((j.request.steps or DEFAULT_STEPS) for j in jobs)
        for job in jobs:
            job.steps = steps
        started = time.perf_counter()
        for step in range(1, steps + 1):
            if self.delay:
                await trio.sleep(self.delay / steps)
            for job in jobs:
                if not job.cancelled:
                    job.step = step
                    on_step(job)
            if all(job.cancelled for job in jobs):
                break
        outcomes: list[Outcome] = []
        for job in jobs:
            outcomes.append(self._render(job, started))
        return outcomes

    def _render(self, job: Job, started: float) -> Outcome:
        request = job.request
        if job.cancelled:
            return JobCancelled(f"cancelled at step {job.step} of {job.steps}")
        if request.model is not None and request.model not in self.model_names:
            return UnknownModel(f"this worker serves {', '.join(self.model_names)}, not {request.model!r}")
        width, height = request.width or DEFAULT_SIDE, request.height or DEFAULT_SIDE
        t0 = time.perf_counter()
        data = encode_image(pattern(request, width, height), request.format)
        return Rendered(
            data,
            request.mime,
            width,
            height,
            request.seed,
            {"infer_s": t0 - started, "encode_s": time.perf_counter() - t0},
        )

    def mem_free(self) -> int | None:
        return None
