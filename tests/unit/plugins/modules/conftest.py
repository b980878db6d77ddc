"""Run a module of the collection as Ansible does: a process reading its arguments as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTIONS = str(Path(__file__).resolve().parents[4] / ".cache" / "collections")


@pytest.fixture
def run_module():
    def run(name: str, args: dict, *, check: bool = False) -> dict:
        payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check, _ansible_diff=True)}
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.rotor.vps.plugins.modules.%s" % name],
                              input=json.dumps(payload), capture_output=True, text=True, timeout=60, check=False,
                              env=dict(os.environ, PYTHONPATH=COLLECTIONS))
        return json.loads(proc.stdout)

    return run
