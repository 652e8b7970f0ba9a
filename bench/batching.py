"""Images per second, batched against one by one, through the worker's backend.

    ./dev bench batching                        # the tiny model on this CPU
    python bench/batching.py --device cuda --size 512 --steps 20 --images 16 --batches 1,4,8
    python bench/batching.py --model-path stabilityai/sd-turbo --device cuda --offload model

Each row renders the same ``--images`` prompts (distinct seeds) in batches of
the given size — batch 1 is one pipeline call per image, as without batching —
after one warm-up call, ``--runs`` times; it prints the median images/s, the
ratio to batch 1, and on CUDA the peak accelerator memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", help="model to load (default: the embedded tiny model)")
    parser.add_argument("--models-dir", type=Path, help="models directory (default: a temporary one)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "rocm", "cpu"))
    parser.add_argument("--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32"))
    parser.add_argument("--offload", default="none", choices=("none", "model", "sequential", "auto"))
    parser.add_argument("--size", type=int, default=64, help="square image side in pixels")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--images", type=int, default=8, help="images per timed run")
    parser.add_argument("--batches", default="1,2,4,8", help="batch sizes to compare")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import torch

    from hydramesh.common.task import GenerateRequest
    from hydramesh.worker.backends.base import Job
    from hydramesh.worker.backends.diffusers import DiffusersBackend
    from hydramesh.worker.config import WorkerConfig

    models_dir = args.models_dir or Path(tempfile.mkdtemp(prefix="hydramesh-bench-"))
    config = WorkerConfig(
        model_path=(args.model_path,) if args.model_path else (),
        models_dir=models_dir,
        device=args.device,
        dtype=args.dtype,
        offload=args.offload,
        warmup=False,
    )
    t0 = time.perf_counter()
    backend = DiffusersBackend.from_config(config)
    backend.pool.acquire(backend.pool.default)
    print(f"model {backend.pool.default} on {backend.device} {backend.dtype}, offload {backend.device_plan.offload}; "
          f"loaded in {time.perf_counter() - t0:.2f} s; torch threads {torch.get_num_threads()}")
    cuda = backend.device_plan.device == "cuda"

    def render(batch_size: int) -> float:
        requests = [
            GenerateRequest(f"b{i}", f"a lighthouse, variation {i}", width=args.size, height=args.size, steps=args.steps, seed=i)
            for i in range(args.images)
        ]
        started = time.perf_counter()
        for i in range(0, len(requests), batch_size):
            outcomes = backend._run([Job(r, None, 0.0) for r in requests[i : i + batch_size]], lambda job: None)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            if failed:
                raise failed[0]
        return args.images / (time.perf_counter() - started)

    render(1)  # warm-up: first-call costs are not throughput
    print(f"{args.images} images of {args.size}x{args.size}, {args.steps} steps, median of {args.runs} runs")
    print(f"{'batch':>5}  {'images/s':>9}  {'vs batch 1':>10}" + ("  peak memory" if cuda else ""))
    baseline = None
    for batch_size in (int(b) for b in args.batches.split(",")):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        rate = statistics.median(render(batch_size) for _ in range(args.runs))
        baseline = baseline or rate
        peak = f"  {torch.cuda.max_memory_allocated() / 2**30:8.2f} GiB" if cuda else ""
        print(f"{batch_size:>5}  {rate:>9.2f}  {rate / baseline:>9.2f}x{peak}")


if __name__ == "__main__":
    main()
