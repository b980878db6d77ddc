"""playbooks/site.yml in check mode on the converged platform: nothing left to change.

One check-mode run for every platform of the scenario (molecule's own inventory and variables),
then one result per host.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def check_run() -> subprocess.CompletedProcess:
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("runs under `molecule verify`, which names its inventory")
    playbook = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(playbook), "-i", inventory, str(ROOT / "playbooks" / "site.yml"), "--check"],
                          capture_output=True, text=True, timeout=900, check=False, cwd=ROOT)


def test_check_mode_on_the_converged_platform_reports_nothing(host, check_run):
    name = host.backend.get_hostname()
    output = check_run.stdout + check_run.stderr
    assert check_run.returncode == 0, output[-3000:]
    recap = re.search(r"^%s\s*:\s*(.*)$" % re.escape(name), output, re.M)
    assert recap, "no PLAY RECAP line for %s:\n%s" % (name, output[-3000:])
    counts = dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", recap.group(1)))
    assert counts["changed"] == 0 and counts["failed"] == 0, output[-3000:]
