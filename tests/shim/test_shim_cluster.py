"""Head + null workers + shim in one process, on loopback, on Trio's virtual clock."""

from __future__ import annotations

import hashlib
import socket

import trio

from hydramesh.client.cluster import ClusterClient
from hydramesh.common import wire
from hydramesh.common.chunking import Image
from hydramesh.common.errors import ErrorCode
from hydramesh.common.result import Accepted, Failure, encode_result
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig
from hydramesh.shim.config import ShimConfig
from hydramesh.shim.service import serve as serve_shim

from .cluster import start_shim_cluster
from .raw_client import RawClient


async def test_raw_udp_clients_get_byte_exact_images(autojump_clock):
    async with trio.open_nursery() as nursery:
        head, _, shim = await start_shim_cluster(nursery)
        client = await RawClient.open(shim.address)
        body = {"id": "fox-1", "prompt": "a red fox", "width": 256, "height": 256, "seed": 5, "format": "jpeg"}
        image = await client.generate(body)
        assert isinstance(image, Image)
        assert image.info.id == "fox-1" and image.info.mime == "image/jpeg" and image.info.seed == 5
        assert hashlib.sha256(image.data).hexdigest() == image.info.sha256
        assert client.received[0] == Accepted("fox-1")
        # The same request straight to the head (DCF) renders the same bytes.
        async with ClusterClient.connect(head.address) as direct:
            same = await direct.generate(GenerateRequest("direct", "a red fox", width=256, height=256, seed=5, format="jpeg"))
        assert same.data == image.data and same.info.sha256 == image.info.sha256
        client.close()
        nursery.cancel_scope.cancel()


async def test_two_clients_with_the_same_id_at_once_get_their_own_images(autojump_clock):
    async with trio.open_nursery() as nursery:
        head, _, shim = await start_shim_cluster(nursery, null_delay=1.0)
        alice, bob = await RawClient.open(shim.address), await RawClient.open(shim.address)
        got = {}

        async def one(name, client, prompt):
            got[name] = await client.generate({"id": "same-id", "prompt": prompt, "width": 256, "height": 256, "format": "jpeg", "seed": 1})

        async with trio.open_nursery() as both:
            both.start_soon(one, "alice", alice, "alice's lighthouse")
            both.start_soon(one, "bob", bob, "bob's lighthouse")
        assert got["alice"].info.id == got["bob"].info.id == "same-id"
        assert got["alice"].data != got["bob"].data
        # Each got exactly the image of its own prompt.
        async with ClusterClient.connect(head.address) as direct:
            for name in ("alice", "bob"):
                own = await direct.generate(GenerateRequest(f"check-{name}", f"{name}'s lighthouse", width=256, height=256, format="jpeg", seed=1))
                assert own.data == got[name].data
        assert head.statistics().count("admitted") == 4  # two through the shim, two direct
        alice.close(), bob.close()
        nursery.cancel_scope.cancel()


async def test_the_cluster_client_works_through_the_shim(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, shim = await start_shim_cluster(nursery)
        async with ClusterClient.connect(shim.address, bare=True) as client:
            results = {}

            async def one(i):
                results[i] = await client.generate(GenerateRequest(f"r{i}", f"prompt {i}", width=32, height=16, seed=i))

            async with trio.open_nursery() as requests:
                for i in range(60):
                    requests.start_soon(one, i)
        assert sorted(results) == list(range(60))
        assert all(r.info.id == f"r{i}" and r.info.width == 32 for i, r in results.items())
        stats = shim.statistics()
        assert stats.count("mapped") == 60 and stats.relayed["ok"] >= 60
        nursery.cancel_scope.cancel()


async def test_malformed_datagrams_do_not_disturb_a_concurrent_workload(autojump_clock):
    async with trio.open_nursery() as nursery:
        head, _, shim = await start_shim_cluster(nursery, null_delay=0.5, shim_kwargs={"rate": 0.0})
        vandal = await RawClient.open(shim.address)
        junk = [
            b"",
            b"x" * 60000,
            b"\x00\x01\x02",
            b"{not json",
            b"[1, 2, 3]",
            b'"a string"',
            b'{"id": "r1", "prompt": 5}',
            b'{"id": "r2", "prompt": "p", "width": 7}',
            b'{"op": "resend", "id": "r3", "missing": "all"}',
            b'{"op": "cancel", "id": "r4"}',  # valid, but not the vandal's request
            b'{"op": "resend", "id": "r5", "missing": [0]}',
        ]
        async with ClusterClient.connect(shim.address, bare=True) as client:
            results = {}

            async def one(i):
                results[i] = await client.generate(GenerateRequest(f"r{i}", f"prompt {i}", width=64, height=64, seed=i))

            async def vandalise():
                for _ in range(20):
                    for data in junk:
                        await vandal.send(data)
                    await trio.sleep(0.05)

            async with trio.open_nursery() as work:
                work.start_soon(vandalise)
                for i in range(30):
                    work.start_soon(one, i)
        assert sorted(results) == list(range(30))
        for i, image in results.items():
            assert image.info.id == f"r{i}" and hashlib.sha256(image.data).hexdigest() == image.info.sha256
        stats = shim.statistics()
        for reason, count in {"empty": 20, "oversize": 20, "bad_payload": 80, "invalid": 60, "unknown_id": 40}.items():
            assert stats.dropped(reason) == count, reason
        assert head.statistics().count("completed") == 30 and head.statistics().count("failed") == 0
        # The vandal was told what was wrong, never given anything else.
        with trio.move_on_after(1):
            while True:
                await vandal.recv()
        assert {type(m) for m in vandal.received} == {Failure}
        assert {m.code for m in vandal.received} == {ErrorCode.INVALID}
        vandal.close()
        nursery.cancel_scope.cancel()


async def test_lost_chunks_are_recovered_with_resend_through_the_mapping(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, shim = await start_shim_cluster(nursery, max_datagram=500)
        client = await RawClient.open(shim.address)
        image = await client.generate(
            {"id": "big", "prompt": "p", "width": 256, "height": 256, "format": "jpeg", "seed": 3}, lose=frozenset({0, 2})
        )
        assert isinstance(image, Image) and image.info.size > 1000
        assert shim.statistics().count("forwarded_resend") >= 1
        client.close()
        nursery.cancel_scope.cancel()


async def test_cancel_through_the_shim(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, shim = await start_shim_cluster(nursery, workers=1, null_delay=60.0)
        client = await RawClient.open(shim.address)
        await client.send({"id": "slow", "prompt": "p", "steps": 20})
        assert (await client.recv())[0] == Accepted("slow")
        await trio.sleep(1)
        await client.send({"op": "cancel", "id": "slow"})
        with trio.fail_after(10):
            message, _ = await client.recv()
        assert isinstance(message, Failure) and message.code is ErrorCode.CANCELLED and message.id == "slow"
        client.close()
        nursery.cancel_scope.cancel()


async def test_rate_limit_and_mapping_expiry_at_the_service(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, shim = await start_shim_cluster(nursery, shim_kwargs={"rate": 1.0, "burst": 2, "mapping_ttl": 20.0})
        client = await RawClient.open(shim.address)
        for i in range(3):
            await client.send({"id": f"q{i}", "prompt": "p", "width": 64, "height": 64})
        seen = []
        with trio.move_on_after(2):
            while True:
                seen.append((await client.recv())[0])
        refusals = [m for m in seen if isinstance(m, Failure)]
        assert [(m.id, m.code) for m in refusals] == [("q2", ErrorCode.BUSY)]
        assert {m.id for m in seen if m.status == "ok"} == {"q0", "q1"}
        assert len(shim.ingress.ids) == 2
        await trio.sleep(25)  # the client went away: its mappings and bucket go too
        assert len(shim.ingress.ids) == 0 and len(shim.ingress.limiter) == 0
        client.close()
        nursery.cancel_scope.cancel()


async def test_a_keyed_cluster_through_the_shim(autojump_clock, tmp_path):
    key_file = tmp_path / "cluster.key"
    key_file.write_text("s3cret\n")
    async with trio.open_nursery() as nursery:
        head_config = HeadConfig(host="127.0.0.1", port=0, http_port=-1, seed=1, cluster_key_file=key_file)
        _, _, shim = await start_shim_cluster(
            nursery, head_config=head_config, cluster_key_file=key_file, shim_kwargs={"cluster_key_file": key_file}
        )
        async with ClusterClient.connect(shim.address, bare=True) as client:
            image = await client.generate(GenerateRequest("k", "p", width=64, height=64, seed=1))
        assert image.info.id == "k"
        assert shim.statistics().drops.get(("cluster", "bad_tag"), 0) == 0
        nursery.cancel_scope.cancel()


async def test_results_only_from_the_head(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, shim = await start_shim_cluster(nursery)
        stranger = trio.socket.socket(type=socket.SOCK_DGRAM)
        await stranger.bind(("127.0.0.1", 0))
        forged = wire.encode(wire.MsgType.RESULT, 1, 0, encode_result(Failure("x", ErrorCode.INTERNAL, "forged")))
        port = shim.cluster_address[1]
        await stranger.sendto(forged, ("127.0.0.1", port))
        await trio.sleep(0.1)
        assert shim.statistics().dropped("not_from_head", "cluster") == 1
        stranger.close()
        nursery.cancel_scope.cancel()


async def test_drain_refuses_new_requests_and_finishes_held_ones(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, shim = await start_shim_cluster(nursery, null_delay=5.0)
        old, new = await RawClient.open(shim.address), await RawClient.open(shim.address)
        got = {}

        async def held():
            got["old"] = await old.generate({"id": "held", "prompt": "p", "width": 64, "height": 64}, quiet=10.0)

        nursery.start_soon(held)
        while shim.ingress.ids.waiting() < 1:
            await trio.sleep(0.01)
        drained = trio.Event()

        async def drain():
            await shim.drain(60.0)
            drained.set()

        nursery.start_soon(drain)
        await trio.sleep(0.5)
        await new.send({"id": "late", "prompt": "p"})
        message, _ = await new.recv()
        assert isinstance(message, Failure) and message.code is ErrorCode.BUSY and message.retry_after == 5.0
        assert not drained.is_set()
        await drained.wait()
        assert isinstance(got["old"], Image) and got["old"].info.id == "held"
        assert shim.statistics().count("rejected_draining") == 1 and shim.statistics().draining
        old.close(), new.close()
        nursery.cancel_scope.cancel()


async def test_a_host_name_node_target(autojump_clock):
    async with trio.open_nursery() as nursery:
        head, _, _ = await start_shim_cluster(nursery, workers=1)
        shim = await nursery.start(
            serve_shim, ShimConfig(host="127.0.0.1", ingress_port=0, http_port=-1, node_target=f"localhost:{head.address[1]}")
        )
        assert shim.head == ("127.0.0.1", head.address[1])
        async with ClusterClient.connect(shim.address, bare=True) as client:
            assert (await client.generate(GenerateRequest("n", "p", width=8, height=8))).info.id == "n"
        nursery.cancel_scope.cancel()
