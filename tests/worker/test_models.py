"""Model sources: Hub ids, directories, single files; confinement; pipeline inference."""

import pytest
from safetensors.torch import save_file
import torch

from hydramesh.worker.models import ModelKind, ModelSourceError, infer_pipeline, resolve_model


def test_hub_id(tmp_path):
    source = resolve_model("stabilityai/sd-turbo", tmp_path)
    assert (source.kind, source.name, source.location) == (ModelKind.HUB, "stabilityai/sd-turbo", "stabilityai/sd-turbo")


def test_directory_and_single_file_with_sibling_config(models_dir, tiny_model_dir, tiny_single_file):
    directory = resolve_model(str(tiny_model_dir), models_dir)
    assert (directory.kind, directory.name) == (ModelKind.DIRECTORY, "hydramesh-tiny")
    single = resolve_model("hydramesh-tiny.safetensors", models_dir)  # relative to the models dir
    assert single.kind is ModelKind.SINGLE_FILE and single.location == str(tiny_single_file)
    assert single.config == str(tiny_model_dir) and single.pipeline == "sd"


def test_explicit_config_and_pipeline_override(models_dir):
    single = resolve_model("hydramesh-tiny.safetensors", models_dir, config="org/configs", pipeline="sdxl")
    assert (single.config, single.pipeline) == ("org/configs", "sdxl")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/etc/passwd.safetensors", "outside the models directory"),
        ("../escape", "outside the models directory"),
        ("missing.safetensors", "does not exist"),
        ("not a hub id", "neither"),
        ("", "empty"),
    ],
)
def test_refusals(tmp_path, spec, message):
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelSourceError, match=message):
        resolve_model(spec, tmp_path / "models")


def test_pickles_and_non_pipelines_are_refused(tmp_path):
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    (tmp_path / "plain").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelSourceError, match="run code"):
        resolve_model("old.ckpt", tmp_path)
    with pytest.raises(ModelSourceError, match="model_index.json"):
        resolve_model("plain", tmp_path)
    with pytest.raises(ModelSourceError, match="not a .safetensors"):
        resolve_model("notes.txt", tmp_path)


def test_symlink_out_of_the_models_dir_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "link.safetensors").symlink_to(tmp_path / "secret.safetensors")
    with pytest.raises(ModelSourceError, match="outside"):
        resolve_model("link.safetensors", tmp_path / "models")


@pytest.mark.parametrize(
    ("key", "pipeline"),
    [
        ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight", "sd"),
        ("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", "sd"),
        ("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight", "sdxl"),
    ],
)
def test_pipeline_inferred_from_keys(tmp_path, key, pipeline):
    path = tmp_path / "m.safetensors"
    save_file({key: torch.zeros(1), "model.diffusion_model.out.2.weight": torch.zeros(1)}, str(path))
    assert resolve_model("m.safetensors", tmp_path).pipeline == pipeline


def test_refiner_and_unknown_checkpoints_are_explained():
    with pytest.raises(ModelSourceError, match="refiner"):
        infer_pipeline(["conditioner.embedders.0.model.transformer.resblocks.0.x"])
    with pytest.raises(ModelSourceError, match="not a Stable Diffusion"):
        infer_pipeline(["lora_unet_down_blocks_0.alpha"])
