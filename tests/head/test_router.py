"""Routing, leases and delivery rules of the head, driven with exact times."""

import pytest

from hydramesh.common.errors import ErrorCode
from hydramesh.common.result import Accepted, Chunk, Failure, Progress, encode_result
from hydramesh.common.task import CancelRequest, GenerateRequest, ResendRequest
from hydramesh.common.wire import MsgType

from .helpers import CLIENT, FakeWorker, client_results, make_router, submit


def setup(workers=2, **config):
    router = make_router(**config)
    fakes = [FakeWorker(router, f"w{i}", ("h", i)) for i in range(workers)]
    for fake in fakes:
        fake.beat(0.0)
    return router, fakes


def req(i="r1", **kw):
    return GenerateRequest(i, "prompt", model="m", steps=10, width=64, height=64, **kw)


def test_admission_acknowledges_pins_a_seed_and_dispatches():
    router, (a, b) = setup()
    submit(router, req(), 1.0)
    assert client_results(router) == [Accepted("r1")]
    (sent,) = a.received()
    assert sent.id == "r1" and sent.seed is not None
    assert b.received() == []


def test_round_robin_across_workers():
    router, (a, b) = setup()
    for i in range(4):
        submit(router, req(f"r{i}"), 1.0)
    assert [t.id for t in a.received()] == ["r0", "r2"]
    assert [t.id for t in b.received()] == ["r1", "r3"]


def test_result_chunks_are_relayed_and_the_task_completes():
    router, (a, _) = setup()
    submit(router, req(), 1.0)
    (task,) = a.received()
    a.accept("r1", 1.1)
    payloads = a.finish(task, 2.0)
    out = client_results(router)
    chunks = [m for m in out if isinstance(m, Chunk)]
    assert len(chunks) == len(payloads) > 1
    stats = router.statistics(2.0)
    assert stats.count("completed") == 1 and stats.in_flight == 0
    assert router.registry.workers["w0"].assigned == set()


def test_repeat_of_live_request_is_reacknowledged_not_redispatched():
    router, (a, b) = setup()
    submit(router, req(), 1.0)
    client_results(router)
    a.received()
    submit(router, req(), 1.5)
    assert client_results(router) == [Accepted("r1")]
    assert a.received() == [] and b.received() == []


def test_repeat_of_finished_request_is_answered_from_cache():
    router, (a, b) = setup()
    submit(router, req(), 1.0)
    (task,) = a.received()
    payloads = a.finish(task, 2.0)
    client_results(router)
    submit(router, req(), 3.0)
    again = [o.payload for o in router.outbox if o.address == CLIENT]
    assert again == payloads
    assert a.received() == [] and b.received() == []
    assert router.statistics(3.0).count("dispatched") == 1


def test_lost_dispatch_is_redispatched_after_the_next_heartbeat():
    router, (a, b) = setup(ack_grace=0.25)
    submit(router, req(), 1.0)
    a.received()  # the TASK datagram is "lost": a never holds it
    a.beat(1.1)  # too soon to tell: could have crossed the TASK in flight
    assert b.received() == []
    a.beat(1.3)
    (moved,) = b.received()
    assert moved.id == "r1"
    assert router.statistics(1.3).count("redispatched") == 1


def test_acknowledged_task_listed_in_heartbeats_stays():
    router, (a, b) = setup()
    submit(router, req(), 1.0)
    a.received()
    a.accept("r1", 1.05)
    for t in (2.0, 3.0, 4.0):
        a.beat(t)
    assert b.received() == []


def test_worker_death_redispatches_its_tasks():
    router, (a, b) = setup(heartbeat_timeout=3.0)
    submit(router, req(), 1.0)
    a.received()
    a.accept("r1", 1.1)
    b.beat(2.5)
    b.beat(3.5)
    router.tick(2.99)
    assert b.received() == []
    router.tick(3.0)  # a was last heard at 0.0
    assert "w0" not in router.registry.workers
    (moved,) = b.received()
    assert moved.id == "r1"


def test_late_result_from_the_first_worker_is_dropped():
    router, (a, b) = setup(heartbeat_timeout=3.0)
    submit(router, req(), 1.0)
    (task,) = a.received()
    b.beat(2.9)
    router.tick(3.0)
    b.received()
    a.beat(3.1)  # rejoins, then delivers the abandoned work
    a.finish(task, 3.2)
    assert [m for m in client_results(router) if isinstance(m, Chunk)] == []
    assert router.statistics(3.2).drops["stale_result"] > 0


def test_lease_expires_without_progress_and_is_extended_by_progress():
    router, (a, b) = setup(lease_base=10.0, lease_per_step_mp=0.0, heartbeat_timeout=1000.0)
    submit(router, req(), 0.0)
    a.received()
    a.accept("r1", 0.1)
    a.progress = 5
    a.beat(8.0)  # progress: the lease now ends at 18.0
    router.tick(10.0)
    assert b.received() == []
    a.beat(12.0)  # no progress since 8.0
    router.tick(17.99)
    assert b.received() == []
    router.tick(18.0)
    (moved,) = b.received()
    assert moved.id == "r1"
    assert router.statistics(18.0).count("leases_expired") == 1
    assert [t for t in a.received() if isinstance(t, CancelRequest)] == [CancelRequest("r1", attempt=1)]


def test_workers_that_lose_acknowledged_work_use_up_the_attempts():
    router, fakes = setup(workers=3, max_attempts=2, heartbeat_timeout=3.0)
    submit(router, req(), 0.0)
    client_results(router)
    (first,) = fakes[0].received()
    fakes[0].accept("r1", 0.1)
    for fake in fakes[1:]:
        fake.beat(2.9)
    router.tick(3.0)  # w0 dies holding it: failure 1
    holder = next(f for f in fakes[1:] if f.received())
    holder.accept("r1", 3.1)
    for fake in fakes:
        if fake is not holder:
            fake.beat(5.9)
    router.tick(5.95)  # the second holder dies too: failure 2 of 2
    (failure,) = client_results(router)
    assert isinstance(failure, Failure) and failure.code is ErrorCode.WORKER_FAILED
    assert "lost by 2 worker(s) in 2 dispatch(es)" in failure.message


def test_lost_task_datagrams_do_not_use_up_the_attempts_but_are_bounded():
    router, fakes = setup(workers=2, max_attempts=1, max_dispatches=4, ack_grace=0.1)
    submit(router, req(), 0.0)
    client_results(router)
    for t in (0.5, 1.0, 1.5):
        for fake in fakes:
            fake.received()  # every TASK datagram is lost
            fake.beat(t)
    assert client_results(router) == [] and router.tasks["r1"].attempts == 4
    for fake in fakes:
        fake.beat(2.0)
    (failure,) = client_results(router)
    assert failure.code is ErrorCode.WORKER_FAILED and "lost by 0 worker(s) in 4 dispatch(es)" in failure.message


def test_missing_chunks_are_rerequested_from_the_worker():
    router, (a, _) = setup(resend_quiet=0.25)
    submit(router, req(), 1.0)
    (task,) = a.received()
    a.accept("r1", 1.0)
    payloads = a.finish(task, 2.0, only={0, 2})
    router.tick(2.2)
    assert a.received() == []
    router.tick(2.25)
    (resend,) = a.received()
    assert isinstance(resend, ResendRequest) and resend.missing == tuple(i for i in range(len(payloads)) if i not in (0, 2))
    for i in resend.missing:
        router.handle_result(payloads[i], a.address, 2.3)
    assert router.statistics(2.3).count("completed") == 1


def test_result_lost_entirely_is_recovered_through_resend_then_recomputed():
    router, (a, b) = setup(resend_rounds=2, resend_quiet=0.25)
    submit(router, req(), 1.0)
    a.received()
    a.accept("r1", 1.0)
    a.holding.clear()  # finished, but every chunk was lost
    a.beat(2.0)
    (resend,) = a.received()
    assert resend == ResendRequest("r1", ())
    router.tick(2.25)
    assert a.received() == [ResendRequest("r1", ())]
    router.tick(2.5)  # rounds exhausted: compute it elsewhere
    (moved,) = b.received()
    assert moved.id == "r1"


def test_cancel_of_queued_and_running_tasks():
    router, (a,) = setup(workers=1)
    a.capacity = 1
    a.beat(0.5)
    submit(router, req("run"), 1.0)
    submit(router, req("wait"), 1.0)
    client_results(router)
    a.received()
    router.handle_task(CancelRequest("wait").encode(), CLIENT, 1.1)
    (failure,) = client_results(router)
    assert failure.id == "wait" and failure.code is ErrorCode.CANCELLED
    router.handle_task(CancelRequest("run").encode(), CLIENT, 1.2)
    assert a.received() == [CancelRequest("run", attempt=1)]
    router.handle_result(encode_result(Failure("run", ErrorCode.CANCELLED, "stopped at step 3")), a.address, 1.3)
    (failure,) = client_results(router)
    assert failure.id == "run" and failure.code is ErrorCode.CANCELLED


def test_progress_is_forwarded_when_asked():
    router, (a, _) = setup()
    submit(router, req(progress=True), 1.0)
    client_results(router)
    a.received()
    a.holding["r1"] = 3
    a.beat(1.5)
    a.beat(2.5)  # same step: reported once
    a.holding["r1"] = 7
    a.beat(3.5)
    assert client_results(router) == [Progress("r1", 3, 10), Progress("r1", 7, 10)]


def test_busy_worker_answer_requeues_without_spending_an_attempt():
    router, (a, b) = setup()
    submit(router, req(), 1.0)
    a.received()
    router.handle_result(encode_result(Failure("r1", ErrorCode.BUSY, "full", retry_after=1.0)), a.address, 1.1)
    (moved,) = b.received()
    assert moved.id == "r1"


def test_unknown_model_and_no_workers():
    router, _ = setup()
    submit(router, GenerateRequest("x", "p", model="nope"), 1.0)
    (failure,) = client_results(router)
    assert failure.code is ErrorCode.UNKNOWN_MODEL and "'nope'" in failure.message and "m" in failure.message
    empty = make_router()
    submit(empty, GenerateRequest("y", "p"), 1.0)
    (failure,) = client_results(empty)
    assert failure.code is ErrorCode.UNKNOWN_MODEL and "no worker" in failure.message


def test_full_queue_answers_busy_with_retry_after():
    router, (a,) = setup(workers=1, queue_max=1)
    a.capacity = 1
    a.beat(0.5)
    for i in range(3):
        submit(router, req(f"r{i}"), 1.0)
    out = client_results(router)
    assert out[:2] == [Accepted("r0"), Accepted("r1")]
    assert isinstance(out[2], Failure) and out[2].code is ErrorCode.BUSY and out[2].retry_after >= 0.5


def test_queued_task_times_out_when_no_worker_takes_it():
    router, (a,) = setup(workers=1, queue_timeout=60.0, heartbeat_timeout=1e9)
    a.capacity = 0
    a.beat(0.5)
    submit(router, req(), 1.0)
    client_results(router)
    router.tick(60.9)
    assert client_results(router) == []
    router.tick(61.0)
    (failure,) = client_results(router)
    assert failure.code is ErrorCode.TIMEOUT


@pytest.mark.parametrize("payload", [b"", b"{", b'{"id":"a b","prompt":"x"}', b'{"id":"a","prompt":"x","steps":0}'])
def test_bad_tasks_are_answered_and_disturb_nothing(payload):
    router, (a, _) = setup()
    submit(router, req(), 1.0)
    client_results(router)
    router.handle_task(payload, ("10.0.0.9", 9), 1.1)
    (failure,) = client_results(router, ("10.0.0.9", 9))
    assert failure.code is ErrorCode.INVALID
    assert router.tasks.keys() == {"r1"}


def test_resend_from_client_is_served_from_cache():
    router, (a, _) = setup()
    submit(router, req(), 1.0)
    (task,) = a.received()
    payloads = a.finish(task, 2.0)
    client_results(router)
    router.handle_task(ResendRequest("r1", (1,)).encode(), CLIENT, 3.0)
    assert [o.payload for o in router.outbox] == [payloads[1]]
    assert all(o.msg_type is MsgType.RESULT for o in router.outbox)


def test_restarted_worker_loses_its_leases():
    router, (a, b) = setup()
    submit(router, req(), 1.0)
    a.received()
    a.accept("r1", 1.1)
    a.boot = "boot-2"
    a.holding.clear()
    a.beat(2.0)
    moved = [t for t in (a.received() + b.received()) if isinstance(t, GenerateRequest)]
    assert [t.id for t in moved] == ["r1"]


def test_dispatches_are_numbered_and_cancels_fenced():
    router, (a, b) = setup(ack_grace=0.1)
    submit(router, req(), 1.0)
    (first,) = a.received()
    assert first.attempt == 1
    a.beat(1.5)  # never acknowledged: moved to b, and a told to stop attempt 1
    assert a.received() == [CancelRequest("r1", attempt=1)]
    (second,) = b.received()
    assert second.attempt == 2


def test_a_cancelled_answer_nobody_asked_for_is_not_passed_on():
    router, (a, _) = setup()
    submit(router, req(), 1.0)
    client_results(router)
    a.received()
    router.handle_result(encode_result(Failure("r1", ErrorCode.CANCELLED, "stale cancel")), a.address, 1.2)
    assert client_results(router) == [] and "r1" in router.tasks
    assert router.statistics(1.2).drops["unrequested_cancel"] == 1
