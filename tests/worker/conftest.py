"""Fixtures for the tiny-model tests: one model per session, no network, pinned threads."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
import torch

Render = Callable[..., bytes]


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
