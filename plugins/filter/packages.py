# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the roles' package installs: ask dpkg first, run apt only for what is missing."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._deb_packages import dpkg_query_argv, missing_packages


class FilterModule:
    """rotor.vps package filters."""

    def filters(self):
        return {
            "dpkg_query_argv": dpkg_query_argv,
            "missing_packages": missing_packages,
        }
