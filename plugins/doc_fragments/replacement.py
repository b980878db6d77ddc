# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of modules that replace containers behind an HAProxy backend (start, check, switch, drain, stop)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  check_interval:
    description: HAProxy health check interval of a serving server.
    type: str
    default: 2s
  check_fast_interval:
    description:
      - HAProxy health check interval while a server is down or changing state. A new server starts down, so
        this sets how soon HAProxy sees it UP after it became healthy.
    type: str
    default: 50ms
  check_rise:
    description: Successful checks before HAProxy marks a server UP.
    type: int
    default: 2
  check_fall:
    description: Failed checks before HAProxy marks a server DOWN.
    type: int
    default: 2
  up_timeout:
    description: Seconds HAProxy has to report a new server UP.
    type: int
    default: 30
  drain_timeout:
    description: Seconds to wait for an old server's sessions to end; sessions still open then are cut and counted.
    type: int
    default: 30
  stop_timeout:
    description: Seconds an old container has to stop after its stop signal before it is killed.
    type: int
    default: 10
  audit_log:
    description: JSON lines audit log, one line per change (the same log for every module).
    type: path
    default: /var/log/rotor/rotation.jsonl
  actor:
    description:
      - Who asked for the change, for the audit log. By default derived from the environment (the AWX job, the
        systemd unit, the user).
    type: str
"""
