"""What does the shim add to a request's latency?

    python bench/shim_latency.py [--requests 200] [--tiny-requests 40] [--skip-tiny]
    ./dev bench shim_latency

Starts a local cluster as separate processes — a head, one worker and a shim
— once with the null backend (routing only) and once with the embedded tiny
diffusers model, and sends one request at a time, rotating between three
paths so that they share the same cluster, the same moment and the same load:

  direct     DCF to the head (``ClusterClient``)
  shim udp   bare JSON to the shim's ingress (``ClusterClient(bare=True)``)
  shim http  ``POST /v1/images/generations`` (n=1, b64_json) with httpx

It prints the median and p90 latency of each path, the ratio of each median
to the direct one, and what the shim adds at the median. Performance figures
live here, not in timed tests.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the worker's torch threads would fight the other processes

import httpx  # noqa: E402
import trio  # noqa: E402

from hydramesh.client.cluster import ClusterClient  # noqa: E402
from hydramesh.client.local_cluster import ClusterSpec, LocalCluster, free_port  # noqa: E402
from hydramesh.common.logging import configure_logging  # noqa: E402
from hydramesh.common.task import GenerateRequest  # noqa: E402

PATHS = ("direct", "shim udp", "shim http")


async def measure(spec: ClusterSpec, requests: int, warmup: int, log_file: Path) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    async with trio.open_nursery() as nursery:
        cluster = await nursery.start(LocalCluster(spec, log_file=log_file).run)
        async with (
            ClusterClient.connect(cluster.head_address) as direct,
            ClusterClient.connect(cluster.shim_address, bare=True) as via_udp,
            httpx.AsyncClient(base_url=cluster.shim_url, timeout=120) as http,
        ):
            counter = 0

            async def one(path: str) -> float:
                nonlocal counter
                counter += 1
                # The same work on every path: same prompt, size, steps and
                # seed; a fresh id each time, so nothing comes from a cache.
                fields = dict(prompt="a lighthouse at dusk", width=64, height=64, steps=4, seed=7)
                started = time.perf_counter()
                if path == "direct":
                    await direct.generate(GenerateRequest(f"bench-{counter}", **fields), timeout=120)
                elif path == "shim udp":
                    await via_udp.generate(GenerateRequest(f"bench-{counter}", **fields), timeout=120)
                else:
                    body = {"prompt": fields["prompt"], "size": "64x64", "steps": 4, "seed": 7}
                    response = await http.post("/v1/images/generations", json=body)
                    response.raise_for_status()
                    assert len(response.json()["data"]) == 1
                return time.perf_counter() - started

            for i in range(warmup):
                await one(PATHS[i % len(PATHS)])
            for i in range(requests):
                for k in range(len(PATHS)):
                    path = PATHS[(i + k) % len(PATHS)]  # rotate who goes first
                    seconds[path].append(await one(path))
        nursery.cancel_scope.cancel()
    return seconds


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[8]


def report(title: str, seconds: dict[str, list[float]]) -> None:
    base = statistics.median(seconds["direct"])
    print(f"{title}: {len(seconds['direct'])} requests per path, one at a time")
    print(f"  {'path':<10} {'median':>10} {'p90':>10} {'median ratio':>13} {'added (median)':>15}")
    for path in PATHS:
        median = statistics.median(seconds[path])
        added = "" if path == "direct" else f"{(median - base) * 1000:+.2f} ms"
        print(f"  {path:<10} {median * 1000:8.2f} ms {p90(seconds[path]) * 1000:7.2f} ms {median / base:12.2f}x {added:>15}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per path, null backend")
    parser.add_argument("--tiny-requests", type=int, default=40, help="timed requests per path, tiny model")
    parser.add_argument("--skip-tiny", action="store_true", help="only the null backend")
    parser.add_argument("--models-dir", default="local-models", help="where the tiny model is (written on first use)")
    args = parser.parse_args()
    configure_logging("bench", "bench", level="warning", fmt="console", stream=sys.stderr)

    runs = [("null backend", "null", args.requests)]
    if not args.skip_tiny:
        runs.append(("tiny model, 64x64, 4 steps", "diffusers", args.tiny_requests))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    with tempfile.TemporaryDirectory() as tmp:
        for title, backend, count in runs:
            if backend == "diffusers":
                from hydramesh.worker.tiny_model import ensure_tiny_model

                ensure_tiny_model(Path(args.models_dir))
            spec = ClusterSpec(
                workers=1,
                backend=backend,
                models_dir=Path(args.models_dir),
                head_port=free_port(),
                http_port=free_port(socket.SOCK_STREAM),
                shim_port=free_port(),
                shim_http_port=free_port(socket.SOCK_STREAM),
                shim_args=("--rate", "0"),  # the bench is one busy source
                log_level="warning",
            )
            seconds = trio.run(measure, spec, count, 15, Path(tmp) / f"{backend}.log")
            report(title, seconds)


if __name__ == "__main__":
    main()
