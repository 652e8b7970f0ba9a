"""Where a model comes from: a Hub id, a local diffusers directory, or a
local single-file checkpoint (DESIGN §4).

Local paths are confined to the models directory, so a request — or a
mistyped flag — can never make a worker read arbitrary files.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import attrs

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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
    config: str | None = None  # single files: a diffusers directory or Hub id with the configs


def resolve_model(spec: str, models_dir: Path, *, config: str | None = None) -> ModelSource:
    """Interpret one ``--model-path`` value."""
    spec = spec.strip()
    if not spec:
        raise ModelSourceError("empty model path")
    root = models_dir.resolve()
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute():
        candidate = root / candidate
    looks_local = spec.startswith((".", "/", "~")) or spec.endswith(SINGLE_FILE_SUFFIXES) or candidate.exists()
    if not looks_local:
        if not _HUB_ID.fullmatch(spec):
            raise ModelSourceError(f"{spec!r} is neither a file or directory under {root} nor a Hub id like 'org/name'")
        return ModelSource(spec, ModelKind.HUB, spec, config)
    path = candidate.resolve()
    if not path.is_relative_to(root):
        raise ModelSourceError(f"{spec!r} lies outside the models directory {root}; put it there or set --models-dir")
    if not path.exists():
        raise ModelSourceError(f"{path} does not exist")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelSourceError(f"{path} is a directory without model_index.json: not a diffusers pipeline")
        return ModelSource(path.name, ModelKind.DIRECTORY, str(path), config)
    if path.suffix not in SINGLE_FILE_SUFFIXES:
        raise ModelSourceError(f"{path} is not a {' or '.join(SINGLE_FILE_SUFFIXES)} checkpoint")
    return ModelSource(path.stem, ModelKind.SINGLE_FILE, str(path), config)
