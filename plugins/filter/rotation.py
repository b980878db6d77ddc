# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the rotation role: check rotated services, derive HAProxy backends from them."""

from __future__ import annotations

import re

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    docker_name_errors,
    duplicate_errors,
    duration_seconds,
    hostname_errors,
    service_name_errors,
    tmpfs_mount_errors,
)

# HAProxy section names: letters, digits, '-', '_', '.', ':'.
BACKEND_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
# What an OnCalendar expression is made of; systemd-analyze calendar has the final word on the VPS.
CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:/,.~+ -]+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY_RE = re.compile(r"^[1-9][0-9]*[bkmg]?$", re.IGNORECASE)
STATES = ("present", "absent")
DEFAULT_HEALTH_PATH = "/healthz"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tmpfs_errors(mounts: object, where: str) -> list[str]:
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        return ["%s: must be a list of mounts, each a mapping with path and size" % where]
    errors = tmpfs_mount_errors(mounts, where)
    for index, mount in enumerate(mounts):
        for key in ("uid", "gid"):
            value = mount.get(key)
            if value is not None and (not _is_int(value) or value < 0):
                errors.append("%s[%d].%s: %r must be a whole number, 0 or more" % (where, index, key, value))
    return errors


def _limit_errors(service: dict, item: str) -> list[str]:
    errors = []
    memory = service.get("memory")
    if memory is not None and not MEMORY_RE.match(str(memory)):
        errors.append("%s.memory: %r must be a positive whole number with an optional b, k, m or g suffix (e.g. 128m)"
                      % (item, memory))
    cpus = service.get("cpus")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0):
        errors.append("%s.cpus: %r must be a number greater than 0 (e.g. 0.5)" % (item, cpus))
    pids = service.get("pids_limit")
    if pids is not None and (not _is_int(pids) or pids < 1):
        errors.append("%s.pids_limit: %r must be a whole number, at least 1" % (item, pids))
    env = service.get("env")
    if env is not None:
        if not isinstance(env, dict):
            errors.append("%s.env: must be a mapping of variable names to values" % item)
        else:
            errors += [
                "%s.env: %r is not a valid environment variable name (letters, digits, '_'; not starting with a digit)"
                % (item, key)
                for key in env
                if not isinstance(key, str) or not ENV_NAME_RE.match(key)
            ]
    for index, network in enumerate(service.get("networks") or []):
        errors += docker_name_errors(network, "%s.networks[%d]" % (item, index))
    return errors


def _schedule_errors(service: dict, item: str) -> list[str]:
    errors = []
    interval = service.get("interval")
    if interval is not None and (not isinstance(interval, str) or not CALENDAR_RE.match(interval.strip())):
        errors.append(
            "%s.interval: %r must be a systemd OnCalendar expression such as 'hourly', '*-*-* 00/6:00:00' or '*:0/15'"
            % (item, interval)
        )
    for key in ("jitter", "max_age"):
        value = service.get(key)
        if value is None or (key == "jitter" and str(value).strip() == "0"):
            continue
        try:
            duration_seconds(value)
        except ValueError as exc:
            errors.append("%s.%s: %s" % (item, key, exc))
    return errors


def _service_errors(service: dict, item: str) -> list[str]:
    errors = service_name_errors(service.get("name"), item + ".name")
    state = service.get("state", "present")
    if state not in STATES:
        errors.append("%s.state: %r must be one of %s" % (item, state, ", ".join(STATES)))
    image = service.get("image")
    if state == "present" and (not isinstance(image, str) or not image.strip()):
        errors.append("%s.image: required unless state is absent" % item)
    replicas = service.get("replicas", 2)
    if not _is_int(replicas) or replicas < 1:
        errors.append("%s.replicas: %r must be a whole number, at least 1" % (item, replicas))
    port = service.get("port", 8080)
    if not _is_int(port) or not 1 <= port <= 65535:
        errors.append("%s.port: %r must be a port number from 1 to 65535" % (item, port))
    health_path = service.get("health_path", DEFAULT_HEALTH_PATH)
    if not isinstance(health_path, str) or not health_path.startswith("/") or any(c.isspace() for c in health_path):
        errors.append("%s.health_path: %r must be a URL path starting with '/' and without spaces" % (item, health_path))
    backend = service.get("backend")
    if backend is not None and (not isinstance(backend, str) or not BACKEND_RE.match(backend)):
        errors.append(
            "%s.backend: %r must start with a letter or digit and contain only letters, digits, '_', '.', ':' and '-'"
            % (item, backend)
        )
    hosts = service.get("hosts") or []
    if not isinstance(hosts, list):
        errors.append("%s.hosts: must be a list of host names" % item)
        hosts = []
    for index, host in enumerate(hosts):
        errors += hostname_errors(host, "%s.hosts[%d]" % (item, index))
    errors += _tmpfs_errors(service.get("tmpfs") or [], item + ".tmpfs")
    errors += _schedule_errors(service, item)
    errors += _limit_errors(service, item)
    return errors


def _claims(services: list[dict], key, what: str, where: str) -> list[str]:
    """Report values (backends, host names) that more than one service claims."""
    seen: dict[str, int] = {}
    errors = []
    for index, service in enumerate(services):
        for value in key(service):
            if not isinstance(value, str):
                continue
            if value in seen and seen[value] != index:
                errors.append(
                    "%s[%d]: %s %r is already used by %s[%d]; each %s belongs to one service"
                    % (where, index, what, value, where, seen[value], what)
                )
            else:
                seen.setdefault(value, index)
    return errors


def rotation_service_errors(services: object, where: str = "rotation_services") -> list[str]:
    """Check the services the rotation role manages; one message per problem, naming the input and the rule."""
    if not isinstance(services, list):
        return ["%s: must be a list of services" % where]
    errors = []
    valid = []
    for index, service in enumerate(services):
        item = "%s[%d]" % (where, index)
        if not isinstance(service, dict):
            errors.append("%s: must be a mapping with at least name and image" % item)
            continue
        errors += _service_errors(service, item)
        valid.append(service)
    errors += duplicate_errors(valid, "name", where)
    errors += _claims(valid, lambda s: [s.get("backend") or s.get("name")], "backend", where)
    errors += _claims(valid, lambda s: s.get("hosts") or [], "host name", where)
    return errors


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
        return {
            "rotation_service_errors": rotation_service_errors,
            "rotation_backends": rotation_backends,
            "rotation_timers": rotation_timers,
            "rotation_plan": rotation_plan,
            "rotation_summary": rotation_summary,
        }
