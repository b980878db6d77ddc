# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the roles' containers may ask of the engine they run on; the rules live in module_utils."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import with_start_interval


class FilterModule:
    """rotor.vps Docker engine filters."""

    def filters(self):
        return {"with_start_interval": with_start_interval}
