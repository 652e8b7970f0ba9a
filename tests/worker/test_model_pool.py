"""Several models per worker: advertised states, LRU residency, failures."""

import threading

import pytest

from hydramesh.worker.backends.base import UnknownModel
from hydramesh.worker.model_pool import ModelPool, ModelUnavailable
from hydramesh.worker.models import ModelKind, ModelSource


def sources(*names):
    return tuple(ModelSource(n, ModelKind.HUB, f"org/{n}") for n in names)


def test_lru_keeps_at_most_max_loaded():
    loads, releases = [], []
    pool = ModelPool(sources("a", "b", "c"), 2, lambda s: loads.append(s.name) or f"pipe-{s.name}", lambda: releases.append(1))
    assert pool.acquire("a") == "pipe-a"
    pool.acquire("b")
    pool.acquire("a")  # a is now the most recently used
    pool.acquire("c")  # evicts b
    assert pool.loaded() == ["a", "c"] and loads == ["a", "b", "c"] and len(releases) == 1
    assert {m.name: m.loaded for m in pool.states()} == {"a": True, "b": False, "c": True}
    assert all(m.state == "ready" for m in pool.states())


def test_loading_state_is_visible_while_a_model_loads():
    started, release = threading.Event(), threading.Event()

    def slow_load(source):
        started.set()
        release.wait(5)
        return "pipe"

    pool = ModelPool(sources("a"), 1, slow_load)
    thread = threading.Thread(target=pool.acquire, args=("a",))
    thread.start()
    started.wait(5)
    assert [(m.state, m.loaded) for m in pool.states()] == [("loading", False)]
    release.set()
    thread.join(5)
    assert [(m.state, m.loaded) for m in pool.states()] == [("ready", True)]


def test_failed_load_is_advertised_and_explained():
    def broken(source):
        raise OSError("no such repository")

    pool = ModelPool(sources("a", "b"), 1, broken)
    with pytest.raises(ModelUnavailable, match="no such repository"):
        pool.acquire("a")
    assert [m.state for m in pool.states()] == ["failed", "ready"]
    with pytest.raises(ModelUnavailable):
        pool.acquire("a")  # not retried on every request


def test_unknown_and_duplicate_names():
    pool = ModelPool(sources("a"), 1, lambda s: "pipe")
    with pytest.raises(UnknownModel, match="serves a"):
        pool.acquire("zzz")
    with pytest.raises(ValueError, match="share a name"):
        ModelPool(sources("a", "a"), 1, lambda s: "pipe")
