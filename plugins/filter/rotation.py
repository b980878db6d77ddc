# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the rotation role: check rotated services, derive HAProxy backends from them."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._audit import ROTATION_SCHEDULE_METRICS, textfile_text
from ansible_collections.rotor.vps.plugins.module_utils._calendar import longest_gap_seconds
from ansible_collections.rotor.vps.plugins.module_utils._validate import duration_seconds, plain_input
from ansible_collections.rotor.vps.plugins.module_utils._web_service import (
    DEFAULT_HEALTH_PATH,
    rotation_service_errors,
)


def rotation_backends(services: object) -> list[dict]:
    """Turn rotation services into the haproxy role's backends: ``[{name, health_path}]``.

    Services marked absent keep their backend, so the rotation role can still drain their servers.
    """
    backends = []
    for service in services or []:
        if not isinstance(service, dict) or not service.get("name"):
            continue
        backends.append(
            {
                "name": service.get("backend") or service["name"],
                "health_path": service.get("health_path") or DEFAULT_HEALTH_PATH,
            }
        )
    return backends


def rotation_timers(services: object, interval: str = "*-*-* 00/6:00:00", jitter: object = "10m") -> list[dict]:
    """The timer of each present service: ``[{name, unit, on_calendar, randomized_delay_sec}]``.

    ``interval`` and ``jitter`` are the defaults for services that set neither. The jitter becomes
    whole seconds, so systemd never reads a unit differently from the module (``m`` is minutes to both).
    """
    timers = []
    for service in services or []:
        if not isinstance(service, dict) or service.get("state", "present") != "present":
            continue
        delay = service.get("jitter", jitter)
        timers.append(
            {
                "name": service["name"],
                "unit": "rotor-rotate-%s" % service["name"],
                "on_calendar": str(service.get("interval") or interval).strip(),
                "randomized_delay_sec": 0 if str(delay).strip() == "0" else duration_seconds(delay),
            }
        )
    return timers


def rotation_schedule_textfile(calendar_results: object) -> str:
    """The textfile of the timers' schedules, from a registered loop of ``systemd-analyze calendar --iterations=N``
    over rotation_timers: each service's longest gap between two runs and its largest random delay."""
    samples = []
    for result in calendar_results or []:
        timer = result.get("item") or {}
        gap = longest_gap_seconds(result.get("stdout") or "")
        if gap is None or not timer.get("name"):
            continue
        values = {"rotor_rotation_interval_seconds": gap,
                  "rotor_rotation_jitter_seconds": timer.get("randomized_delay_sec", 0)}
        samples.append(({"service": timer["name"]}, values))
    return textfile_text(ROTATION_SCHEDULE_METRICS, samples)


RUNS = ("converge", "auto", "rotated", "present")


def rotation_plan(services: object, run: str = "converge", select: object = None) -> list[dict]:
    """What to ask the haproxy_rotate module for, per service: ``[{name, state, max_age, service}]``.

    ``converge`` (the role's main entry point) keeps every service as its ``state`` says and never
    ages containers out, so a second converge changes nothing. The scheduled runs of rotate.yml act on
    present services only (those named in ``select``, or all): ``auto`` replaces containers older than
    the service's ``max_age`` when it has one and every container otherwise; ``rotated`` replaces every
    container; ``present`` only makes sure the containers run.
    """
    if run not in RUNS:
        raise ValueError("run must be one of %s, got %r" % (", ".join(RUNS), run))
    selected = set(select or [])
    plan = []
    for service in services or []:
        state = service.get("state", "present")
        if run == "converge":
            plan.append({"name": service["name"], "state": state, "max_age": None, "service": service})
            continue
        if state != "present" or (selected and service["name"] not in selected):
            continue
        max_age = service.get("max_age") if run == "auto" else None
        if run == "auto":
            state = "present" if max_age else "rotated"
        else:
            state = run
        plan.append({"name": service["name"], "state": state, "max_age": max_age, "service": service})
    return plan


def _seconds(value: object) -> str:
    return "%.1f s" % value if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _replacement_line(rep: dict) -> str:
    action = rep.get("action", "replace")
    if rep.get("old") and rep.get("new"):
        what = "%s %s -> %s" % (action, rep["old"], rep["new"])
    else:
        what = "%s %s" % (action, rep.get("new") or rep.get("old") or "?")
    details = [rep.get("reason") or ""]
    if rep.get("duration") is not None:
        details.append("took " + _seconds(rep["duration"]))
    if rep.get("sessions_cut"):
        details.append("%d session(s) cut" % rep["sessions_cut"])
    if rep.get("result") not in (None, "ok"):
        details.append("result: %s" % rep["result"])
    return "%s (%s)" % (what, ", ".join(d for d in details if d))


def rotation_summary(results: object) -> list[str]:
    """One line per service of a registered haproxy_rotate loop: what was replaced, how long it took."""
    lines = []
    for result in results or []:
        item = result.get("item") or {}
        head = "%s (%s%s)" % (
            item.get("name", "?"),
            item.get("state", "?"),
            ", older than %s" % item["max_age"] if item.get("max_age") else "",
        )
        if result.get("skipped"):
            lines.append("%s: skipped" % head)
            continue
        if result.get("failed"):
            lines.append("%s: FAILED - %s" % (head, result.get("msg", "no message")))
            continue
        replacements = result.get("replacements") or []
        serving = ", ".join(result.get("servers") or []) or "none"
        if replacements:
            total = sum(r.get("duration") or 0 for r in replacements)
            lines.append(
                "%s: %d change(s) in %s - %s; serving %s"
                % (head, len(replacements), _seconds(total), "; ".join(_replacement_line(r) for r in replacements), serving)
            )
        elif result.get("changed") and result.get("actions"):
            lines.append("%s: %s; serving %s" % (head, "; ".join(result["actions"]), serving))
        else:
            lines.append("%s: nothing to replace; serving %s" % (head, serving))
    return lines


class FilterModule:
    """rotor.vps rotation filters."""

    def filters(self):
        filters = {
            "rotation_service_errors": rotation_service_errors,
            "rotation_backends": rotation_backends,
            "rotation_timers": rotation_timers,
            "rotation_plan": rotation_plan,
            "rotation_summary": rotation_summary,
            "rotation_schedule_textfile": rotation_schedule_textfile,
        }
        return {name: plain_input(function) for name, function in filters.items()}
