# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a change leaves behind for people and Prometheus: audit lines and textfile metrics.

The writers are general (any file, any metric families, any labels); the rotation's metric families
are defined here too, next to their one writer, and later kinds of change add theirs the same way.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import atomic_write, read_text


def default_actor() -> str:
    """Who runs this, for the audit log: the AWX job, the systemd unit, or the user."""
    if os.environ.get("AWX_JOB_ID") or os.environ.get("JOB_ID"):
        return "awx job %s" % (os.environ.get("AWX_JOB_ID") or os.environ.get("JOB_ID"))
    if os.environ.get("INVOCATION_ID"):
        return "systemd"
    return "user %s" % (os.environ.get("SUDO_USER") or os.environ.get("USER") or os.getuid())


def append_audit(path: str, record: dict) -> None:
    """Append one JSON line (with the time) to the audit log; whole lines even with concurrent writers."""
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    line = json.dumps(dict({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, **record), sort_keys=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


# One sample line of a textfile: name{labels} value.
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def _labels(labels: dict) -> str:
    escaped = ('%s="%s"' % (key, str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
               for key, value in sorted(labels.items()))
    return "{%s}" % ",".join(escaped)


def _number(value: float) -> str:
    return repr(value) if value % 1 else str(int(value))


def read_textfile(path: str, labels: dict) -> dict:
    """The values of a textfile's samples that carry exactly ``labels``: name -> value."""
    wanted = _labels(labels)
    values = {}
    for line in (read_text(path) or "").splitlines():
        match = _SAMPLE_RE.match(line)
        if match and (match.group(2) or "{}") == wanted:
            try:
                values[match.group(1)] = float(match.group(3))
            except ValueError:
                continue
    return values


def write_textfile(path: str, families: dict, labels: dict, values: dict) -> None:
    """Write one sample per family (``name -> (type, help)``) for node_exporter's textfile collector; a
    family without a value is written as 0."""
    write_textfile_samples(path, families, [(labels, {name: values.get(name, 0.0) for name in families})])


def write_textfile_samples(path: str, families: dict, samples: list) -> None:
    """Write each family (``name -> (type, help)``) with a sample per ``(labels, values)`` that has a value for it.

    Atomic, so the collector never reads half a file; readable by the exporter (0644).
    """
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    atomic_write(path, textfile_text(families, samples), mode=0o644)


def textfile_text(families: dict, samples: list) -> str:
    """The text of a textfile: each family (``name -> (type, help)``) with a sample per ``(labels, values)``
    that has a value for it."""
    lines = []
    for name, (kind, text) in families.items():
        lines += ["# HELP %s %s" % (name, text), "# TYPE %s %s" % (name, kind)]
        for labels, values in samples:
            if name in values:
                lines.append("%s%s %s" % (name, _labels(labels), _number(values[name])))
    return "\n".join(lines) + "\n"


ROTATION_METRICS = {
    "rotor_rotation_last_success_timestamp_seconds": ("gauge", "When a replacement of the service last succeeded."),
    "rotor_rotation_last_duration_seconds": ("gauge", "How long the last replacement of the service took."),
    "rotor_rotation_replacements_total": ("counter", "Replacements of the service that succeeded."),
    "rotor_rotation_failures_total": ("counter", "Replacements of the service that failed."),
    "rotor_rotation_sessions_cut_total": ("counter", "Sessions still open when a drain timed out."),
}


ROTATION_SCHEDULE_METRICS = {
    "rotor_rotation_interval_seconds": ("gauge", "Longest time between two runs of the service's rotation timer."),
    "rotor_rotation_jitter_seconds": ("gauge", "Largest random delay of the service's rotation timer."),
}


def update_metrics(directory: str, service: str, *, ok: bool, duration: float, sessions_cut: int = 0) -> None:
    """Update ``<directory>/rotation_<service>.prom`` after one replacement of ``service``."""
    path = os.path.join(directory, "rotation_%s.prom" % service)
    labels = {"service": service}
    values = dict.fromkeys(ROTATION_METRICS, 0.0)
    values.update({k: v for k, v in read_textfile(path, labels).items() if k in ROTATION_METRICS})
    values["rotor_rotation_last_duration_seconds"] = round(duration, 3)
    if ok:
        values["rotor_rotation_last_success_timestamp_seconds"] = round(time.time(), 3)
        values["rotor_rotation_replacements_total"] += 1
    else:
        values["rotor_rotation_failures_total"] += 1
    values["rotor_rotation_sessions_cut_total"] += sessions_cut
    write_textfile(path, ROTATION_METRICS, labels, values)
