"""The official ``openai`` package against a shim in front of a head and null
workers, all in this process. The SDK is synchronous: it runs in a thread
while the cluster runs on the Trio loop (so no virtual clock here)."""

from __future__ import annotations

import base64
import functools
import io

import openai
import pytest
import trio
from PIL import Image as PILImage

from hydramesh.client.cluster import ClusterClient
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig

from .cluster import start_shim_cluster


def sdk(shim, key="sk-test") -> openai.OpenAI:
    # max_retries=0: the tests look at each answer, not the SDK's retries.
    return openai.OpenAI(base_url=f"http://127.0.0.1:{shim.http_address[1]}/v1", api_key=key, max_retries=0, timeout=30)


async def call(fn, *args, **kwargs):
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def decode_png(entry) -> PILImage.Image:
    picture = PILImage.open(io.BytesIO(base64.b64decode(entry.b64_json)))
    picture.load()
    return picture


async def test_images_generate_with_the_openai_sdk(tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text("sk-test\n")
    async with trio.open_nursery() as nursery:
        head, _, shim = await start_shim_cluster(
            nursery, head_http=True, shim_kwargs={"http_port": 0, "api_key_file": keys}
        )
        client = sdk(shim)
        result = await call(client.images.generate, prompt="a red fox", n=3, size="64x64", response_format="b64_json")
        assert len(result.data) == 3
        pictures = [decode_png(entry) for entry in result.data]
        assert all(p.format == "PNG" and p.size == (64, 64) for p in pictures)
        assert len({entry.b64_json for entry in result.data}) == 3  # three different images

        # HydraMesh's extras ride in extra_body; the same seed gives the same bytes as DCF.
        one = await call(client.images.generate, prompt="a red fox", size="128x64", extra_body={"seed": 7, "steps": 2})
        assert decode_png(one.data[0]).size == (128, 64)
        async with ClusterClient.connect(head.address) as direct:
            same = await direct.generate(GenerateRequest("direct", "a red fox", width=128, height=64, seed=7, steps=2))
        assert base64.b64decode(one.data[0].b64_json) == same.data

        url = await call(client.images.generate, prompt="a red fox", size="64x64", response_format="url")
        assert url.data[0].url.startswith("data:image/png;base64,")

        models = await call(client.models.list)
        assert [m.id for m in models.data] == ["null"]

        with pytest.raises(openai.BadRequestError) as info:
            await call(client.images.generate, prompt="a red fox", size="65x64")
        assert info.value.status_code == 400 and info.value.body["param"] == "size"
        with pytest.raises(openai.BadRequestError):
            await call(client.images.generate, prompt="a red fox", n=5)
        with pytest.raises(openai.NotFoundError):
            await call(client.images.generate, prompt="a red fox", model="dall-e-3")
        with pytest.raises(openai.AuthenticationError):
            await call(sdk(shim, key="sk-wrong").images.generate, prompt="a red fox")
        nursery.cancel_scope.cancel()


async def test_a_full_cluster_is_a_rate_limit_error():
    async with trio.open_nursery() as nursery:
        head_config = HeadConfig(host="127.0.0.1", port=0, http_port=-1, queue_max=1, seed=1)
        head, _, shim = await start_shim_cluster(
            nursery, workers=1, head_config=head_config, capacity=1, null_delay=60.0, shim_kwargs={"http_port": 0}
        )
        async with ClusterClient.connect(head.address) as filler:
            # One running and one queued fill the cluster.
            for i in range(2):
                nursery.start_soon(functools.partial(filler.generate, GenerateRequest(f"fill-{i}", "p"), timeout=120))
            with trio.fail_after(10):
                while head.statistics().queue_depth < 1:
                    await trio.sleep(0.02)
            with pytest.raises(openai.RateLimitError) as info:
                await call(sdk(shim).images.generate, prompt="a red fox", size="64x64")
            assert info.value.status_code == 429
            assert int(info.value.response.headers["retry-after"]) >= 1
            assert info.value.body["code"] == "busy"
            nursery.cancel_scope.cancel()
