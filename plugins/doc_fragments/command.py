# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of modules that send one command to a service's control socket."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  wait:
    description: Seconds to keep retrying the connection (a container that just started has no socket yet).
    type: float
    default: 0
  changes:
    description:
      - Whether the command changes the service (a reload does, C(show) commands do not). Such a command is
        reported as a change and is not sent in check mode.
    type: bool
    default: false
attributes:
  check_mode:
    support: partial
    description: Can run in check mode and return changed status prediction without modifying target.
    details: A command that changes the service (O(changes=true)) is not sent, and is reported as a change;
      other commands are sent as usual.
  diff_mode:
    support: none
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
"""
