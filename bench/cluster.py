"""A local cluster end to end: start-up, a 10-prompt run, routing throughput.

    ./dev bench cluster [--workers 2] [--prompts 10] [--requests 2000]

1. Starts a head and N diffusers workers (the tiny model) as processes, and
   times the start until every worker is ready.
2. Sends ``--prompts`` prompts (64×64, 8 steps) at once and times the run,
   then the same prompts one after another, for the ratio.
3. Restarts the cluster with the ``null`` backend and sends ``--requests``
   requests, 64 in flight, to measure what the head and the protocol cost
   alone: requests/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hydramesh.client.cluster import ClusterClient  # noqa: E402
from hydramesh.client.local_cluster import ClusterSpec, LocalCluster, free_port  # noqa: E402
from hydramesh.common.logging import configure_logging  # noqa: E402
from hydramesh.common.task import GenerateRequest  # noqa: E402


def spec(backend: str, workers: int, models_dir: Path, *extra: str) -> ClusterSpec:
    return ClusterSpec(
        workers=workers, backend=backend, models_dir=models_dir, head_port=free_port(), http_port=free_port(),
        log_level="warning", worker_args=tuple(extra),
    )


async def prompts_run(args, models_dir: Path, log: Path) -> None:
    from hydramesh.worker.tiny_model import ensure_tiny_model

    ensure_tiny_model(models_dir)
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        cluster = await nursery.start(LocalCluster(spec("diffusers", args.workers, models_dir), log_file=log).run)
        print(f"start head + {args.workers} diffusers workers: {time.perf_counter() - t0:.2f} s")
        async with ClusterClient.connect(cluster.head_address) as client:

            def request(tag: str, i: int) -> GenerateRequest:
                return GenerateRequest(f"{tag}{i}", f"prompt {i}", width=64, height=64, steps=8, seed=i)

            t0 = time.perf_counter()
            async with trio.open_nursery() as batch:
                for i in range(args.prompts):
                    batch.start_soon(client.generate, request("c", i))
            concurrent = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(args.prompts):
                await client.generate(request("s", i))
            sequential = time.perf_counter() - t0
        print(f"{args.prompts} prompts at once:       {concurrent:6.2f} s ({args.prompts / concurrent:.2f} images/s)")
        print(f"{args.prompts} prompts one at a time: {sequential:6.2f} s  ratio {sequential / concurrent:.2f}x")
        nursery.cancel_scope.cancel()


async def routing_run(args, models_dir: Path, log: Path) -> None:
    async with trio.open_nursery() as nursery:
        cluster = await nursery.start(LocalCluster(spec("null", args.workers, models_dir, "--capacity", "64"), log_file=log).run)
        async with ClusterClient.connect(cluster.head_address) as client:
            latencies: list[float] = []
            limiter = trio.Semaphore(64)

            async def one(i: int) -> None:
                async with limiter:
                    t0 = time.perf_counter()
                    await client.generate(GenerateRequest(f"n{i}", "route me", width=8, height=8, steps=1, seed=i))
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            async with trio.open_nursery() as batch:
                for i in range(args.requests):
                    batch.start_soon(one, i)
            wall = time.perf_counter() - t0
        q = statistics.quantiles(latencies, n=100)
        print(f"null backend, {args.requests} requests, 64 in flight: {args.requests / wall:.0f} requests/s; "
              f"latency p50 {q[49] * 1e3:.1f} ms, p90 {q[89] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms")
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    configure_logging("bench", "bench", level="warning", fmt="console", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="hydramesh-bench-"))
    print(f"logs and models in {work}")
    trio.run(prompts_run, args, work / "models", work / "diffusers.log")
    trio.run(routing_run, args, work / "models", work / "null.log")


if __name__ == "__main__":
    main()
