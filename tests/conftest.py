"""Shared fixtures: services started in-process with ``nursery.start`` on port 0."""

from __future__ import annotations

import os

import pytest
import structlog

# Tests compare bytes of images rendered in several processes: pin threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


@pytest.fixture
def anyio_backend():  # pragma: no cover - for libraries that probe it
    return "trio"
