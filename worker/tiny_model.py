"""The embedded default model (DESIGN §4): a tiny Stable Diffusion pipeline.

Its weights are random but drawn from a fixed seed, so every worker with the same
torch version builds byte-identical files without any download. It draws noise,
yet runs the real diffusers code path (tokenizer, CLIP, UNet, scheduler, VAE) in
well under a second on a CPU at 64x64, which is what the demo and tests need.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import threading
from pathlib import Path

__all__ = [
    "TINY_MODEL_NAME",
    "TINY_SINGLE_FILE_NAME",
    "ensure_tiny_model",
    "make_tiny_model",
]

TINY_MODEL_NAME = "hydramesh-tiny"
TINY_SINGLE_FILE_NAME = f"{TINY_MODEL_NAME}.safetensors"

_SEED = 0
# Everything the build writes; a directory holding all of it is a finished model
# because it only ever appears through an atomic rename.
_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
# Weight init draws from torch's process-wide RNG: two threads building at once
# would interleave their draws and break the fixed-seed guarantee.
_BUILD_LOCK = threading.Lock()


def make_tiny_model(target_dir: Path) -> Path:
    """Build the tiny pipeline as a diffusers directory at ``target_dir``.

    A complete model already there is returned untouched. The directory appears
    atomically, so a crash or a concurrent builder never exposes a partial model.
    """
    target_dir = Path(target_dir)
    if _is_complete(target_dir):
        return target_dir
    if target_dir.exists() and (not target_dir.is_dir() or any(target_dir.iterdir())):
        raise FileExistsError(
            f"{target_dir} exists but is not a complete {TINY_MODEL_NAME} model; remove it to rebuild"
        )
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    # Built next to the target so the final rename stays on one filesystem.
    tmp = target_dir.with_name(f".{target_dir.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    tmp.mkdir()
    try:
        with _BUILD_LOCK:
            _write_pipeline(tmp)
        _seal(tmp)
        try:
            os.rename(tmp, target_dir)
        except OSError:
            # Lost a race with another builder: its model is byte-identical to ours.
            if not _is_complete(target_dir):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target_dir


def ensure_tiny_model(models_dir: Path) -> Path:
    """Return ``models_dir / TINY_MODEL_NAME``, building it and its single-file export
    (``models_dir / TINY_SINGLE_FILE_NAME``) on first use. Safe across threads and
    processes sharing ``models_dir``."""
    models_dir = Path(models_dir)
    model_dir = models_dir / TINY_MODEL_NAME
    single_file = models_dir / TINY_SINGLE_FILE_NAME
    # No lock when all is there: a pre-provisioned models dir may be read-only.
    if _is_complete(model_dir) and single_file.is_file():
        return model_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    # flock excludes other open file descriptions, so it serialises threads as well
    # as processes; it is released when the file closes, even on a crash.
    with open(models_dir / f".{TINY_MODEL_NAME}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        make_tiny_model(model_dir)
        if not single_file.is_file():
            from .single_file import export_single_file

            export_single_file(model_dir, single_file)
    return model_dir


def _is_complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in _FILES)


def _write_pipeline(root: Path) -> None:
    # Imported here so that finding an existing model never pays for torch/diffusers.
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    transformers.utils.logging.disable_progress_bar()  # "Writing model shards" on stderr

    vocab = _byte_level_vocab()
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]

    # fork_rng leaves the caller's global RNG state as it was; one seed per component
    # keeps each component's weights stable if another one changes.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        torch.manual_seed(_SEED + 1)
        vae = AutoencoderKL(
            sample_size=64,
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
        )
        torch.manual_seed(_SEED + 2)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=77,
                bos_token_id=bos,
                eos_token_id=eos,
                pad_token_id=eos,
            )
        )

    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    text_encoder.save_pretrained(root / "text_encoder")
    # SD 1.x's scheduler; steps_offset=1 because diffusers warns on every load otherwise.
    PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    ).save_pretrained(root / "scheduler")
    _write_tokenizer(root / "tokenizer", vocab)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-level alphabet with no merges: every UTF-8 byte is a token, so
    any prompt tokenizes, one byte per token."""
    # GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest are
    # shifted past 255 so that no symbol is whitespace or a control character.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def _write_tokenizer(folder: Path, vocab: dict[str, int]) -> None:
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        # Without it the tokenizer's limit is "infinite" and prompts overflow CLIP's 77 positions.
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _seal(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            # safetensors writes 0600 whatever the umask; workers may run as another user.
            path.chmod(0o644)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
