# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy's runtime API (the stats socket at admin level), one command per connection."""

from __future__ import annotations

import csv
import io
import os
import socket
import stat
from dataclasses import dataclass
from typing import Callable, Optional

from ansible_collections.rotor.vps.plugins.module_utils._waiter import Waiter, WaitTimeout


class HaproxyError(Exception):
    """HAProxy refused a command or could not be reached."""


@dataclass(frozen=True)
class ServerStat:
    """What ``show stat`` says about one server of a backend."""

    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2", "no check", ...
    sessions: int  # current sessions (scur)
    address: str  # ip:port

    @property
    def up(self) -> bool:
        return self.status == "UP"


# Replies that mean "done" for commands whose success message is empty or varies.
_ERROR_MARKERS = ("Unknown command", "No such", "not found", "Require", "Permission denied", "can't", "Can't",
                  "cannot", "Cannot", "invalid", "Invalid", "error", "Error", "failed", "Failed",
                  "Already exists", "still has", "Missing", "must", "Only", "unsupported")


def stat_servers(text: str) -> dict[str, dict[str, ServerStat]]:
    """The servers of every backend (backend -> server name -> ServerStat) in an answer to ``show stat``."""
    if not text.startswith("# "):
        raise HaproxyError("unexpected reply to 'show stat': %s" % text[:200])
    found: dict = {}
    for row in csv.DictReader(io.StringIO(text[2:])):
        if row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        found.setdefault(row.get("pxname", ""), {})[row["svname"]] = ServerStat(
            name=row["svname"], status=row.get("status", ""), sessions=int(row.get("scur") or 0),
            address=row.get("addr", ""))
    return found


class HaproxyRuntime:
    """A client for one HAProxy runtime socket (``level admin``)."""

    def __init__(self, socket_path: str, timeout: float = 10.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def check_socket(self) -> None:
        """Fail with the reason when the socket is missing or not a socket."""
        try:
            mode = os.stat(self.socket_path).st_mode
        except FileNotFoundError:
            raise HaproxyError(
                "HAProxy's runtime socket %s does not exist: is HAProxy running (haproxy role), and does "
                "haproxy_socket point at its admin socket?" % self.socket_path
            ) from None
        if not stat.S_ISSOCK(mode):
            raise HaproxyError("%s is not a unix socket; haproxy_socket must be HAProxy's admin socket" % self.socket_path)

    def execute(self, command: str, *, payload: Optional[str] = None) -> str:
        """Send one command and return HAProxy's whole reply.

        ``payload`` (for a command ending in `` <<``): lines without an empty one, which ends it.
        """
        if "\n" in command or ";" in command:
            raise HaproxyError("refusing to send a command containing a newline or ';': %r" % command.split(" <<")[0])
        data = command.encode() + b"\n"
        if payload is not None:
            if not command.endswith(" <<") or not payload.endswith("\n") or "\n\n" in payload or payload.startswith("\n"):
                raise HaproxyError("a payload follows a command ending in ' <<' and has no empty line: %r"
                                   % command.split(" <<")[0])
            data += payload.encode() + b"\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
            sock.sendall(data)
            # Non-interactive: HAProxy (runtime API or master CLI) answers and closes once we are done writing.
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise HaproxyError("HAProxy's runtime socket %s did not answer %r: %s"
                               % (self.socket_path, command.split(" <<")[0], exc)) from exc
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def answer(self, command: str, *, wait: float = 0, waiter: Optional[Waiter] = None) -> str:
        """``execute``, retrying the connection for ``wait`` seconds (a container that just started
        has no socket yet, or a stale one)."""
        if wait <= 0:
            return self.execute(command)
        failures: list = []

        def attempt() -> Optional[str]:
            try:
                return self.execute(command)
            except HaproxyError as exc:
                failures.append(exc)
                return None

        try:
            return (waiter or Waiter(initial=0.1, cap=1.0)).until(attempt, lambda reply: reply is not None,
                                                                  what="HAProxy at %s" % self.socket_path,
                                                                  timeout=wait)
        except WaitTimeout:
            raise failures[-1] from None

    def command(self, command: str, *, ok: tuple = ()) -> str:
        """Run a command that changes state; raise HaproxyError with HAProxy's words when it refuses.

        Replies containing one of ``ok`` count as success (e.g. "Already exists" for an idempotent add).
        """
        reply = self.execute(command).strip()
        if any(marker in reply for marker in ok):
            return reply
        if any(marker in reply for marker in _ERROR_MARKERS) and "New server registered" not in reply:
            raise HaproxyError("HAProxy refused %r: %s" % (command, reply.replace("\n", " ")))
        return reply

    # Backends and servers -------------------------------------------------------------------

    def backends(self) -> list[str]:
        """Names of the backends of the running HAProxy."""
        lines = self.execute("show backend").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def servers(self, backend: str) -> dict[str, ServerStat]:
        """The servers of one backend, by name, as ``show stat`` reports them right now."""
        return stat_servers(self.execute("show stat")).get(backend, {})

    def add_server(self, backend: str, name: str, address: str, options: str) -> None:
        """Add a dynamic server (it starts in maintenance) with health checks on, then enable it."""
        self.command("add server %s/%s %s %s" % (backend, name, address, options), ok=("Already exists",))
        self.command("enable health %s/%s" % (backend, name))
        self.command("enable server %s/%s" % (backend, name))

    def set_health_up(self, backend: str, name: str) -> None:
        """Mark a server UP now; its health checks go on and take it down after ``fall`` failures."""
        self.command("set server %s/%s health up" % (backend, name))

    def set_state(self, backend: str, name: str, state: str) -> None:
        """Set a server's admin state: ready, drain or maint."""
        self.command("set server %s/%s state %s" % (backend, name, state))

    def shutdown_sessions(self, backend: str, name: str) -> None:
        self.command("shutdown sessions server %s/%s" % (backend, name))

    def del_server(self, backend: str, name: str) -> str:
        """Delete a dynamic server; HAProxy refuses while it still has connections."""
        return self.command("del server %s/%s" % (backend, name))

    # Maps -----------------------------------------------------------------------------------

    def map_entries(self, map_ref: str) -> dict[str, str]:
        """The entries of a loaded map file, key -> value."""
        reply = self.execute("show map %s" % map_ref)
        if reply.startswith("Unknown map") or "Unknown" in reply.splitlines()[0:1] or "not found" in reply:
            raise HaproxyError("HAProxy has no map %s loaded: %s" % (map_ref, reply.strip()))
        entries = {}
        for line in reply.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].startswith("0x"):
                entries[parts[1]] = parts[2]
        return entries

    def set_map(self, map_ref: str, key: str, value: str, *, exists: bool) -> None:
        verb = "set" if exists else "add"
        self.command("%s map %s %s %s" % (verb, map_ref, key, value))

    def del_map(self, map_ref: str, key: str) -> None:
        self.command("del map %s %s" % (map_ref, key))


def master_reload(master_socket: str, done: Callable[[], bool], what: str, *, timeout: float = 30,
                  waiter: Optional[Waiter] = None) -> None:
    """One hitless reload through the master CLI, then wait until ``done()`` (the new worker serves
    what the reload was for); the old worker keeps serving when the reload fails."""
    master = HaproxyRuntime(master_socket, timeout=timeout)
    answer = master.answer("reload", wait=timeout)
    if "Success=1" not in answer:
        raise HaproxyError("HAProxy's reload failed (the old worker keeps serving): %s" % " ".join(answer.split())[:2000])

    def quietly() -> bool:
        try:
            return done()
        except HaproxyError:
            return False  # the new worker's socket is not there yet

    (waiter or Waiter(initial=0.1, cap=1.0)).until(quietly, bool, what=what, timeout=timeout)
