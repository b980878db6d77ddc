# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HAProxy host map (``maps/hosts.map``): which backend serves which host name.

One file for every module that routes a host (rotated services, tenants): each manages the hosts
of its own backend and never takes over another backend's host silently. Changes go to the file
(under one lock, keeping the haproxy role's mode and owner) and then to the running HAProxy through
its runtime API, so a reload at any moment serves the same routes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState, read_text
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import parse_map, render_map
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import HostLock

MAP_FILE = "maps/hosts.map"


def route_changes(current: dict, backend: str, wanted: Optional[list]) -> tuple:
    """``(updates, removals)`` that make ``backend``'s hosts exactly ``wanted`` (None: none at all).

    ``updates`` maps each host to (re)point to ``backend``; ``removals`` are this backend's hosts
    that are no longer wanted. Other backends' hosts are never touched (see ``route_conflicts``).
    """
    hosts = set(wanted or [])
    updates = {host: backend for host in sorted(hosts) if current.get(host) != backend}
    removals = {host for host, target in current.items() if target == backend and host not in hosts}
    return updates, removals


def route_conflicts(routes: list, current: dict, backend: str) -> list:
    """Hosts that already route to another backend: taking them over silently would break that one."""
    return ["%s (routed to %s)" % (h, current[h]) for h in routes if h in current and current[h] != backend]


@dataclass(frozen=True)
class RouteMap:
    """A map file of the HAProxy whose configuration is in ``config_dir`` (``config_mount`` inside it):
    the host map unless ``file`` names another (the tenants' rate limits)."""

    config_dir: str
    config_mount: str
    lock_dir: str
    lock_timeout: float
    file: str = MAP_FILE

    @property
    def path(self) -> str:
        return os.path.join(self.config_dir, self.file)

    @property
    def ref(self) -> str:
        """The map as the running HAProxy names it (its path inside the container)."""
        return os.path.join(self.config_mount, self.file)

    def read(self) -> dict:
        """host -> backend, as the file says."""
        return dict(parse_map(read_text(self.path) or ""))

    def live(self, runtime) -> dict:
        """host -> backend, as the running HAProxy has it."""
        return runtime.map_entries(self.ref)

    def _lock(self) -> HostLock:
        name = os.path.basename(self.file).replace(".", "-")
        return HostLock(os.path.join(self.lock_dir, "haproxy-%s.lock" % name), self.lock_timeout, "HAProxy's %s" % self.file)

    def ensure(self) -> None:
        """Create the map file, empty, when it is missing (HAProxy refuses a configuration naming a missing map)."""
        if read_text(self.path) is None:
            with self._lock():
                state = FileState.read(self.path)
                if state.text is None:
                    state.write("")

    def write(self, updates: dict, removals: set) -> None:
        """Write the changes to the file only: for a map the running HAProxy loads at its next reload."""
        if not (updates or removals):
            return
        with self._lock():
            state = FileState.read(self.path)
            state.write(render_map(state.text or "", updates, removals))

    def apply(self, runtime, updates: dict, removals: set) -> None:
        """Write the changes to the file, then to the running HAProxy; nothing when there are none."""
        if not (updates or removals):
            return
        with self._lock():
            state = FileState.read(self.path)
            state.write(render_map(state.text or "", updates, removals))
            live = runtime.map_entries(self.ref)
            for host, backend in sorted(updates.items()):
                runtime.set_map(self.ref, host, backend, exists=host in live)
            for host in sorted(removals):
                if host in live:
                    runtime.del_map(self.ref, host)
