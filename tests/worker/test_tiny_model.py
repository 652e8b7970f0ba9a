from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline
from hydramesh.worker import tiny_model
from hydramesh.worker.tiny_model import (
    TINY_MODEL_NAME,
    TINY_SINGLE_FILE_NAME,
    ensure_tiny_model,
    make_tiny_model,
)
from PIL import Image


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def file_identities(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


def test_directory_loads_offline_and_generates_64px_image(tiny_model_dir, offline):
    pipe = AutoPipelineForText2Image.from_pretrained(tiny_model_dir)

    assert isinstance(pipe, StableDiffusionPipeline)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red bicycle", height=64, width=64, num_inference_steps=4).images[0]
    assert isinstance(image, Image.Image)
    assert image.size == (64, 64)
    assert image.mode == "RGB"
    colours = np.unique(np.asarray(image).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # noise, not a blank or NaN-black frame


def test_long_prompt_is_truncated_to_clip_context(tiny_model_dir, offline, render):
    pipe = AutoPipelineForText2Image.from_pretrained(tiny_model_dir)

    assert pipe.tokenizer.model_max_length == 77
    assert render(pipe, "a very long prompt " * 40).startswith(b"\x89PNG")


def test_two_builds_give_identical_files(tmp_path, models_dir):
    ensure_tiny_model(tmp_path)

    expected = tree_digest(models_dir / TINY_MODEL_NAME)
    assert tree_digest(tmp_path / TINY_MODEL_NAME) == expected
    assert any(name.endswith(".safetensors") for name in expected)
    assert (tmp_path / TINY_SINGLE_FILE_NAME).read_bytes() == (
        models_dir / TINY_SINGLE_FILE_NAME
    ).read_bytes()


def test_same_seed_same_png_and_different_seed_differs(
    tiny_model_dir, offline, pinned_threads, render
):
    pipe = AutoPipelineForText2Image.from_pretrained(tiny_model_dir)

    first = render(pipe, seed=7)
    assert render(pipe, seed=7) == first
    assert render(pipe, seed=8) != first


def test_build_leaves_the_callers_rng_alone(tmp_path):
    torch.manual_seed(1234)
    expected = torch.rand(4)

    torch.manual_seed(1234)
    make_tiny_model(tmp_path / "m")
    assert torch.equal(torch.rand(4), expected)


def test_model_files_are_readable_by_other_users(tmp_path):
    old = os.umask(0o022)
    try:
        ensure_tiny_model(tmp_path)
    finally:
        os.umask(old)

    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) > 10
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files
    ]


def test_existing_model_is_returned_untouched(tmp_path, models_dir):
    shutil.copytree(models_dir / TINY_MODEL_NAME, tmp_path / TINY_MODEL_NAME)
    shutil.copy2(models_dir / TINY_SINGLE_FILE_NAME, tmp_path / TINY_SINGLE_FILE_NAME)
    before = file_identities(tmp_path)

    assert make_tiny_model(tmp_path / TINY_MODEL_NAME) == tmp_path / TINY_MODEL_NAME
    assert ensure_tiny_model(tmp_path) == tmp_path / TINY_MODEL_NAME
    assert ensure_tiny_model(tmp_path) == tmp_path / TINY_MODEL_NAME

    # Nothing rewritten, and no lock file: a complete, read-only models dir must work.
    assert file_identities(tmp_path) == before


def test_missing_single_file_is_added_next_to_existing_model(tmp_path, models_dir):
    shutil.copytree(models_dir / TINY_MODEL_NAME, tmp_path / TINY_MODEL_NAME)
    before = file_identities(tmp_path / TINY_MODEL_NAME)

    ensure_tiny_model(tmp_path)

    assert file_identities(tmp_path / TINY_MODEL_NAME) == before
    assert (tmp_path / TINY_SINGLE_FILE_NAME).read_bytes() == (
        models_dir / TINY_SINGLE_FILE_NAME
    ).read_bytes()


def test_concurrent_ensure_in_threads(tmp_path, models_dir):
    barrier = threading.Barrier(2)

    def call() -> Path:
        barrier.wait()
        return ensure_tiny_model(tmp_path)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(call) for _ in range(2)]
        results = [f.result(timeout=120) for f in futures]

    assert results == [tmp_path / TINY_MODEL_NAME] * 2
    assert tree_digest(tmp_path / TINY_MODEL_NAME) == tree_digest(models_dir / TINY_MODEL_NAME)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_concurrent_ensure_in_processes(tmp_path, models_dir):
    script = (
        "import sys; from pathlib import Path;"
        "from hydramesh.worker.tiny_model import ensure_tiny_model;"
        "print(ensure_tiny_model(Path(sys.argv[1])))"
    )
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [str(tmp_path / TINY_MODEL_NAME)] * 2
    assert tree_digest(tmp_path / TINY_MODEL_NAME) == tree_digest(models_dir / TINY_MODEL_NAME)
    assert (tmp_path / TINY_SINGLE_FILE_NAME).read_bytes() == (
        models_dir / TINY_SINGLE_FILE_NAME
    ).read_bytes()
    assert leftovers(tmp_path) == []


def test_crash_during_build_leaves_no_model(tmp_path, monkeypatch):
    def crash(root: Path) -> None:
        (root / "model_index.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(tiny_model, "_write_pipeline", crash)

    with pytest.raises(RuntimeError, match="killed mid-build"):
        make_tiny_model(tmp_path / TINY_MODEL_NAME)
    assert list(tmp_path.iterdir()) == []


def test_losing_the_rename_race_keeps_the_winners_model(tmp_path, monkeypatch, models_dir):
    target = tmp_path / TINY_MODEL_NAME
    real_write = tiny_model._write_pipeline

    def write_then_get_overtaken(root: Path) -> None:
        real_write(root)
        shutil.copytree(models_dir / TINY_MODEL_NAME, target)

    monkeypatch.setattr(tiny_model, "_write_pipeline", write_then_get_overtaken)

    assert make_tiny_model(target) == target
    assert tree_digest(target) == tree_digest(models_dir / TINY_MODEL_NAME)
    assert leftovers(tmp_path) == []


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    target = tmp_path / TINY_MODEL_NAME
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="not a complete hydramesh-tiny model"):
        make_tiny_model(target)
    assert (target / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_offline_fixture_really_blocks_the_network(offline):
    import socket

    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(AssertionError, match="network access attempted"),
    ):
        sock.connect(("127.0.0.1", 9))
