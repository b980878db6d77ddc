"""How the tests' ansible-playbook reaches a lab VPS: over SSH, as root with the lab's own key, as it would a
real server. One connection per VPS stays open between tasks (ControlMaster, under the VPS's own name, so a
later VPS that gets the same address never meets it); the VPS's host keys are not pinned (lab only)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "tests" / "lab" / "lab"


@functools.cache
def ssh_key() -> str:
    """The lab's SSH key (made once by the lab), which every lab VPS's root accepts."""
    return subprocess.run([str(LAB), "ssh-key"], capture_output=True, text=True, check=True).stdout.strip()


def host_vars(name: str) -> dict:
    """The inventory variables that reach the lab VPS ``name`` (its address on the lab network)."""
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                              name], capture_output=True, text=True, check=True).stdout.split()
    assert address, "the lab VPS %s has no address" % name
    return {
        "ansible_host": address[0],
        "ansible_user": "root",
        "ansible_ssh_private_key_file": ssh_key(),
        # Ansible's default without -C: compressing the modules costs CPU and saves nothing on a local bridge.
        "ansible_ssh_args": "-o ControlMaster=auto -o ControlPersist=60s",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        "ansible_control_path": "%(directory)s/" + name,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
