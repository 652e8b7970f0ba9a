"""Export a diffusers Stable Diffusion directory as one original-layout checkpoint.

The key mapping is the inverse of diffusers' own LDM -> diffusers conversion
(``diffusers/loaders/single_file_utils.py``: ``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``), driven by the
component configs so that any block count / layers-per-block works. A weight the
rules do not cover is an error: the loader would otherwise fail much later with
``Cannot copy out of meta tensor``.

The file loads back offline with::

    StableDiffusionPipeline.from_single_file(path, config=str(diffusers_dir), local_files_only=True)
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import torch
from safetensors.torch import load_file, save

__all__ = ["SingleFileExportError", "export_single_file"]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# The loader recognises a CLIP text encoder by this prefix, including `text_model.`.
CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_EXPECTED_COMPONENTS = {
    "unet": "UNet2DConditionModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModel",
}

# Inverses of DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"] / ["vae"].
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_TOP = {
    f"{part}.{name}": f"{part}.{ldm}"
    for part in ("encoder", "decoder")
    for name, ldm in (
        ("conv_in", "conv_in"),
        ("conv_out", "conv_out"),
        ("conv_norm_out", "norm_out"),
    )
} | {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
# Inverse of update_unet_resnet_ldm_to_diffusers.
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
# Inverse of update_vae_attentions_ldm_to_diffusers.
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}

_VAE_ATTENTION_CONV = re.compile(
    r"first_stage_model\.(encoder|decoder)\.mid\.attn_1\.(q|k|v|proj_out)\.weight"
)


class SingleFileExportError(ValueError):
    """The directory is not a Stable Diffusion pipeline this exporter can express."""


def export_single_file(diffusers_dir: Path, out_path: Path) -> Path:
    """Write ``diffusers_dir`` (a StableDiffusionPipeline) to ``out_path`` in the
    original LDM single-file layout. The file appears atomically; returns ``out_path``."""
    diffusers_dir, out_path = Path(diffusers_dir), Path(out_path)
    _check_pipeline(diffusers_dir)
    unet_cfg = _read_json(diffusers_dir / "unet" / "config.json")
    vae_cfg = _read_json(diffusers_dir / "vae" / "config.json")

    state: dict[str, torch.Tensor] = {}
    for prefix, component, rename in (
        (UNET_PREFIX, "unet", lambda key: _unet_key(key, unet_cfg)),
        (VAE_PREFIX, "vae", lambda key: _vae_key(key, vae_cfg)),
        (CLIP_PREFIX, "text_encoder", lambda key: key.removeprefix("text_model.")),
    ):
        for key, tensor in _load_weights(diffusers_dir / component).items():
            new_key = prefix + rename(key)
            if new_key in state:
                raise SingleFileExportError(f"{component}: two weights map onto {new_key!r}")
            state[new_key] = tensor
    for key, tensor in state.items():
        # LDM's VAE attention is 1x1 convolutions where diffusers has linear layers.
        if _VAE_ATTENTION_CONV.fullmatch(key) and tensor.ndim == 2:
            state[key] = tensor[:, :, None, None].contiguous()

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Serialise in memory and write with open(): safetensors' save_file (and mkstemp)
    # create 0600 files whatever the umask, and a worker running as another user must
    # be able to read the checkpoint.
    data = save(state, metadata={"format": "pt"})
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _unet_key(key: str, cfg: dict) -> str:
    layers = cfg["layers_per_block"]
    if (m := re.fullmatch(r"(.+?)\.(weight|bias)", key)) and m[1] in _UNET_TOP:
        return f"{_UNET_TOP[m[1]]}.{m[2]}"
    # input_blocks.0 is conv_in; each down block then holds `layers` resnet(+attention)
    # slots and, except the last, one downsampler slot.
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        slot = 1 + int(m[1]) * (layers + 1) + int(m[3])
        return _block_key(f"input_blocks.{slot}", m[2], m[4])
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * (layers + 1) + layers}.0.op.{m[2]}"
    # middle_block is resnet, attention, resnet.
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return _unet_resnet(f"middle_block.{2 * int(m[1])}", m[2])
    if m := re.fullmatch(r"mid_block\.attentions\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1]) + 1}.{m[2]}"
    # Up blocks have layers + 1 slots; the upsampler rides in the last slot, after the
    # attention when the block has one.
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        slot = int(m[1]) * (layers + 1) + int(m[3])
        return _block_key(f"output_blocks.{slot}", m[2], m[4])
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        index = 2 if "CrossAttn" in cfg["up_block_types"][block] else 1
        return f"output_blocks.{block * (layers + 1) + layers}.{index}.conv.{m[2]}"
    raise SingleFileExportError(f"unet: no original-layout name for weight {key!r}")


def _block_key(slot: str, kind: str, rest: str) -> str:
    if kind == "attentions":
        return f"{slot}.1.{rest}"
    return _unet_resnet(f"{slot}.0", rest)


def _unet_resnet(prefix: str, rest: str) -> str:
    head, _, tail = rest.partition(".")
    if head not in _UNET_RESNET:
        raise SingleFileExportError(f"unet: unknown resnet weight {prefix}.{rest!r}")
    return f"{prefix}.{_UNET_RESNET[head]}.{tail}"


def _vae_key(key: str, cfg: dict) -> str:
    if (m := re.fullmatch(r"(.+?)\.(weight|bias)", key)) and m[1] in _VAE_TOP:
        return f"{_VAE_TOP[m[1]]}.{m[2]}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # The decoder's up levels are numbered from the lowest resolution in diffusers and
    # from the highest in LDM.
    last = len(cfg["up_block_types"]) - 1
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{last - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{last - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        if m[2] not in _VAE_ATTENTION:
            raise SingleFileExportError(f"vae: unknown attention weight {key!r}")
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
    raise SingleFileExportError(f"vae: no original-layout name for weight {key!r}")


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def _check_pipeline(root: Path) -> None:
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise SingleFileExportError(f"{root} is not a diffusers pipeline: no model_index.json")
    index = _read_json(index_path)
    if index.get("_class_name") != "StableDiffusionPipeline":
        raise SingleFileExportError(
            f"{root} holds a {index.get('_class_name')!r}, not a StableDiffusionPipeline"
        )
    for name, cls in _EXPECTED_COMPONENTS.items():
        entry = index.get(name)
        if not (isinstance(entry, list) and entry[-1:] == [cls]):
            raise SingleFileExportError(f"{root}: component {name!r} is {entry!r}, expected {cls}")

    unet = _read_json(root / "unet" / "config.json")
    layers = unet.get("layers_per_block")
    if not isinstance(layers, int):
        raise SingleFileExportError(f"unet: layers_per_block must be one integer, got {layers!r}")
    allowed = {
        "down_block_types": {"DownBlock2D", "CrossAttnDownBlock2D"},
        "up_block_types": {"UpBlock2D", "CrossAttnUpBlock2D"},
    }
    for field, types in allowed.items():
        if not set(unet.get(field, ())) <= types:
            raise SingleFileExportError(f"unet: {field} {unet.get(field)} has no LDM layout")
    if unet.get("mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
        raise SingleFileExportError(
            f"unet: mid_block_type {unet['mid_block_type']!r} has no LDM layout"
        )
    vae = _read_json(root / "vae" / "config.json")
    vae_types = set(vae.get("down_block_types", ())) | set(vae.get("up_block_types", ()))
    if vae_types != {"DownEncoderBlock2D", "UpDecoderBlock2D"}:
        raise SingleFileExportError(f"vae: block types {sorted(vae_types)} have no LDM layout")


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    for stem in ("diffusion_pytorch_model", "model"):
        single = folder / f"{stem}.safetensors"
        if single.is_file():
            return load_file(single)
        index = folder / f"{stem}.safetensors.index.json"
        if index.is_file():
            weights: dict[str, torch.Tensor] = {}
            for shard in sorted(set(_read_json(index)["weight_map"].values())):
                weights |= load_file(folder / shard)
            return weights
    raise SingleFileExportError(f"{folder}: no safetensors weights (pickled .bin is not supported)")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SingleFileExportError(f"missing {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SingleFileExportError(f"{path} is not valid JSON: {exc}") from exc
