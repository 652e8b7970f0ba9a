"""The ``diffusers`` backend: Hugging Face pipelines in one inference thread.

Everything that touches torch runs in a worker thread behind a capacity
limiter of one (DESIGN §4), so the Trio event loop keeps heartbeats and
intake going while a pipeline denoises. Cancellation and progress go through
the pipeline's step callback.
"""

from __future__ import annotations

import gc
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
from ..models import ModelKind, ModelSource, resolve_model
from .base import Job, JobCancelled, Outcome, Rendered, UnknownModel

log = structlog.get_logger()


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


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


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


def load_pipeline(source: ModelSource, device_plan: DevicePlan) -> Any:
    """Load one pipeline onto its device (blocking; run it in a thread)."""
    from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline

    dtype = _torch_dtype(device_plan.dtype)
    if source.kind is ModelKind.SINGLE_FILE:
        pipe = StableDiffusionPipeline.from_single_file(
            source.location, config=source.config, dtype=dtype, local_files_only=source.config is not None
        )
    else:
        pipe = AutoPipelineForText2Image.from_pretrained(source.location, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if device_plan.offload == "model":
        pipe.enable_model_cpu_offload()
    elif device_plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(device_plan.device)
    return pipe


@attrs.define(eq=False)
class DiffusersBackend:
    sources: tuple[ModelSource, ...]
    device_plan: DevicePlan
    name: str = "diffusers"
    pipelines: dict[str, Any] = attrs.Factory(dict)
    states: dict[str, str] = attrs.Factory(dict)
    limiter: trio.CapacityLimiter = attrs.Factory(lambda: trio.CapacityLimiter(1))

    def __attrs_post_init__(self) -> None:
        for source in self.sources:
            self.states[source.name] = "loading"

    @classmethod
    def from_config(cls, config: WorkerConfig) -> DiffusersBackend:
        specs = config.model_path
        if not specs:
            from ..tiny_model import ensure_tiny_model

            specs = (str(ensure_tiny_model(config.models_dir)),)
        sources = tuple(resolve_model(spec, config.models_dir) for spec in specs)
        facts = probe()
        device_plan = plan(config.device, config.dtype, config.offload, facts, weights_size(sources[0]))
        return cls(sources, device_plan)

    @property
    def device(self) -> str:
        return self.device_plan.kind

    @property
    def dtype(self) -> str:
        return self.device_plan.dtype

    @property
    def default_model(self) -> str:
        return self.sources[0].name

    def models(self) -> tuple[ModelState, ...]:
        return tuple(ModelState(s.name, self.states[s.name], s.name in self.pipelines) for s in self.sources)

    async def load(self) -> None:
        await trio.to_thread.run_sync(quiet_libraries)  # the imports alone take seconds
        for source in self.sources:
            started = time.perf_counter()
            try:
                pipe = await trio.to_thread.run_sync(load_pipeline, source, self.device_plan, limiter=self.limiter, abandon_on_cancel=True)
            except Exception as exc:
                self.states[source.name] = "failed"
                log.error("model_load_failed", model=source.name, error=repr(exc))
                continue
            self.pipelines[source.name] = pipe
            self.states[source.name] = "ready"
            log.info(
                "model_loaded",
                model=source.name,
                source=str(source.kind),
                seconds=round(time.perf_counter() - started, 3),
                **attrs.asdict(self.device_plan),
            )

    def batch_key(self, request: GenerateRequest) -> Hashable:
        return (request.model or self.default_model, request.width, request.height, request.steps, request.guidance)

    async def run(self, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        return await trio.to_thread.run_sync(self._run, jobs, on_step, limiter=self.limiter)

    def _run(self, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        first = jobs[0].request
        model = first.model or self.default_model
        pipe = self.pipelines.get(model)
        if pipe is None:
            error = UnknownModel(f"model {model!r} is {self.states.get(model, 'not served here')}")
            return [error for _ in jobs]
        try:
            return self._render(pipe, jobs, on_step)
        except Exception as exc:
            if _is_out_of_memory(exc):
                _free_accelerator_memory()
                error: Exception = OutOfMemory(f"out of accelerator memory for a batch of {len(jobs)} at {first.width}x{first.height}: {exc}")
            else:
                error = exc
            return [error for _ in jobs]

    def _render(self, pipe: Any, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        import torch

        first = jobs[0].request
        seeds = [job.request.seed if job.request.seed is not None else random.randint(0, MAX_SEED) for job in jobs]
        # CPU generators: the same seed gives the same starting noise on any device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        steps = first.steps or 50

        def step_end(pipeline: Any, step: int, timestep: Any, tensors: dict) -> dict:
            for job in jobs:
                job.step, job.steps = step + 1, steps
                on_step(job)
            if all(job.cancelled for job in jobs):
                pipeline._interrupt = True
            return tensors

        for job in jobs:
            job.steps = steps
        kwargs: dict[str, Any] = {
            "prompt": [job.request.prompt for job in jobs],
            "negative_prompt": [job.request.negative_prompt or "" for job in jobs],
            "num_inference_steps": steps,
            "generator": generators,
            "callback_on_step_end": step_end,
            "output_type": "pil",
        }
        if first.width is not None:
            kwargs["width"] = first.width
        if first.height is not None:
            kwargs["height"] = first.height
        if first.guidance is not None:
            kwargs["guidance_scale"] = first.guidance
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

    def mem_free(self) -> int | None:
        if self.device_plan.device != "cuda":
            return None
        import torch

        return int(torch.cuda.mem_get_info()[0])


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_accelerator_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
