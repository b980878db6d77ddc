# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the roles' directories: read them all with one stat, fix only what differs."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._host_paths import directories_to_fix, stat_argv


class FilterModule:
    """rotor.vps path filters."""

    def filters(self):
        return {
            "stat_argv": stat_argv,
            "directories_to_fix": directories_to_fix,
        }
