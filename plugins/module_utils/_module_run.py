# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The skeleton every module of the collection runs on: refuse bad input, plan, apply under a lock.

A module's ``main`` stays short: build its settings, then

    refuse_bad_input(module, input_errors(module.params))
    outcome = plan_and_apply(module, lock=thing.lock, plan=thing.plan, apply=thing.apply)
    result.update(...); add_diff(module, result, lambda: ...)

Check mode plans and changes nothing; otherwise the plan is made again under the lock (what another
run changed meanwhile counts) and applied. A diff is returned only in diff mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


class StepError(Exception):
    """A step of ``apply`` failed; ``step`` names it, the message says what was rolled back, and
    ``records`` holds what was done before it (for the module's result)."""

    def __init__(self, message: str, *, step: str = "", records: Optional[list] = None):
        super().__init__(message)
        self.step = step
        self.records = records or []


@dataclass
class Outcome:
    """What ``plan_and_apply`` did: the plan, what applying it returned (None in check mode), the lock wait."""

    plan: Any
    applied: Any = None
    lock_waited: Optional[float] = None


def refuse_bad_input(module, errors: list) -> None:
    """Fail, naming every broken input and its rule, before anything is touched."""
    if errors:
        module.fail_json(msg="Invalid input, nothing was changed: " + "; ".join(errors), errors=errors)


def plan_and_apply(module, *, lock: Callable[[], Any], plan: Callable[[], Any],
                   apply: Callable[[Any], Any]) -> Outcome:
    """Check mode: ``plan()`` only. Otherwise, holding ``lock()``: ``plan()``, then ``apply(plan)``."""
    if module.check_mode:
        return Outcome(plan())
    with lock() as held:
        planned = plan()
        return Outcome(planned, apply(planned), getattr(held, "waited", None))


def add_diff(module, result: dict, diff: Callable[[], Any]) -> None:
    """Put ``diff()`` into the result in diff mode only (secrets masked by the caller)."""
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = diff()
