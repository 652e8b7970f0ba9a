"""Run inside a network namespace whose kernel drops UDP at random (see
test_real_loss.py): a local cluster with the tiny model serves requests
twice over; prints a JSON summary on stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import trio

from hydramesh.client.cluster import ClusterClient
from hydramesh.client.local_cluster import ClusterSpec, LocalCluster, fetch_json
from hydramesh.common.logging import configure_logging
from hydramesh.common.task import GenerateRequest


async def scenario(args) -> dict:
    # One image per pipeline call: a batch's float reductions differ from a
    # single image's by a pixel level, and the rounds below compare bytes.
    spec = ClusterSpec(
        workers=2, models_dir=Path(args.models_dir), head_port=7777, http_port=7780, log_level="warning",
        restart=False, worker_args=("--max-batch", "1"),
    )
    async with trio.open_nursery() as nursery:
        cluster = await nursery.start(LocalCluster(spec, log_file=Path(args.log)).run)
        async with ClusterClient.connect(cluster.head_address) as client:
            rounds = []
            for tag in ("a", "b"):
                images = {}

                async def one(i, tag=tag, images=images):
                    request = GenerateRequest(f"{tag}{i}", f"prompt {i}", width=64, height=64, steps=4, seed=i)
                    images[i] = await client.generate(request, timeout=300)

                async with trio.open_nursery() as requests:
                    for i in range(args.requests):
                        requests.start_soon(one, i)
                rounds.append({str(i): image.info.sha256 for i, image in images.items()})
        status = await trio.to_thread.run_sync(fetch_json, cluster.status_url)
        nursery.cancel_scope.cancel()
    return {"rounds": rounds, "counts": status["counts"], "drops": status["drops"], "client": client.counts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    configure_logging("scenario", "netns", level="warning", fmt="json", stream=sys.stderr)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(trio.run(scenario, args)))


if __name__ == "__main__":
    main()
