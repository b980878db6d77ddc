# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role's schedule metric (its rules live in module_utils/_backup_plan.py)."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._backup_plan import schedule_text
from ansible_collections.rotor.vps.plugins.module_utils._calendar import longest_gap_seconds
from ansible_collections.rotor.vps.plugins.module_utils._validate import plain_input


def backup_schedule_textfile(calendar_output: object) -> str:
    """The textfile of the backup timer's schedule, from ``systemd-analyze calendar --iterations=N``'s output:
    the longest time between two runs, which BackupStale compares the last success with."""
    return schedule_text(longest_gap_seconds(str(calendar_output or "")))


class FilterModule:
    """rotor.vps backup filters."""

    def filters(self):
        return {"backup_schedule_textfile": plain_input(backup_schedule_textfile)}
