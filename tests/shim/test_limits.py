"""The edge's token buckets and allow-list, with exact times."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydramesh.shim.limits import AllowList, RateLimiter, parse_networks


def test_burst_then_rate_with_exact_retry_after():
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 0.0).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.take("a", 0.0)
    assert not refused.allowed and refused.notify and refused.retry_after == pytest.approx(0.5)
    # Refused again before a token is back: not told twice within a second.
    again = limiter.take("a", 0.1)
    assert not again.allowed and not again.notify and again.retry_after == pytest.approx(0.4)
    assert limiter.take("a", 0.5).allowed  # 0.2 left + 0.4 s × 2/s = 1 token
    assert not limiter.take("a", 0.5).allowed
    told = limiter.take("a", 1.0)  # a second after the last notice, and still short
    assert told.allowed  # 0.5 s × 2/s = 1 token: allowed, nothing to tell
    refused = limiter.take("a", 1.0)
    assert not refused.allowed and refused.notify
    assert limiter.refused == 4


def test_sources_are_independent():
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.take("a", 0.0).allowed
    assert not limiter.take("a", 0.0).allowed
    assert limiter.take("b", 0.0).allowed


def test_tokens_never_exceed_the_burst():
    limiter = RateLimiter(rate=10.0, burst=2)
    limiter.take("a", 0.0)
    results = [limiter.take("a", 1000.0).allowed for _ in range(3)]
    assert results == [True, True, False]


def test_rate_zero_disables_and_holds_nothing():
    limiter = RateLimiter(rate=0.0, burst=1)
    assert all(limiter.take("a", 0.0).allowed for _ in range(1000))
    assert len(limiter) == 0


def test_refilled_buckets_are_forgotten_at_exactly_burst_over_rate():
    limiter = RateLimiter(rate=4.0, burst=8)
    limiter.take("a", 0.0)
    limiter.take("b", 1.0)
    assert limiter.next_prune() == 2.0  # a: idle for 8/4 s
    limiter.prune(1.999)
    assert len(limiter) == 2
    limiter.prune(2.0)
    assert len(limiter) == 1 and limiter.next_prune() == 3.0
    limiter.prune(3.0)
    assert len(limiter) == 0


def test_source_table_is_bounded_least_recent_first():
    limiter = RateLimiter(rate=1.0, burst=1, max_sources=2)
    assert limiter.take("a", 0.0).allowed
    assert limiter.take("b", 0.0).allowed
    assert not limiter.take("a", 0.0).allowed  # refused, and now the most recent
    assert limiter.take("c", 0.0).allowed  # b is forgotten
    assert len(limiter) == 2
    assert not limiter.take("a", 0.0).allowed  # a was kept: still empty
    assert limiter.take("b", 0.0).allowed  # back with a full bucket; c goes
    assert limiter.take("c", 0.0).allowed


def test_allow_list():
    allow = AllowList.parse(["10.0.0.0/8, 192.168.1.7", "2001:db8::/32"])
    assert allow.permits("10.1.2.3")
    assert allow.permits("192.168.1.7") and not allow.permits("192.168.1.8")
    assert allow.permits("2001:db8::1") and not allow.permits("2001:db9::1")
    assert allow.permits("::ffff:10.0.0.1")  # an IPv4 client seen by a dual-stack socket
    assert allow.permits("fe80::1%eth0") is False
    assert not allow.permits("not-an-address") and not allow.permits("")
    assert AllowList().permits("anything at all")


def test_bad_networks_are_named():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["127.0.0.1/32,10.0.0.0/33"])
    assert parse_networks(["", " , "]) == ()


@given(st.lists(st.text(max_size=40), max_size=4))
def test_parse_networks_accepts_or_raises_value_error(entries):
    try:
        networks = parse_networks(entries)
    except ValueError:
        return
    assert all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in networks)


@given(st.text(max_size=60) | st.ip_addresses().map(str))
def test_permits_never_raises(host):
    assert isinstance(AllowList.parse(["10.0.0.0/8", "::1/128"]).permits(host), bool)


@given(
    st.floats(0.01, 1000), st.integers(1, 1000), st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=5)
)
def test_waking_at_next_prune_always_forgets_a_bucket(rate, burst, times):
    # prune() and next_prune() must agree to the last bit, or a timer that
    # sleeps until next_prune() wakes to find nothing due, forever.
    limiter = RateLimiter(rate=rate, burst=burst)
    for i, t in enumerate(sorted(times)):
        limiter.take(f"s{i}", t)
    before = len(limiter)
    limiter.prune(limiter.next_prune())
    assert len(limiter) < before


def test_the_float_boundary_that_once_spun_the_timer():
    limiter = RateLimiter(rate=1.0, burst=2)
    limiter.take("a", 0.3)  # 0.3 + 2.0 == 2.3, but 2.3 - 0.3 < 2.0
    limiter.prune(limiter.next_prune())
    assert len(limiter) == 0
