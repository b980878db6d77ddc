"""Many cases against one lab VPS in as few Ansible runs as keep each case's assertions exact.

Each case is an inventory host of its own that is the same VPS (its address and connection), with the case's
variables as host variables, so one ansible-playbook run checks them all and reports each by
name (the JSON callback: every task's result per host, and the recap per host).

- ``run_cases``: a playbook whose first play checks the input with ``any_errors_fatal``, which stops
  every host when one fails. The cases run a copy without it (``_per_host``: nothing else differs), in
  which each host stops at its own failure, as the playbook does against one host alone, so one run
  gives every case its own result. A case that passes runs once more on its own, in a second round.
- ``run_module``: one module once per entry, all at the same time (a fork each), as the module
  would be run by concurrent jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import reach

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


@dataclass
class CaseResult:
    """What one case's host saw in the run it ended in."""

    failed: bool
    message: str  # its failing task's message (and argument errors), as the user reads them
    changed: int  # "changed" of its PLAY RECAP line
    plays: list[str] = field(default_factory=list)  # plays in which it ran at least one task
    output: str = ""  # the whole output of that run (to check that no secret shows anywhere)


def _inventory(vps, hosts: dict[str, dict], path: Path) -> Path:
    group = {"hosts": {name: dict(variables) for name, variables in hosts.items()}, "vars": reach.host_vars(vps.name)}
    path.write_text(yaml.safe_dump({"vps": group}))
    return path


def _ansible_json(cmd: list[str], timeout: int) -> tuple[dict, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("no JSON from ansible (rc %d): %s %s" % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return data, proc.stdout + proc.stderr


def _failure(result: dict) -> str | None:
    """The message of a failed task result, None when the task did not fail."""
    if not result.get("failed"):
        return None
    parts = [str(result.get("msg", ""))]
    parts += [str(error) for error in result.get("argument_errors", [])]
    parts += [str(item.get("msg", "")) for item in result.get("results", []) if item.get("failed")]
    return "\n".join(part for part in parts if part)


def _per_host(playbook: str | Path, tmp: Path) -> Path:
    """A copy of ``playbook`` with no play's ``any_errors_fatal``: each host stops at its own failure, as it would
    running alone, instead of every host at the first failure of any."""
    plays = yaml.safe_load(Path(playbook).read_text())
    for play in plays:
        play.pop("any_errors_fatal", None)
    path = tmp / ("per-host-%d-%s" % (time.monotonic_ns(), Path(playbook).name))
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


def run_cases(vps, playbook: str | Path, cases: dict[str, dict], tmp: Path, *args: str,
              timeout: int = 600) -> dict[str, CaseResult]:
    """Run ``playbook`` against ``vps`` once for every case (name -> the host's whole variables)."""
    results: dict[str, CaseResult] = {}
    pending = dict(cases)
    rounds = 0
    per_host = _per_host(playbook, tmp)
    while pending:
        rounds += 1
        inventory = _inventory(vps, pending, tmp / ("cases-%d.yml" % time.monotonic_ns()))
        cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(per_host), "-f", str(len(pending)), *args]
        data, output = _ansible_json(cmd, timeout)
        own: dict[str, CaseResult] = {}
        for host in pending:
            message, plays = None, []
            for play in data.get("plays", []):
                ran = [task["hosts"][host] for task in play.get("tasks", []) if host in task.get("hosts", {})]
                if ran:
                    plays.append(play["play"]["name"])
                for result in ran:
                    message = message or _failure(result)
            if message is not None:
                stats = data.get("stats", {}).get(host, {})
                own[host] = CaseResult(True, message, stats.get("changed", 0), plays, output)
        if not own:
            # Nobody failed on its own this round: the remaining cases passed (and each test says so).
            for host in pending:
                stats = data.get("stats", {}).get(host, {})
                results[host] = CaseResult(False, "", stats.get("changed", 0), [], output)
            break
        results.update(own)
        pending = {host: variables for host, variables in pending.items() if host not in own}
    print("%s: %d cases in %d run(s) of %s" % (vps.name, len(cases), rounds, Path(playbook).name))
    return results


def run_module(vps, module: str, runs: list[dict], tmp: Path, *, check: bool = False, diff: bool = False,
               timeout: int = 600) -> list[dict]:
    """``module`` once per entry of ``runs`` (its arguments), all at the same time: one result each, in order.

    Each result also has ``_raw``: the whole output of the run (to check that no secret shows).
    """
    hosts = {"run%02d" % index: {"module_args": args} for index, args in enumerate(runs)}
    inventory = _inventory(vps, hosts, tmp / ("runs-%d.yml" % time.monotonic_ns()))
    keys = sorted({key for args in runs for key in args})
    playbook = tmp / ("module-%d.yml" % time.monotonic_ns())
    playbook.write_text(yaml.safe_dump([{
        "name": module, "hosts": "vps", "gather_facts": False,
        "tasks": [{"name": "Run the module", module: {
            key: "{{ module_args.%s | default(omit) }}" % key for key in keys}}],
    }]))
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook), "-f", str(max(len(runs), 1))]
    cmd += ["--check"] if check else []
    cmd += ["--diff"] if diff else []
    data, raw = _ansible_json(cmd, timeout)
    results = data["plays"][0]["tasks"][0]["hosts"]
    return [dict(results[host], _raw=raw) for host in sorted(hosts)]
