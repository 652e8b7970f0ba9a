"""The ingress's bounded, expiring id mapping."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from hydramesh.common.task import MAX_ID_LEN
from hydramesh.shim.idmap import INTERNAL_ID_LEN, IdMap

BOOT = "0123456789abcdef0123456789"
A = ("10.0.0.1", 5000)
B = ("10.0.0.2", 5000)


def make(**overrides) -> IdMap:
    values = dict(ttl=10.0, max_entries=100, max_per_source=100, boot=BOOT)
    values.update(overrides)
    return IdMap(**values)


def test_internal_ids_are_unique_valid_and_48_characters():
    ids = make()
    first, created = ids.open(A, "job", 0.0)
    assert created and first.internal == f"shim.{BOOT}.0000000000000001"
    assert len(first.internal) == INTERNAL_ID_LEN <= MAX_ID_LEN
    assert re.fullmatch(r"[A-Za-z0-9._:@/+=-]+", first.internal)
    again, created = ids.open(A, "job", 1.0)
    assert again is first and not created
    other, _ = ids.open(B, "job", 1.0)  # same id, another client
    assert other.internal != first.internal
    port, _ = ids.open(("10.0.0.1", 5001), "job", 1.0)  # same host, another port: another client
    assert port.internal not in (first.internal, other.internal)


def test_lookups_both_ways_and_activity_extends_life():
    ids = make()
    relay, _ = ids.open(A, "job", 0.0)
    assert ids.find(A, "job", 5.0) is relay
    assert ids.internal(relay.internal, 8.0) is relay
    assert ids.next_expiry() == 18.0
    assert ids.expire(17.999) == 0
    assert ids.expire(18.0) == 1
    assert ids.find(A, "job", 18.0) is None and ids.internal(relay.internal, 18.0) is None
    assert len(ids) == 0 and ids.sources == 0 and ids.evictions["expired"] == 1


def test_expiry_follows_last_activity_not_creation():
    ids = make()
    a, _ = ids.open(A, "a", 0.0)
    b, _ = ids.open(A, "b", 1.0)
    ids.find(A, "a", 5.0)
    assert ids.expire(11.0) == 1 and ids.internal(b.internal, 11.0) is None
    assert ids.internal(a.internal, 11.0) is a


def test_table_is_bounded_least_recently_active_first():
    ids = make(max_entries=2)
    a, _ = ids.open(A, "a", 0.0)
    b, _ = ids.open(B, "b", 1.0)
    ids.find(A, "a", 2.0)
    ids.open(B, "c", 3.0)
    assert ids.internal(b.internal, 3.0) is None and ids.internal(a.internal, 3.0) is a
    assert len(ids) == 2 and ids.evictions["table_full"] == 1


def test_one_source_can_only_push_out_its_own_mappings():
    ids = make(max_per_source=2)
    theirs, _ = ids.open(B, "x", 0.0)
    for i in range(10):
        ids.open(("10.0.0.1", 6000 + i), f"r{i}", float(i))  # one host, many ports
    assert ids.internal(theirs.internal, 10.0) is theirs
    assert len(ids) == 3 and ids.evictions["source_full"] == 8


def test_nothing_is_left_behind():
    ids = make(ttl=1.0)
    for i in range(50):
        ids.open((f"10.0.{i}.1", 1000 + i), f"id{i}", i * 0.01)
    ids.expire(100.0)
    assert len(ids) == 0 and ids.sources == 0
    assert not ids._by_client and not ids._per_source


@given(st.floats(0.001, 1e4), st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=5))
def test_waking_at_next_expiry_always_expires_a_mapping(ttl, times):
    ids = make(ttl=ttl)
    for i, t in enumerate(sorted(times)):
        ids.open(A, f"r{i}", t)
    assert ids.expire(ids.next_expiry()) >= 1
