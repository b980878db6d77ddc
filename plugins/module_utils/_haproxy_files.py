# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two HAProxy files the modules own: a backend's server list and the host map.

A backend file holds one ``backend <name> from <name>-settings`` line (written by the haproxy
role) and the ``server`` lines of the containers serving it; everything else in the file is kept
as it is. The map holds ``<host> <backend>`` lines. Both are what a reload or restart of HAProxy
reads, so they always describe the servers and routes that are live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVER_RE = re.compile(r"^\s*server\s+(\S+)\s+(\S+)(?:\s+(.*?))?\s*$")
BACKEND_RE = re.compile(r"^\s*backend\s+(\S+)")

HEADER = (
    "# Managed by rotor.vps (haproxy_rotate, postgrest_spawn): the server lines change at run time.\n"
    "# Settings come from the defaults section named after \"from\" in haproxy.cfg, and the lines below it.\n"
)


class ConfigFileError(Exception):
    """A file on disk is not what the module expects; it is left as it is."""


@dataclass(frozen=True)
class Server:
    name: str
    address: str  # ip:port
    options: str

    def line(self) -> str:
        return ("    server %s %s %s" % (self.name, self.address, self.options)).rstrip()


@dataclass(frozen=True)
class BackendFile:
    """A parsed backend file: the lines before and after the servers, and the servers."""

    backend: str
    head: tuple  # lines up to and including the backend line (comments dropped, re-added on render)
    servers: tuple  # Server
    tail: tuple  # other lines inside the section, kept as they are

    @classmethod
    def parse(cls, text: str, path: str) -> "BackendFile":
        backend = None
        head, servers, tail = [], [], []
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if backend is None:
                match = BACKEND_RE.match(line)
                if match:
                    backend = match.group(1)
                    head.append(stripped)
                elif stripped and not stripped.startswith("#"):
                    raise ConfigFileError("%s line %d: expected the 'backend' line first, found %r" % (path, number, stripped))
                continue
            match = SERVER_RE.match(line)
            if match:
                servers.append(Server(match.group(1), match.group(2), match.group(3) or ""))
            elif BACKEND_RE.match(line) or re.match(r"^\s*(frontend|listen|defaults|global)\b", line):
                raise ConfigFileError("%s line %d: a second section %r; this file holds one backend only" % (path, number, stripped))
            elif stripped and not stripped.startswith("#"):
                tail.append("    " + stripped)
        if backend is None:
            raise ConfigFileError("%s has no 'backend' line" % path)
        return cls(backend, tuple(head), tuple(servers), tuple(tail))

    def with_servers(self, servers: list) -> "BackendFile":
        return BackendFile(self.backend, self.head, tuple(servers), self.tail)

    def render(self) -> str:
        lines = [HEADER.rstrip("\n")] + list(self.head) + list(self.tail) + [s.line() for s in self.servers]
        return "\n".join(lines) + "\n"


def parse_map(text: str) -> list:
    """``(key, value)`` pairs of a map file, comments and blank lines skipped."""
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(None, 1)
        pairs.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return pairs


def render_map(text: str, updates: dict, removals: set) -> str:
    """The map text with ``updates`` (key -> value) applied and ``removals`` dropped.

    Comments, blank lines and the order of untouched entries are kept; new keys go at the end.
    """
    out, seen = [], set()
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        key = stripped.split(None, 1)[0]
        if key in removals:
            continue
        if key in updates:
            if key not in seen:
                out.append("%s %s" % (key, updates[key]))
            seen.add(key)
            continue
        out.append(line)
    for key, value in updates.items():
        if key not in seen:
            out.append("%s %s" % (key, value))
    return "\n".join(out) + ("\n" if out else "")
