# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that expose the collection's input rules to roles."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    network_errors,
    tmpfs_mount_options,
    tmpfs_volume_errors,
)


class FilterModule:
    """rotor.vps validation and rendering filters."""

    def filters(self):
        return {
            "network_errors": network_errors,
            "tmpfs_volume_errors": tmpfs_volume_errors,
            "tmpfs_mount_options": tmpfs_mount_options,
        }
