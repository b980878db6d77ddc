"""playbooks/site.yml in check mode on the converged platform: nothing left to change.

One check-mode run of the scenario's converge playbook (site.yml with the scenario's variables) for
every platform, with molecule's own inventory, then one result per host.
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
    converge = ROOT / "extensions" / "molecule" / "default" / "converge.yml"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    return subprocess.run([str(playbook), "-i", inventory, str(converge), "--check"],
                          capture_output=True, text=True, timeout=900, check=False, cwd=ROOT, env=env)


def test_check_mode_on_the_converged_platform_reports_nothing(host, check_run):
    name = host.backend.get_hostname()
    output = check_run.stdout + check_run.stderr
    assert check_run.returncode == 0, output[-3000:]
    recap = re.search(r"^%s\s*:\s*(.*)$" % re.escape(name), output, re.M)
    assert recap, "no PLAY RECAP line for %s:\n%s" % (name, output[-3000:])
    counts = dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", recap.group(1)))
    # The tasks that would change (or failed) on this host, each with its TASK line, say more than the tail.
    tasks = re.findall(r"^TASK \[(.*?)\] \**\n(?:(?!TASK \[).*\n)*?(?:changed|failed|fatal): \[%s\]" % re.escape(name),
                       output, re.M)
    assert counts["changed"] == 0 and counts["failed"] == 0, "would change or failed: %s\n%s" % (tasks, output[-1500:])
