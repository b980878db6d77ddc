"""Fixtures for integration tests against real lab services.

Each test module that needs a server gets a disposable lab VPS (tests/lab/lab vps-run), reached by
ansible-playbook through the community.docker.docker connection, exactly as a real server would be.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "tests" / "lab" / "lab"
# The ansible-playbook of the environment running the tests, whatever PATH says.
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self, host: str) -> dict[str, int]:
        match = re.search(re.escape(host) + r"\s*:\s*(.*)", self.output)
        assert match, "no PLAY RECAP line for %s in:\n%s" % (host, self.output[-3000:])
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


class LabVps:
    """A fresh lab VPS container and helpers to run playbooks and commands against it."""

    def __init__(self, name: str, suite: str, tmp: Path):
        self.name = name
        self.suite = suite
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(
            "vps:\n  hosts:\n    %s:\n      ansible_connection: community.docker.docker\n"
            "      ansible_python_interpreter: /usr/bin/python3\n" % name
        )

    def sh(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", self.name, "sh", "-c", command], capture_output=True, text=True, timeout=120, check=False
        )

    def playbook(self, playbook: str, *args: str, extra_vars: Path | None = None, timeout: int = 900) -> PlaybookRun:
        cmd = [ANSIBLE_PLAYBOOK, "-i", str(self.inventory), str(ROOT / "playbooks" / playbook), *args]
        if extra_vars:
            cmd += ["-e", "@%s" % extra_vars]
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
        return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)

    def snapshot(self) -> str:
        """What a run could have changed: installed packages, /etc/docker, Docker's objects."""
        return self.sh(
            "dpkg-query -W -f '${Package} ${Version}\\n' | sha256sum; "
            "ls -la --time-style=+%s /etc/docker 2>&1; cat /etc/docker/daemon.json 2>&1; "
            "command -v docker >/dev/null && docker network ls -q --no-trunc && docker volume ls -q; true"
        ).stdout


@pytest.fixture(scope="module")
def fresh_vps(tmp_path_factory) -> LabVps:
    """A lab VPS as a cloud provider hands it over: systemd, python3, no Docker."""
    if not _docker_answers():
        pytest.fail("no Docker engine answers; run the tests through `make test`, which starts the lab")
    name = "rotor-test-%s" % uuid.uuid4().hex[:8]
    subprocess.run([str(LAB), "vps-run", name, "trixie"], check=True)
    try:
        yield LabVps(name, "trixie", tmp_path_factory.mktemp(name))
    finally:
        subprocess.run([str(LAB), "vps-rm", name], check=False)
