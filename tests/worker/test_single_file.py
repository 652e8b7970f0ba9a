from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    AutoPipelineForText2Image,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders import single_file_utils
from hydramesh.worker.single_file import SingleFileExportError, export_single_file
from safetensors.torch import load_file, save_file


def load_single_file(path: Path, config_dir: Path) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_single_file(
        str(path), config=str(config_dir), local_files_only=True
    )


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert actual[key].shape == tensor.shape, key
        assert torch.equal(actual[key], tensor), key


def assert_diffusers_reads_back(checkpoint: dict[str, torch.Tensor], model_dir: Path) -> None:
    """diffusers' own LDM -> diffusers conversion must give back exactly the directory's weights."""
    for component, convert in (
        ("unet", single_file_utils.convert_ldm_unet_checkpoint),
        ("vae", single_file_utils.convert_ldm_vae_checkpoint),
    ):
        config = json.loads((model_dir / component / "config.json").read_text())
        expected = load_file(model_dir / component / "diffusion_pytorch_model.safetensors")
        assert_same_tensors(convert(checkpoint, config), expected)
    clip = single_file_utils.convert_ldm_clip_checkpoint(checkpoint)
    clip = {k.removeprefix("text_model."): v for k, v in clip.items()}
    assert_same_tensors(clip, load_file(model_dir / "text_encoder" / "model.safetensors"))


def assert_ldm_module_layout(checkpoint: dict[str, torch.Tensor], model_dir: Path) -> None:
    """diffusers' loader is lenient (it accepts an upsampler at `.1` or `.2`); the
    original UNet is nn.Sequential blocks, so sub-module indices must run 0, 1, 2
    without gaps, and an upsampler comes after the attention of its block."""
    unet = json.loads((model_dir / "unet" / "config.json").read_text())
    levels, layers = len(unet["block_out_channels"]), unet["layers_per_block"]
    kinds = {"in_layers": "resnet", "proj_in": "attention", "conv": "upsample", "op": "downsample"}
    # block -> sub-module index -> kinds of module found there
    blocks: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    pattern = r"model\.diffusion_model\.((?:input|output)_blocks\.\d+|middle_block)\.(\d+)\.(\w+)"
    for key in checkpoint:
        if (m := re.match(pattern, key)) and m[3] in kinds:
            blocks[m[1]][int(m[2])].add(kinds[m[3]])
    assert blocks.pop("middle_block") == {0: {"resnet"}, 1: {"attention"}, 2: {"resnet"}}
    # input_blocks.0 is conv_in (no sub-module kind above); the last level has no downsampler.
    assert len([b for b in blocks if b.startswith("input")]) == levels * (layers + 1) - 1
    assert len([b for b in blocks if b.startswith("output")]) == levels * (layers + 1)
    for block, modules in blocks.items():
        assert sorted(modules) == list(range(len(modules))), (block, sorted(modules))
        order = [
            next(iter(modules[i])) if len(modules[i]) == 1 else modules[i] for i in sorted(modules)
        ]
        assert order in (
            ["resnet"],
            ["resnet", "attention"],
            ["downsample"],
            ["resnet", "upsample"],
            ["resnet", "attention", "upsample"],
        ), (block, order)
    # The original VAE attention is made of 1x1 convolutions.
    for part in ("encoder", "decoder"):
        for name in ("q", "k", "v", "proj_out"):
            assert checkpoint[f"first_stage_model.{part}.mid.attn_1.{name}.weight"].ndim == 4


@pytest.fixture(scope="module")
def other_shape_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline with a UNet and VAE of another shape: three levels, one layer
    per block, attention on the two outer levels, a VAE with three levels."""
    root = tmp_path_factory.mktemp("other-shape") / "sd"
    shutil.copytree(tiny_model_dir, root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        unet = UNet2DConditionModel(
            sample_size=16,
            block_out_channels=(32, 32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 32, 64),
            layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4,
        )
    for name, model in (("unet", unet), ("vae", vae)):
        shutil.rmtree(root / name)
        model.save_pretrained(root / name)
    return root


def test_single_file_gives_the_same_png_as_the_directory(
    tiny_model_dir, tiny_single_file, offline, pinned_threads, render
):
    from_dir = AutoPipelineForText2Image.from_pretrained(tiny_model_dir)
    from_file = load_single_file(tiny_single_file, tiny_model_dir)

    for prompt, seed in (("a lighthouse at dusk", 0), ("two cats", 42)):
        assert render(from_file, prompt, seed=seed) == render(from_dir, prompt, seed=seed)


def test_export_is_the_inverse_of_diffusers_conversion(tiny_model_dir, tiny_single_file):
    checkpoint = load_file(tiny_single_file)

    assert single_file_utils.is_clip_model(checkpoint)
    assert_diffusers_reads_back(checkpoint, tiny_model_dir)
    assert_ldm_module_layout(checkpoint, tiny_model_dir)


def test_export_follows_the_component_configs(
    other_shape_dir, tmp_path, offline, pinned_threads, render
):
    out = export_single_file(other_shape_dir, tmp_path / "other.safetensors")

    assert_diffusers_reads_back(load_file(out), other_shape_dir)
    assert_ldm_module_layout(load_file(out), other_shape_dir)
    from_dir = AutoPipelineForText2Image.from_pretrained(other_shape_dir)
    assert render(load_single_file(out, other_shape_dir)) == render(from_dir)


def test_export_replaces_an_existing_file(tiny_model_dir, tiny_single_file, tmp_path):
    out = tmp_path / "tiny.safetensors"
    out.write_bytes(b"stale")

    assert export_single_file(tiny_model_dir, out) == out
    assert out.read_bytes() == tiny_single_file.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"]


def _empty(root: Path, tiny: Path) -> None:
    root.mkdir()


def _other_pipeline(root: Path, tiny: Path) -> None:
    shutil.copytree(tiny, root)
    index = json.loads((root / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLPipeline"
    (root / "model_index.json").write_text(json.dumps(index))


def _no_unet_weights(root: Path, tiny: Path) -> None:
    shutil.copytree(tiny, root)
    (root / "unet" / "diffusion_pytorch_model.safetensors").unlink()


def _unknown_unet_weight(root: Path, tiny: Path) -> None:
    shutil.copytree(tiny, root)
    weights = root / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["add_embedding.linear_1.weight"] = torch.zeros(2, 2)
    save_file(state, weights)


def _transformer_unet(root: Path, tiny: Path) -> None:
    shutil.copytree(tiny, root)
    index = json.loads((root / "model_index.json").read_text())
    index["unet"] = ["diffusers", "SD3Transformer2DModel"]
    (root / "model_index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_empty, "not a diffusers pipeline: no model_index.json"),
        (_other_pipeline, "holds a 'StableDiffusionXLPipeline', not a StableDiffusionPipeline"),
        (
            _transformer_unet,
            "component 'unet' is .*SD3Transformer2DModel.*expected UNet2DConditionModel",
        ),
        (_no_unet_weights, "unet: no safetensors weights"),
        (
            _unknown_unet_weight,
            "unet: no original-layout name for weight 'add_embedding.linear_1.weight'",
        ),
    ],
)
def test_export_refuses_what_is_not_a_stable_diffusion_pipeline(
    make, message, tiny_model_dir, tmp_path
):
    source = tmp_path / "source"
    make(source, tiny_model_dir)
    out = tmp_path / "out" / "model.safetensors"

    with pytest.raises(SingleFileExportError, match=message):
        export_single_file(source, out)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
