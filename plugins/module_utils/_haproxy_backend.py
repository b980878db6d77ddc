# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backends a module creates at run time (a tenant's), and the one hitless reload each costs.

HAProxy 3.0 cannot create a backend through its runtime API, so a new backend (or a removed one)
costs a reload of the master: the new worker takes the listeners over from the old one, which
finishes its requests, so nothing is refused. Everything else about the backend (its servers,
its host names, its rate limit) then changes at run time, without a reload.

Before anything goes live, the new file is checked as a candidate (a name HAProxy does not load)
by the running HAProxy's own binary, together with the whole configuration; a configuration that
fails the check is never renamed into ``conf.d/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import BackendFile
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime, master_reload
from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter

# The named defaults section of haproxy.cfg (the haproxy role's main one) module-made backends inherit.
DEFAULTS = "rotor"

# Requests HAProxy may send again, to another server, when the first one failed: the idempotent
# methods (RFC 9110, 9.2.2). Any other request is only retried when its connection never opened.
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")
# What counts as failed: the connection, no or a broken answer (a server that died mid-request) and a
# gateway error. A 500 is the application's own answer, and a request that ran out of time may be one
# that is slow everywhere (retrying it would run it again): neither is retried.
RETRY_ON = ("conn-failure", "empty-response", "junk-response", "0rtt-rejected", "502", "503", "504")


def retry_lines(retries: int) -> list:
    """How every backend of the collection retries: ``retries`` attempts, each on another server
    (redispatch), for failed connections and, for idempotent requests only, failed answers."""
    return [
        "retries %d" % retries,
        "option redispatch 1",
        "retry-on %s" % " ".join(RETRY_ON),
        "http-request disable-l7-retry unless { method %s }" % " ".join(IDEMPOTENT_METHODS),
    ]


class BackendError(Exception):
    """A backend could not be created or removed; the message says what was rolled back."""


@dataclass(frozen=True)
class HaproxySite:
    """Where the running HAProxy keeps its configuration and sockets, and how to reach its binary."""

    config_dir: str  # on the host
    config_mount: str  # the same directory inside the container
    container: str
    master_socket: str
    reload_timeout: float = 30

    def backend_path(self, name: str) -> str:
        return os.path.join(self.config_dir, "conf.d", "%s.cfg" % name)

    def check_command(self, candidate: str, *, instead_of: str) -> list:
        """``haproxy -c`` over the configuration as the container loads it (``haproxy.cfg``, then
        ``conf.d/*.cfg`` in order), with ``conf.d/<candidate>`` in the place of ``conf.d/<instead_of>``."""
        conf_d = os.path.join(self.config_dir, "conf.d")
        names = sorted({n for n in os.listdir(conf_d) if n.endswith(".cfg") and not n.startswith(".")} | {instead_of})
        argv = ["haproxy", "-c", "-f", os.path.join(self.config_mount, "haproxy.cfg")]
        for name in names:
            argv += ["-f", os.path.join(self.config_mount, "conf.d", candidate if name == instead_of else name)]
        return argv


def backend_text(name: str, lines: list) -> str:
    """A module-made backend file with no servers yet: ``backend <name> from rotor`` and its settings."""
    return BackendFile(name, ("backend %s from %s" % (name, DEFAULTS),), (), tuple("    " + line for line in lines)).render()


class Backends:
    """Creates and removes module-made backends: file checked, renamed into place, one reload."""

    def __init__(self, site: HaproxySite, runtime: HaproxyRuntime, docker, waiter: Waiter | None = None):
        self.site = site
        self.runtime = runtime
        self.docker = docker
        self.waiter = waiter or Waiter(initial=0.05, cap=0.5)

    def live(self, name: str) -> bool:
        return name in self.runtime.backends()

    def create(self, name: str, text: str) -> None:
        """Write ``conf.d/<name>.cfg`` once the whole configuration with it passes ``haproxy -c``, then reload."""
        self._replace(name, text)

    def settings_differ(self, name: str, lines: list) -> bool:
        """Whether the backend file's settings (the lines that are not servers) are not ``lines``."""
        text = FileState.read(self.site.backend_path(name)).text or ""
        current = BackendFile.parse(text, self.site.backend_path(name))
        return list(current.tail) != ["    " + line for line in lines]

    def update(self, name: str, lines: list) -> None:
        """Give an existing backend new settings, keeping its servers: checked, then one reload."""
        path = self.site.backend_path(name)
        current = BackendFile.parse(FileState.read(path).text or "", path)
        self._replace(name, BackendFile(current.backend, current.head, current.servers,
                                        tuple("    " + line for line in lines)).render())

    def _replace(self, name: str, text: str) -> None:
        """The backend's file becomes ``text`` (checked first), HAProxy reloads; on failure the old file is back."""
        path = self.site.backend_path(name)
        state = FileState.read(path)
        self._install(name, state, text)
        try:
            self.reload(lambda: self.live(name), "backend %s in the running HAProxy" % name)
        except (BackendError, HaproxyError) as exc:
            state.restore()
            undone = "removed again" if state.text is None else "put back"
            raise BackendError("%s; conf.d/%s.cfg was %s" % (exc, name, undone)) from exc

    def _install(self, name: str, state: FileState, text: str) -> None:
        """Check the configuration with ``text`` as the backend's file, then rename it into place."""
        path = self.site.backend_path(name)
        candidate = os.path.join(os.path.dirname(path), ".%s.cfg.candidate" % name)
        FileState(candidate, None, state.mode, state.uid, state.gid).write(text)
        try:
            code, output = self.docker.run_in(self.site.container, self.site.check_command(
                os.path.basename(candidate), instead_of=os.path.basename(path)))
            if code != 0:
                raise BackendError("HAProxy refused the configuration with the new file of backend %s: %s; nothing "
                                   "was changed" % (name, " ".join(output.split())[:2000]))
            os.replace(candidate, path)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)

    def remove(self, name: str) -> None:
        """Delete ``conf.d/<name>.cfg`` and reload, so the backend is gone from the running HAProxy."""
        path = self.site.backend_path(name)
        state = FileState.read(path)
        if state.text is not None:
            os.unlink(path)
        try:
            self.reload(lambda: not self.live(name), "backend %s gone from the running HAProxy" % name)
        except (BackendError, HaproxyError) as exc:
            if state.text is not None:
                state.restore()
            raise BackendError("%s; conf.d/%s.cfg was put back" % (exc, name)) from exc

    def reload(self, done, what: str) -> None:
        """Reload through the master CLI and wait until ``done()`` (the new worker answers)."""
        try:
            master_reload(self.site.master_socket, done, what, timeout=self.site.reload_timeout, waiter=self.waiter)
        except HaproxyError as exc:
            raise BackendError(str(exc)) from exc
