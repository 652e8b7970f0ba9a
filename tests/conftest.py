"""Shared fixtures: the offline guard, and the tiny model built once per session."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import structlog

# Tests compare bytes of images rendered in several processes: pin threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


def _forbid_network(mp: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

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
        from hydramesh.worker.tiny_model import ensure_tiny_model

        ensure_tiny_model(root)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(models_dir: Path) -> Path:
    return models_dir / "hydramesh-tiny"


@pytest.fixture(scope="session")
def tiny_single_file(models_dir: Path) -> Path:
    from hydramesh.worker.tiny_model import TINY_SINGLE_FILE_NAME

    return models_dir / TINY_SINGLE_FILE_NAME
