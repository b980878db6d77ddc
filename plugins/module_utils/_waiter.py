# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded waiting: poll a condition until it holds or a deadline passes, never forever."""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class WaitTimeout(Exception):
    """The condition did not hold before the deadline; ``last`` is the last value seen."""

    def __init__(self, what: str, timeout: float, last: object = None):
        super().__init__("%s: still not true after %.1f s (last seen: %s)" % (what, timeout, last))
        self.what = what
        self.timeout = timeout
        self.last = last


class Waiter:
    """Polls with a capped exponential backoff, starting fast so short waits stay short.

    The defaults suit local probes (a unix socket, a container on a bridge): a poll costs well
    under a millisecond, and a coarse poll would add its whole interval to every rotation step.
    """

    def __init__(self, initial: float = 0.02, cap: float = 0.25, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.initial = initial
        self.cap = cap
        self.clock = clock
        self.sleep = sleep

    def until(self, probe: Callable[[], T], done: Callable[[T], bool], *, what: str, timeout: float) -> T:
        """Call ``probe`` until ``done(value)`` is true and return that value.

        Raises WaitTimeout (carrying the last value) once ``timeout`` seconds have passed.
        """
        deadline = self.clock() + timeout
        delay = self.initial
        while True:
            value = probe()
            if done(value):
                return value
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise WaitTimeout(what, timeout, value)
            self.sleep(min(delay, remaining))
            delay = min(delay * 2, self.cap)


class NullWaiter(Waiter):
    """Check mode: probes once and never sleeps, so a plan is computed without waiting."""

    def until(self, probe: Callable[[], T], done: Callable[[T], bool], *, what: str, timeout: float) -> T:
        value = probe()
        if not done(value):
            raise WaitTimeout(what, 0, value)
        return value


def elapsed(start: float, end: Optional[float] = None) -> float:
    """Seconds between two monotonic readings, rounded to milliseconds."""
    return round((time.monotonic() if end is None else end) - start, 3)
