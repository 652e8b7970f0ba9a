"""Fixtures for the tiny-model tests: one model per session, no network, pinned threads."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from hydramesh.worker.tiny_model import TINY_SINGLE_FILE_NAME, ensure_tiny_model

Render = Callable[..., bytes]


def _forbid_network(mp: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import time, so the variable
    # alone proves nothing once it is imported: also flip the constant, and make
    # any attempt to resolve or reach a host fail outright.
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real):
        def connect(sock, address, *args):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                refuse(address)
            return real(sock, address, *args)

        return connect

    mp.setattr(socket, "getaddrinfo", refuse)
    mp.setattr(socket.socket, "connect", guarded(real_connect))
    mp.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_network(monkeypatch)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the tiny model and its single-file export, built once."""
    root = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        _forbid_network(mp)
        ensure_tiny_model(root)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(models_dir: Path) -> Path:
    return models_dir / "hydramesh-tiny"


@pytest.fixture(scope="session")
def tiny_single_file(models_dir: Path) -> Path:
    return models_dir / TINY_SINGLE_FILE_NAME


@pytest.fixture
def pinned_threads() -> Iterator[None]:
    # Float reductions depend on the intra-op thread count; byte comparisons need it fixed.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def render() -> Render:
    """PNG bytes of one small image from `pipe`."""

    def _render(
        pipe, prompt: str = "a lighthouse at dusk", *, seed: int = 0, steps: int = 4
    ) -> bytes:
        pipe.set_progress_bar_config(disable=True)
        image = pipe(
            prompt,
            height=64,
            width=64,
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images[0]
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    return _render
