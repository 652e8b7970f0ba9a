"""How fast is the embedded tiny model on this machine?

    python bench/tiny_model.py   (or: ./dev bench tiny_model) [--runs 7] [--threads N]

Builds the model into a temporary directory, then reports the median wall time of
one 64x64 image at 4 and 10 steps (after one warm-up call), for the diffusers
directory and for the single-file export. Performance claims live here, not in
timed tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed images per row")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()

    start = time.perf_counter()
    import torch
    from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline
    from hydramesh.worker.single_file import export_single_file
    from hydramesh.worker.tiny_model import make_tiny_model

    import_s = time.perf_counter() - start

    if args.threads:
        torch.set_num_threads(args.threads)

    rows: list[tuple[str, str]] = [("import torch + diffusers", f"{import_s:.2f} s")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "hydramesh-tiny"
        build_s, _ = timed(make_tiny_model, model_dir)
        export_s, single = timed(export_single_file, model_dir, Path(tmp) / "tiny.safetensors")
        load_s, from_dir = timed(AutoPipelineForText2Image.from_pretrained, model_dir)
        load_single_s, from_file = timed(
            StableDiffusionPipeline.from_single_file,
            str(single),
            config=str(model_dir),
            local_files_only=True,
        )
        rows += [
            ("build diffusers dir", f"{build_s:.2f} s"),
            ("export single file", f"{export_s:.2f} s"),
            ("load dir (from_pretrained)", f"{load_s:.2f} s"),
            ("load single file", f"{load_single_s:.2f} s"),
        ]

        for label, pipe in (("dir", from_dir), ("single file", from_file)):
            pipe.set_progress_bar_config(disable=True)
            for steps in (4, 10):

                def image(steps=steps, pipe=pipe):
                    generator = torch.Generator("cpu").manual_seed(0)
                    return pipe(
                        "a lighthouse at dusk",
                        height=64,
                        width=64,
                        num_inference_steps=steps,
                        generator=generator,
                    )

                image()  # warm-up: first call allocates and picks kernels
                ms = [timed(image)[0] * 1000 for _ in range(args.runs)]
                summary = (
                    f"{statistics.median(ms):.0f} ms median (min {min(ms):.0f}, max {max(ms):.0f})"
                )
                rows.append((f"64x64, {steps:>2} steps ({label})", summary))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.runs} runs/row")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
