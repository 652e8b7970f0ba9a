"""Head, workers (tiny diffusers model) and shim as separate OS processes."""

from __future__ import annotations

import base64
import functools
import io
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import trio
from PIL import Image as PILImage

from hydramesh.client.cluster import ClusterClient
from hydramesh.client.local_cluster import free_port
from hydramesh.common.chunking import Image
from hydramesh.common.task import GenerateRequest

from ..shim.raw_client import RawClient
from .conftest import start

pytestmark = pytest.mark.e2e


def picture(data: bytes) -> PILImage.Image:
    image = PILImage.open(io.BytesIO(data))
    image.load()
    return image


async def test_the_tiny_model_through_the_shim(cluster_spec, cluster_log, tmp_path):
    spec = cluster_spec(shim_port=free_port(), shim_http_port=free_port(socket.SOCK_STREAM))
    async with trio.open_nursery() as nursery:
        cluster = await start(nursery, spec, cluster_log)
        with trio.fail_after(180):
            # One at a time, so that both paths render in a batch of one (the
            # worker batches concurrent requests, and a batch's floats differ
            # from a single image's): through the shim and straight to the
            # head, the same request gives the same bytes.
            through = {}
            async with ClusterClient.connect(cluster.head_address) as direct:
                for name, prompt, seed in (("a", "a lighthouse at dusk", 11), ("b", "a red fox in the snow", 12)):
                    client = await RawClient.open(cluster.shim_address)
                    body = {"id": name, "prompt": prompt, "width": 64, "height": 64, "steps": 4, "seed": seed}
                    through[name] = await client.generate(body, quiet=5.0)  # verifies the sha256 in meta
                    client.close()
                    same = await direct.generate(GenerateRequest(f"direct-{name}", prompt, width=64, height=64, steps=4, seed=seed), timeout=120)
                    assert isinstance(through[name], Image) and through[name].data == same.data, name

            # Two raw clients with the same id at once get their own images.
            got = {}

            async def raw(name, prompt):
                client = await RawClient.open(cluster.shim_address)
                body = {"id": "same", "prompt": prompt, "width": 64, "height": 64, "steps": 4, "seed": 5}
                got[name] = await client.generate(body, quiet=5.0)
                client.close()

            async with trio.open_nursery() as clients:
                clients.start_soon(raw, "fox", "a red fox in the snow")
                clients.start_soon(raw, "sea", "a calm sea at night")
            assert got["fox"].info.id == got["sea"].info.id == "same"
            assert got["fox"].data != got["sea"].data

            # The openai SDK against the shim process.
            client = openai.OpenAI(base_url=f"{cluster.shim_url}/v1", api_key="sk-unused", max_retries=0, timeout=120)
            result = await trio.to_thread.run_sync(
                functools.partial(client.images.generate, prompt="a lighthouse at dusk", n=2, size="64x64", extra_body={"steps": 4})
            )
            images = [picture(base64.b64decode(entry.b64_json)) for entry in result.data]
            assert [(i.format, i.size) for i in images] == [("PNG", (64, 64))] * 2
            assert images[0].tobytes() != images[1].tobytes()
            models = await trio.to_thread.run_sync(client.models.list)
            assert [m.id for m in models.data] == ["hydramesh-tiny"]

            # And the CLI through the shim.
            out = tmp_path / "via-shim.png"
            done = await trio.run_process(
                [str(Path(sys.executable).with_name("hydramesh")), "generate", "a lighthouse at dusk", "--via", "shim",
                 "--target", f"127.0.0.1:{spec.shim_port}", "--size", "64x64", "--steps", "4", "--seed", "11", "-o", str(out), "-q"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
            assert out.read_bytes() == through["a"].data
        nursery.cancel_scope.cancel()


async def test_the_shim_process_starts_answers_and_stops_cleanly(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("sk-1\n")
    argv = [str(Path(sys.executable).with_name("hydramesh-shim")), "--host", "127.0.0.1", "--ingress-port", "0",
            "--http-port", "0", "--node-target", "localhost:9", "--api-key-file", str(keys), "--log-format", "json"]
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    lines = []
    try:
        with trio.fail_after(30):
            buffer = b""
            while b'"shim_listening"' not in buffer:
                chunk = await process.stdout.receive_some()
                assert chunk, buffer.decode()
                buffer += chunk
        listening = json.loads(next(line for line in buffer.decode().splitlines() if "shim_listening" in line))
        assert listening["node_target"] == ["127.0.0.1", 9] and listening["api_keys"] == 1
        client = await RawClient.open(tuple(listening["ingress"]))
        await client.send(b"{}")
        with trio.fail_after(10):
            message, _ = await client.recv()
        assert message.code == "invalid" and message.field == "id"
        client.close()
        http = f"http://127.0.0.1:{listening['http'][1]}"
        async with httpx.AsyncClient(base_url=http) as web:
            assert (await web.get("/healthz")).json()["status"] == "ok"
            assert (await web.get("/v1/models")).status_code == 401
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            while chunk := await process.stdout.receive_some():
                buffer += chunk
            assert await process.wait() == 0
        lines = [json.loads(line) for line in buffer.decode().splitlines() if line.startswith("{")]
        events = [line["event"] for line in lines]
        assert events[events.index("draining"):] == ["draining", "drain_started", "drain_finished", "stopped"]
        assert all(line["service"] == "shim" for line in lines if "service" in line)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
