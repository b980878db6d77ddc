# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenants role's plan: which tenants a converge touches (the rules live in module_utils/_tenants.py)."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._tenants import serving_tenants, tenant_jobs
from ansible_collections.rotor.vps.plugins.module_utils._validate import plain_input


def _tenant_jobs(tenants, defaults, host, applied, running, full=False, stat=""):
    return tenant_jobs(list(tenants or []), dict(defaults or {}), host, dict(applied or {}), list(running or []),
                       full=bool(full), serving=serving_tenants(stat) if stat else None)


class FilterModule:
    """rotor.vps tenant filters."""

    def filters(self):
        return {"tenant_jobs": plain_input(_tenant_jobs)}
