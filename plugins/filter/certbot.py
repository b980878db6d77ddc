# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the certbot role: its sites (the rules live in module_utils/_certbot_sites.py)."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._certbot_sites import certbot_site_jobs, derived_sites
from ansible_collections.rotor.vps.plugins.module_utils._validate import plain_input


def _derived_sites(services, tenants, host):
    return derived_sites(list(services or []), list(tenants or []), str(host))


def _site_jobs(sites, defaults, only=None):
    return certbot_site_jobs(list(sites or []), dict(defaults or {}), list(only or []))


class FilterModule:
    """rotor.vps certificate filters."""

    def filters(self):
        return {"certbot_derived_sites": plain_input(_derived_sites), "certbot_site_jobs": plain_input(_site_jobs)}
