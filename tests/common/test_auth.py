import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydramesh.common.auth import ReplayGuard
from hydramesh.common.errors import Replayed, Stale
from hydramesh.common.wire import Header, MsgType

NOW = 1_700_000_000_000_000


def header(seq: int, ts: int = NOW) -> Header:
    return Header(MsgType.TASK, seq, ts, 0)


def test_each_sequence_is_accepted_once_even_out_of_order():
    guard = ReplayGuard()
    for seq in (5, 3, 4, 9, 6):
        guard.check("a", header(seq), NOW)
    for seq in (5, 3, 9):
        with pytest.raises(Replayed):
            guard.check("a", header(seq), NOW)


def test_senders_are_independent():
    guard = ReplayGuard()
    guard.check("a", header(1), NOW)
    guard.check("b", header(1), NOW)


def test_stale_and_future_timestamps():
    guard = ReplayGuard(window_us=30_000_000)
    with pytest.raises(Stale):
        guard.check("a", header(1, NOW - 31_000_000), NOW)
    with pytest.raises(Stale):
        guard.check("a", header(1, NOW + 31_000_000), NOW)
    guard.check("a", header(1, NOW - 29_000_000), NOW)


def test_sequence_wraps():
    guard = ReplayGuard()
    guard.check("a", header((1 << 32) - 1), NOW)
    guard.check("a", header(0), NOW)
    with pytest.raises(Replayed):
        guard.check("a", header((1 << 32) - 1), NOW)


def test_restarted_sender_is_accepted_but_old_run_replays_are_not():
    guard = ReplayGuard()
    for seq in range(5000, 5010):
        guard.check("a", header(seq, NOW), NOW)
    later = NOW + 5_000_000
    guard.check("a", header(0, later), later)  # restarted: counter from zero
    guard.check("a", header(1, later), later)
    with pytest.raises(Replayed):
        guard.check("a", header(5011, NOW), later)  # from the previous run


@given(st.lists(st.integers(0, 3000), max_size=200))
def test_no_sequence_accepted_twice(seqs):
    guard = ReplayGuard()
    accepted = []
    for seq in seqs:
        try:
            guard.check("a", header(seq), NOW)
        except Replayed:
            continue
        accepted.append(seq)
    assert len(accepted) == len(set(accepted))
