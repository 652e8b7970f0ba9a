"""The ``diffusers`` backend: Hugging Face pipelines in one inference thread.

Everything that touches torch runs in a worker thread behind a capacity
limiter of one (DESIGN §4), so the Trio event loop keeps heartbeats and
intake going while a pipeline denoises. Compatible requests run as one batch,
each with its own seeded generator. Cancellation and progress go through the
pipeline's step callback.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from hydramesh.common.heartbeat import ModelState
from hydramesh.common.task import MAX_SEED, GenerateRequest

from ..config import WorkerConfig
from ..devices import DevicePlan, plan, probe
from ..encode import encode_image
from ..hub import hub_token
from ..model_pool import ModelPool
from ..models import ModelKind, ModelSource, resolve_model
from ..schedulers import make_scheduler
from .base import Job, JobCancelled, Outcome, Rendered

log = structlog.get_logger()

DEFAULT_STEPS = 50  # diffusers' own default when a request leaves steps open
_WARMUP = {"prompt": "warm-up", "num_inference_steps": 1, "width": 64, "height": 64, "output_type": "pil"}


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory for this request; memory was freed."""


def weights_size(source: ModelSource) -> int | None:
    """Bytes of weights on disk, for the offload decision (None if unknown)."""
    path = Path(source.location)
    if source.kind is ModelKind.SINGLE_FILE:
        return path.stat().st_size
    if source.kind is ModelKind.DIRECTORY:
        return sum(f.stat().st_size for f in path.rglob("*") if f.suffix in (".safetensors", ".bin"))
    return None


def quiet_libraries() -> None:
    """Route diffusers' and transformers' logs through the standard logging
    tree (and so into our JSON lines), warnings and up, without progress bars."""
    import diffusers
    import transformers

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.set_verbosity_warning()
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()


@attrs.define(eq=False)
class PipelineLoader:
    """Loads one model onto its device; blocking, run on the inference thread."""

    device_plan: DevicePlan
    token: str | None = None

    def __call__(self, source: ModelSource) -> Any:
        import torch
        from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline, StableDiffusionXLPipeline

        dtype = getattr(torch, self.device_plan.dtype)
        if source.kind is ModelKind.SINGLE_FILE:
            cls = StableDiffusionXLPipeline if source.pipeline == "sdxl" else StableDiffusionPipeline
            pipe = cls.from_single_file(
                source.location,
                config=source.config,
                dtype=dtype,
                token=self.token,
                local_files_only=source.config is not None and os.path.isdir(source.config),
            )
        else:
            pipe = AutoPipelineForText2Image.from_pretrained(source.location, dtype=dtype, token=self.token)
        pipe.set_progress_bar_config(disable=True)
        offload = self.device_plan.offload
        if offload == "model":
            pipe.enable_model_cpu_offload()
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload()
        else:
            pipe.to(self.device_plan.device)
        pipe.hydramesh_default_scheduler = pipe.scheduler
        pipe.hydramesh_schedulers = {}
        return pipe


@attrs.define(eq=False)
class DiffusersBackend:
    pool: ModelPool
    device_plan: DevicePlan
    warmup: bool = True
    name: str = "diffusers"
    limiter: trio.CapacityLimiter = attrs.Factory(lambda: trio.CapacityLimiter(1))

    @classmethod
    def from_config(cls, config: WorkerConfig, environ: dict[str, str] | None = None) -> DiffusersBackend:
        specs = config.model_path
        if not specs:
            from ..tiny_model import ensure_tiny_model

            specs = (str(ensure_tiny_model(config.models_dir)),)
        sources = tuple(
            resolve_model(spec, config.models_dir, config=config.model_config, pipeline=config.pipeline) for spec in specs
        )
        device_plan = plan(config.device, config.dtype, config.offload, probe(), weights_size(sources[0]))
        loader = PipelineLoader(device_plan, hub_token(os.environ if environ is None else environ, config.env_file))
        pool = ModelPool(sources, config.max_loaded, loader, free_accelerator_memory)
        return cls(pool, device_plan, warmup=config.warmup)

    @property
    def device(self) -> str:
        return self.device_plan.kind

    @property
    def dtype(self) -> str:
        return self.device_plan.dtype

    def models(self) -> tuple[ModelState, ...]:
        return self.pool.states()

    async def load(self) -> None:
        """Load the first ``max_loaded`` models (warming each up); the rest
        load on first use."""
        await trio.to_thread.run_sync(quiet_libraries)  # the imports alone take seconds
        for source in self.pool.sources[: self.pool.max_loaded]:
            started = time.perf_counter()
            try:
                await trio.to_thread.run_sync(self._load_one, source.name, limiter=self.limiter, abandon_on_cancel=True)
            except Exception as exc:
                log.error("model_load_failed", model=source.name, error=repr(exc))
                continue
            log.info(
                "model_loaded",
                model=source.name,
                source=str(source.kind),
                seconds=round(time.perf_counter() - started, 3),
                **attrs.asdict(self.device_plan),
            )

    def _load_one(self, name: str) -> None:
        pipe = self.pool.acquire(name)
        if self.warmup:
            import torch

            with torch.inference_mode():
                pipe(**_WARMUP)

    def batch_key(self, request: GenerateRequest) -> Hashable:
        return (request.model or self.pool.default, request.width, request.height, request.steps, request.guidance, request.scheduler)

    async def run(self, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        return await trio.to_thread.run_sync(self._run, jobs, on_step, limiter=self.limiter)

    def _run(self, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        first = jobs[0].request
        try:
            pipe = self.pool.acquire(first.model or self.pool.default)
            return self._render(pipe, jobs, on_step)
        except Exception as exc:
            if is_out_of_memory(exc):
                free_accelerator_memory()
                exc = OutOfMemory(
                    f"out of accelerator memory for {len(jobs)} image(s) at {first.width or 'default'}x{first.height or 'default'}; "
                    "try a smaller size or batch, or --offload model"
                )
            return [exc for _ in jobs]

    def _render(self, pipe: Any, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        import torch

        first = jobs[0].request
        seeds = [job.request.seed if job.request.seed is not None else random.randint(0, MAX_SEED) for job in jobs]
        # CPU generators: the same seed gives the same starting noise on any device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        steps = first.steps or DEFAULT_STEPS

        def step_end(pipeline: Any, step: int, timestep: Any, tensors: dict) -> dict:
            for job in jobs:
                job.step = step + 1
                on_step(job)
            if all(job.cancelled for job in jobs):
                pipeline._interrupt = True
            return tensors

        for job in jobs:
            job.steps = steps
        pipe.scheduler = self._scheduler(pipe, first.scheduler)
        kwargs: dict[str, Any] = {
            "prompt": [job.request.prompt for job in jobs],
            "negative_prompt": [job.request.negative_prompt or "" for job in jobs],
            "num_inference_steps": steps,
            "generator": generators,
            "callback_on_step_end": step_end,
            "output_type": "pil",
        }
        for field, argument in (("width", "width"), ("height", "height"), ("guidance", "guidance_scale")):
            value = getattr(first, field)
            if value is not None:
                kwargs[argument] = value
        started = time.perf_counter()
        with torch.inference_mode():
            images = pipe(**kwargs).images
        infer_s = time.perf_counter() - started
        outcomes: list[Outcome] = []
        for job, seed, image in zip(jobs, seeds, images, strict=True):
            if job.cancelled:
                outcomes.append(JobCancelled(f"cancelled at step {job.step} of {steps}"))
                continue
            t0 = time.perf_counter()
            data = encode_image(image, job.request.format)
            timings = {"infer_s": infer_s, "encode_s": time.perf_counter() - t0, "batch": float(len(jobs))}
            outcomes.append(Rendered(data, job.request.mime, image.width, image.height, seed, timings))
        return outcomes

    @staticmethod
    def _scheduler(pipe: Any, name: str | None) -> Any:
        if name is None:
            return pipe.hydramesh_default_scheduler
        cache = pipe.hydramesh_schedulers
        if name not in cache:
            cache[name] = make_scheduler(name, pipe.hydramesh_default_scheduler.config)
        return cache[name]

    def mem_free(self) -> int | None:
        if self.device_plan.device != "cuda":
            return None
        import torch

        return int(torch.cuda.mem_get_info()[0])


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free_accelerator_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
