"""The waiter: returns as soon as the condition holds, gives up at the deadline, backs off to a cap."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._waiter import NullWaiter, Waiter, WaitTimeout


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def test_returns_the_first_value_that_satisfies():
    fake = FakeClock()
    values = iter([1, 2, 3])
    waiter = Waiter(initial=0.1, cap=0.4, clock=fake.clock, sleep=fake.sleep)
    assert waiter.until(lambda: next(values), lambda v: v == 3, what="x", timeout=10) == 3
    assert fake.sleeps == [0.1, 0.2]


def test_backoff_is_capped_and_deadline_bounds_the_wait():
    fake = FakeClock()
    waiter = Waiter(initial=0.1, cap=0.4, clock=fake.clock, sleep=fake.sleep)
    with pytest.raises(WaitTimeout) as info:
        waiter.until(lambda: "no", lambda v: v == "yes", what="thing", timeout=1.5)
    assert fake.sleeps == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert fake.now == pytest.approx(1.5)
    assert info.value.last == "no" and "thing: still not true after 1.5 s" in str(info.value)


def test_null_waiter_probes_once_and_never_sleeps():
    calls = []
    with pytest.raises(WaitTimeout, match="x: still not true after 0.0 s") as info:
        NullWaiter(sleep=calls.append).until(lambda: 0, bool, what="x", timeout=60)
    assert calls == [] and info.value.last == 0
