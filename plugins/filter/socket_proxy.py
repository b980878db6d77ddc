# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker API broker's input rules and its endpoint ACLs, as filters; both live in module_utils."""

from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._socket_proxy import endpoint_rules, socket_proxy_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._validate import plain_input


class FilterModule:
    """rotor.vps Docker API broker filters."""

    def filters(self):
        filters = {
            "socket_proxy_input_errors": socket_proxy_input_errors,
            "socket_proxy_rules": endpoint_rules,
        }
        return {name: plain_input(function) for name, function in filters.items()}
