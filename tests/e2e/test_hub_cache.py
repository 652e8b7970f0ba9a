"""A Hub model id served offline from a warm Hugging Face cache (HF_HOME)."""

from __future__ import annotations

import shutil

import pytest
import trio

from hydramesh.client.cluster import ClusterClient
from hydramesh.common.task import GenerateRequest

from .conftest import start

pytestmark = pytest.mark.e2e
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def warm_cache(hf_home, model_dir, repo="hydramesh/tiny-sd"):
    """The layout huggingface_hub leaves behind after a download."""
    cache = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(COMMIT)
    shutil.copytree(model_dir, cache / "snapshots" / COMMIT)


async def test_hub_id_from_warm_cache_with_hub_offline(cluster_spec, cluster_log, tiny_model_dir, tmp_path, monkeypatch):
    warm_cache(tmp_path / "hf", tiny_model_dir)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = cluster_spec(workers=1, model_paths=("hydramesh/tiny-sd",), models_dir=tmp_path / "empty-models")
    async with trio.open_nursery() as nursery:
        cluster = await start(nursery, spec, cluster_log)
        async with ClusterClient.connect(cluster.head_address) as client:
            with trio.fail_after(120):
                image = await client.generate(
                    GenerateRequest("hub", "from the cache", model="hydramesh/tiny-sd", width=64, height=64, steps=2, seed=3)
                )
        assert image.info.width == 64 and image.info.mime == "image/png"
        assert not (tmp_path / "empty-models" / "hydramesh-tiny").exists()  # nothing fell back to the tiny model
        nursery.cancel_scope.cancel()
