"""Registry, reaper and round-robin rules, with exact times."""

from hydramesh.common.heartbeat import Heartbeat, ModelState
from hydramesh.head.registry import Change, Registry

from .helpers import FakeWorker, make_router


def beat(worker="w", boot="b", models=(ModelState("m"),), capacity=2, state="ready"):
    return Heartbeat(worker, boot, models, capacity, capacity, 0, state=state)


def test_worker_silent_past_three_intervals_is_gone_not_before():
    registry = Registry(timeout=3.0)
    registry.observe(beat(), ("a", 1), now=10.0)
    assert registry.reap(12.9) == [] and "w" in registry.workers
    assert [w.id for w in registry.reap(13.1)] == ["w"]
    assert registry.workers == {}


def test_heartbeats_keep_a_worker():
    registry = Registry(timeout=3.0)
    for t in range(0, 30):
        registry.observe(beat(), ("a", 1), now=float(t))
        assert registry.reap(t + 2.9) == []


def test_restart_is_detected_by_boot_or_address():
    registry = Registry(timeout=3.0)
    assert registry.observe(beat(), ("a", 1), 0)[1] is Change.JOINED
    assert registry.observe(beat(), ("a", 1), 1)[1] is Change.BEAT
    assert registry.observe(beat(boot="c"), ("a", 1), 2)[1] is Change.RESTARTED
    assert registry.observe(beat(boot="c"), ("a", 2), 3)[1] is Change.RESTARTED
    assert registry.at(("a", 2)).id == "w" and registry.at(("a", 1)) is None


def test_round_robin_skips_workers_that_cannot_take_the_task():
    registry = Registry(timeout=3.0)
    registry.observe(beat("a"), ("h", 1), 0)
    registry.observe(beat("b", models=(ModelState("other"),)), ("h", 2), 0)
    registry.observe(beat("c"), ("h", 3), 0)
    registry.observe(beat("d", state="loading"), ("h", 4), 0)
    picks = []
    for _ in range(4):
        entry = registry.pick("m")
        picks.append(entry.id)
    assert picks == ["a", "c", "a", "c"]


def test_full_workers_are_skipped_and_resident_models_preferred():
    registry = Registry(timeout=3.0)
    registry.observe(beat("a", models=(ModelState("m", loaded=False),)), ("h", 1), 0)
    registry.observe(beat("b"), ("h", 2), 0)
    assert registry.pick("m").id == "b"
    registry.workers["b"].assigned.update({"x", "y"})  # capacity 2: full
    assert registry.pick("m").id == "a"
    registry.workers["a"].assigned.update({"z", "q"})
    assert registry.pick("m") is None


def test_avoided_workers_are_a_last_resort():
    registry = Registry(timeout=3.0)
    registry.observe(beat("a"), ("h", 1), 0)
    registry.observe(beat("b"), ("h", 2), 0)
    assert registry.pick("m", avoid={"a"}).id == "b"
    assert registry.pick("m", avoid={"a"}).id == "b"
    assert registry.pick("m", avoid={"a", "b"}).id in {"a", "b"}


def test_router_reaps_on_its_deadline():
    router = make_router(heartbeat_timeout=3.0)
    worker = FakeWorker(router, "w", ("h", 1))
    worker.beat(0.0)
    assert router.next_deadline() == 3.0
    router.tick(2.9)
    assert "w" in router.registry.workers
    worker.beat(2.95)
    router.tick(3.0)  # the old deadline fires, sees the fresh beat, re-arms
    assert router.next_deadline() == 5.95
    router.tick(5.9)
    assert "w" in router.registry.workers
    router.tick(5.95)
    assert "w" not in router.registry.workers


def test_a_model_still_loading_gets_no_work():
    registry = Registry(timeout=3.0)
    registry.observe(beat("a", models=(ModelState("m", state="loading", loaded=False), ModelState("n"))), ("h", 1), 0)
    assert registry.advertised("m")  # admitted: it will be ready soon…
    assert registry.pick("m") is None  # …but not dispatched yet
    assert registry.pick("n").id == "a"
    registry.observe(beat("a", models=(ModelState("m", state="failed", loaded=False),)), ("h", 1), 1)
    assert not registry.advertised("m")  # a failed model is not served at all
