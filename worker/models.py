"""Where a model comes from: a Hub id, a local diffusers directory, or a
local single-file ``.safetensors`` checkpoint (DESIGN §4).

Local paths are confined to the models directory, so a request — or a
mistyped flag — can never make a worker read arbitrary files. Pickled
checkpoints (``.ckpt``) are refused: loading one runs code from the file.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import attrs

SINGLE_FILE_SUFFIX = ".safetensors"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
PIPELINES = ("auto", "sd", "sdxl")

# Marker keys of the original (LDM) checkpoint layouts.
_SDXL_BASE = "conditioner.embedders.1."
_SDXL_REFINER = "conditioner.embedders.0.model."
_SD2 = "cond_stage_model.model."
_SD1 = "cond_stage_model.transformer."


class ModelKind(enum.StrEnum):
    HUB = "hub"
    DIRECTORY = "directory"
    SINGLE_FILE = "single_file"


class ModelSourceError(ValueError):
    """A model path that cannot be served; the message says why."""


@attrs.frozen
class ModelSource:
    name: str  # what the worker advertises and requests ask for
    kind: ModelKind
    location: str  # a Hub id or an absolute path
    config: str | None = None  # single files: diffusers directory or Hub id holding the configs
    pipeline: str = "sd"  # single files: "sd" (1.x/2.x) or "sdxl"


def infer_pipeline(keys: list[str] | set[str]) -> str:
    """``sd`` or ``sdxl`` from a checkpoint's tensor names."""
    if any(k.startswith(_SDXL_BASE) for k in keys):
        return "sdxl"
    if any(k.startswith(_SDXL_REFINER) for k in keys):
        raise ModelSourceError("this is an SDXL refiner checkpoint: it refines images, it cannot make them from text")
    if any(k.startswith((_SD1, _SD2)) for k in keys):
        return "sd"
    raise ModelSourceError("not a Stable Diffusion checkpoint: no text-encoder keys of SD 1.x, 2.x or SDXL")


def checkpoint_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def resolve_model(spec: str, models_dir: Path, *, config: str | None = None, pipeline: str = "auto") -> ModelSource:
    """Interpret one ``--model-path`` value.

    A single file's configs come from ``config`` or, when that is unset, from
    a diffusers directory beside it with the same stem (``x.safetensors`` and
    ``x/``), which is how the embedded model ships; without either, diffusers
    fetches the configs of the matching base model from the Hub.
    """
    spec = spec.strip()
    if not spec:
        raise ModelSourceError("empty model path")
    root = models_dir.resolve()
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute():
        candidate = root / candidate
    looks_local = spec.startswith((".", "/", "~")) or spec.endswith((SINGLE_FILE_SUFFIX, ".ckpt")) or candidate.exists()
    if not looks_local:
        if not _HUB_ID.fullmatch(spec):
            raise ModelSourceError(f"{spec!r} is neither a file or directory under {root} nor a Hub id like 'org/name'")
        return ModelSource(spec, ModelKind.HUB, spec)
    path = candidate.resolve()
    if not path.is_relative_to(root):
        raise ModelSourceError(f"{spec!r} lies outside the models directory {root}; put it there or set --models-dir")
    if not path.exists():
        raise ModelSourceError(f"{path} does not exist")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelSourceError(f"{path} is a directory without model_index.json: not a diffusers pipeline")
        return ModelSource(path.name, ModelKind.DIRECTORY, str(path))
    if path.suffix == ".ckpt":
        raise ModelSourceError(f"{path}: pickled .ckpt checkpoints can run code when loaded; convert it to .safetensors")
    if path.suffix != SINGLE_FILE_SUFFIX:
        raise ModelSourceError(f"{path} is not a {SINGLE_FILE_SUFFIX} checkpoint")
    sibling = path.with_suffix("")
    if config is None and (sibling / "model_index.json").is_file():
        config = str(sibling)
    kind = infer_pipeline(checkpoint_keys(path)) if pipeline == "auto" else pipeline
    return ModelSource(path.stem, ModelKind.SINGLE_FILE, str(path), config, kind)
