# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that expose the collection's input rules to roles; the rules live in module_utils."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._haproxy_backend import retry_lines
from ansible_collections.rotor.vps.plugins.module_utils._role_input import haproxy_input_errors, role_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    network_errors,
    plain_input,
    tmpfs_mount_options,
    tmpfs_volume_errors,
    without_secrets,
)


class FilterModule:
    """rotor.vps validation and rendering filters."""

    def filters(self):
        filters = {
            "haproxy_input_errors": haproxy_input_errors,
            "haproxy_retry_lines": retry_lines,
            "network_errors": network_errors,
            "role_input_errors": role_input_errors,
            "tmpfs_volume_errors": tmpfs_volume_errors,
            "tmpfs_mount_options": tmpfs_mount_options,
            "without_secrets": without_secrets,
        }
        return {name: plain_input(function) for name, function in filters.items()}
