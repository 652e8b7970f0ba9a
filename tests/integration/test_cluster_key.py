"""A keyed cluster: members with the key work together, others cannot join."""

import trio

from hydramesh.client.cluster import ClusterClient
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig
from hydramesh.head.service import serve as serve_head
from hydramesh.worker.config import WorkerConfig
from hydramesh.worker.service import serve as serve_worker


async def test_only_key_holders_join_and_everything_is_tagged(autojump_clock, tmp_path):
    key_file, other_key = tmp_path / "cluster.key", tmp_path / "other.key"
    key_file.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    other_key.write_bytes(b"not the cluster key")
    async with trio.open_nursery() as nursery:
        head = await nursery.start(serve_head, HeadConfig(host="127.0.0.1", port=0, http_port=-1, cluster_key_file=key_file))

        def worker(name, key):
            config = WorkerConfig(
                head_ip="127.0.0.1", head_port=head.address[1], host="127.0.0.1", http_port=-1,
                backend="null", worker_id=name, cluster_key_file=key,
            )
            return nursery.start(serve_worker, config)

        await worker("member", key_file)
        await worker("no-key", None)
        await worker("wrong-key", other_key)
        await trio.sleep(3)
        assert list(head.router.registry.workers) == ["member"]
        drops = head.statistics().drops
        assert drops["bad_tag"] >= 2 and drops.get("length_mismatch", 0) + drops.get("too_short", 0) >= 2

        async with ClusterClient.connect(head.address, key=b"0123456789abcdef0123456789abcdef") as client:
            image = await client.generate(GenerateRequest("k1", "keyed", width=16, height=16))
        assert image.info.worker == "member"
        async with ClusterClient.connect(head.address) as keyless:
            with trio.move_on_after(5) as scope:
                await keyless.generate(GenerateRequest("k2", "no key"))
        assert scope.cancelled_caught and "k2" not in head.router.tasks
        nursery.cancel_scope.cancel()
