"""Exactly-once, byte-exact delivery over links that drop, duplicate and
reorder datagrams in both directions (a seeded in-process network)."""

from __future__ import annotations

import hashlib
import random

import pytest
import trio

from hydramesh.client.cluster import ClusterClient, RetryPolicy
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig
from hydramesh.head.service import serve as serve_head
from hydramesh.worker.backends.null import NullBackend
from hydramesh.worker.config import WorkerConfig
from hydramesh.worker.service import serve as serve_worker

from .lossy_link import Impairment, LossyLink


@pytest.mark.parametrize("seed", range(1, int(__import__("os").environ.get("HYDRAMESH_FAULT_SEEDS", "3")) + 1))
async def test_every_request_arrives_once_and_intact(autojump_clock, seed):
    rng = random.Random(seed)
    bad = Impairment(drop=0.15, duplicate=0.05, max_delay=0.02)
    async with trio.open_nursery() as nursery:
        head = await nursery.start(serve_head, HeadConfig(host="127.0.0.1", port=0, http_port=-1, seed=seed))
        # Workers reach the head through one lossy link, the client through another.
        worker_link = await nursery.start(LossyLink(head.address, bad, rng).serve)
        client_link = await nursery.start(LossyLink(head.address, bad, rng).serve)
        for i in range(2):
            config = WorkerConfig(
                head_ip="127.0.0.1", head_port=worker_link.address[1], host="127.0.0.1", http_port=-1,
                backend="null", worker_id=f"w{i}", null_delay=0.5, max_datagram=600,
            )
            await nursery.start(serve_worker, config)
        while len(head.router.registry.workers) < 2:
            await trio.sleep(0.1)

        images = {}
        policy = RetryPolicy(poll=1.0)
        async with ClusterClient.connect(client_link.address, policy=policy) as client:

            async def one(i):
                # 96×96 noise-like PNGs span several 600-byte datagrams.
                request = GenerateRequest(f"r{i}", f"prompt {i}", width=96, height=96, seed=i)
                images[i] = await client.generate(request, timeout=600)

            async with trio.open_nursery() as requests:
                for i in range(20):
                    requests.start_soon(one, i)

        # Every image equals what a perfect network gives (the null backend is deterministic).
        for i, image in images.items():
            expected = NullBackend()._render(_job(f"r{i}", f"prompt {i}", i), 0.0).data
            assert hashlib.sha256(image.data).digest() == hashlib.sha256(expected).digest()
        stats = head.statistics()
        assert stats.count("completed") == 20 and stats.count("failed") == 0
        assert stats.count("admitted") == 20  # duplicates were recognised, nothing ran twice as a new task
        assert client_link.counts["dropped"] > 0 and worker_link.counts["dropped"] > 0
        assert client_link.counts["duplicated"] > 0
        nursery.cancel_scope.cancel()


def _job(request_id, prompt, seed):
    from hydramesh.worker.backends.base import Job

    return Job(GenerateRequest(request_id, prompt, width=96, height=96, seed=seed), None, 0.0)
