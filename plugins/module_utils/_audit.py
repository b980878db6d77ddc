# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rotation leaves behind for people and Prometheus: an audit line and textfile metrics."""

from __future__ import annotations

import fcntl
import json
import os
import re
import time

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import atomic_write, read_text


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


_METRIC_RE = re.compile(r'^(rotor_rotation_\w+)\{service="([^"]*)"\}\s+(\S+)$')

_HELP = {
    "rotor_rotation_last_success_timestamp_seconds": ("gauge", "When a replacement of the service last succeeded."),
    "rotor_rotation_last_duration_seconds": ("gauge", "How long the last replacement of the service took."),
    "rotor_rotation_replacements_total": ("counter", "Replacements of the service that succeeded."),
    "rotor_rotation_failures_total": ("counter", "Replacements of the service that failed."),
    "rotor_rotation_sessions_cut_total": ("counter", "Sessions still open when a drain timed out."),
}


def update_metrics(directory: str, service: str, *, ok: bool, duration: float, sessions_cut: int = 0) -> None:
    """Update ``<directory>/rotation_<service>.prom`` for node_exporter's textfile collector."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, "rotation_%s.prom" % service)
    values = {name: 0.0 for name in _HELP}
    for line in (read_text(path) or "").splitlines():
        match = _METRIC_RE.match(line)
        if match and match.group(1) in values and match.group(2) == service:
            values[match.group(1)] = float(match.group(3))
    values["rotor_rotation_last_duration_seconds"] = round(duration, 3)
    if ok:
        values["rotor_rotation_last_success_timestamp_seconds"] = round(time.time(), 3)
        values["rotor_rotation_replacements_total"] += 1
    else:
        values["rotor_rotation_failures_total"] += 1
    values["rotor_rotation_sessions_cut_total"] += sessions_cut
    lines = []
    for name, (kind, text) in _HELP.items():
        lines += ["# HELP %s %s" % (name, text), "# TYPE %s %s" % (name, kind),
                  '%s{service="%s"} %s' % (name, service, repr(values[name]) if values[name] % 1 else int(values[name]))]
    atomic_write(path, "\n".join(lines) + "\n", mode=0o644)
