"""What a lab VPS running the haproxy role offers tests (the edge_vps and data_vps fixtures mix it in): HAProxy's
runtime API and master CLI, HTTP(S) to its published ports, and its state as text for a tier's fingerprint."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

FILES = Path(__file__).resolve().parent / "files"


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: str


class HaproxyHelpers:
    """What a VPS running the haproxy role offers tests: its runtime API and master CLI (as root, from
    the host side), HTTP(S) to the ports HAProxy publishes on the VPS's 127.0.0.1, its state as text."""

    CONTAINER = "rotor-haproxy"
    CONFIG_DIR = "/etc/rotor/haproxy"
    RUN_DIR = "/var/lib/rotor/haproxy/run"
    MAP_IN_CONTAINER = "/usr/local/etc/haproxy/maps/hosts.map"
    HAPROXY_TOOLS = {"haproxy_cli.py": FILES / "haproxy_cli.py",
                     "http_load.py": FILES / "http_load.py"}

    def haproxy_fingerprint(self) -> str:
        """HAProxy's files and its live backends, servers and routes."""
        return self.sh(
            "cd %s && sha256sum haproxy.cfg conf.d/* maps/* certs/* 2>&1; "
            "python3 /root/haproxy_cli.py --socket %s/admin.sock --wait 10 'show stat' | cut -d, -f1,2; "
            "python3 /root/haproxy_cli.py --socket %s/admin.sock --wait 10 'show map %s' | cut -d' ' -f2-; true"
            % (self.CONFIG_DIR, self.RUN_DIR, self.RUN_DIR, self.MAP_IN_CONTAINER)).stdout

    def _cli(self, socket: str, command: str) -> str:
        proc = self.sh("python3 /root/haproxy_cli.py --socket %s/%s --wait 10 %s"
                       % (self.RUN_DIR, socket, shlex.quote(command)))
        assert proc.returncode == 0, "%r on %s failed: %s%s" % (command, socket, proc.stdout, proc.stderr)
        return proc.stdout

    def runtime(self, command: str) -> str:
        """Answer of the runtime API (admin.sock, level admin) to one command."""
        return self._cli("admin.sock", command)

    def master(self, command: str) -> str:
        """Answer of the master CLI (master.sock) to one command, e.g. ``reload`` or ``show proc``."""
        return self._cli("master.sock", command)

    def worker_pid(self) -> int:
        return int(re.search(r"^Pid: (\d+)", self.runtime("show info"), re.M).group(1))

    def http(self, path: str = "/", *, host: str = "unknown.test", https: bool = False, port: int | None = None,
             options: str = "") -> HttpAnswer:
        """One request to HAProxy's published port on the VPS's 127.0.0.1 (certificates not checked)."""
        scheme = "https" if https else "http"
        port = port or (443 if https else 80)
        proc = self.sh("curl -sS -k -i --max-time 10 %s -H %s %s://127.0.0.1:%d%s"
                       % (options, shlex.quote("Host: " + host), scheme, port, path))
        assert proc.returncode == 0, proc.stderr
        head, blank, body = proc.stdout.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        fields = (line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {name.strip().lower(): value.strip() for name, value in fields}
        assert blank, "no end of headers in %r" % proc.stdout
        return HttpAnswer(int(lines[0].split()[1]), headers, body)
