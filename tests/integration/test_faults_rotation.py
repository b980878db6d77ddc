"""Faults injected into haproxy_rotate runs under load, on the shared edge VPS.

Each fault hits one ``state=rotated`` run of the web service (two replicas) while a bounded load goes
through HAProxy, at its moment, timed from inside the VPS by files/rotation_fault.py watching HAProxy's
runtime socket, the backend file and Docker's events. After each:

- what served throughout: the load's failed requests (0 for crashes of new containers, which HAProxy
  retries on another server; for HAProxy itself killed and for Docker's daemon restarted, the failures
  must fall in one window of at most OUTAGE_BOUND seconds, none once the service answers again);
- the run's result: success (with the end-of-run check replacing what died), or a clear error naming
  the step;
- the next run converges (changed or not), the one after changes nothing, and nothing is orphaned: the
  service's containers, HAProxy's servers and the backend file's servers are the same two names, every
  container running and every server UP.

ROTOR_FAULT_ROUNDS (1 by default; ``make test-faults`` sets 5) repeats each fault. The failed requests per
fault and round are printed (``pytest -s``) and written to .cache/faults/rotation.json.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_haproxy_rotate import BACKEND_FILE, HOST, Rotor, running

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
import loadgen  # noqa: E402

# Docker's daemon is restarted and HAProxy killed on the shared VPS: whatever a reset could not see
# stays with this module, which runs after the edge tier's others.
RUN_LAST_IN_TIER = 1
ROUNDS = int(os.environ.get("ROTOR_FAULT_ROUNDS", "1"))
SCRIPT = ROOT / "tests" / "integration" / "files" / "rotation_fault.py"
SUMMARY = ROOT / ".cache" / "faults" / "rotation.json"
# Seconds the service may fail to answer when HAProxy itself dies (Docker restarts it from its files).
OUTAGE_BOUND = 10.0


@dataclass(frozen=True)
class Fault:
    name: str
    moment: str  # rotation_fault.py's moment
    action: str  # rotation_fault.py's fault
    lossless: bool  # no request may fail
    steps: tuple  # steps a failed run may name


FAULTS = [
    Fault("new-killed-before-healthy", "started", "kill-new", True, ("healthy",)),
    Fault("new-killed-after-add", "added", "kill-new", True, ("up",)),
    Fault("new-killed-during-drain", "drain", "kill-new", True, ()),
    # HAProxy or the engine gone for a moment: any step may meet it, the end-of-run check's reading included.
    Fault("haproxy-killed", "added", "kill-haproxy", False, ("add", "up", "remove", "apply", "check")),
    Fault("dockerd-restarted", "added", "restart-docker", False, ("start", "healthy", "add", "up", "remove", "apply", "check")),
]

# What the error of a run that failed at each step says (haproxy_rotate's RotationError messages).
STEP_WORDS = {
    "start": "step 'start' failed", "healthy": "step 'healthy' failed", "add": "step 'add' failed",
    "up": "step 'up' failed", "remove": "removing old container", "apply": "the steps before it are done",
    "check": "the end-of-run check",
}


@pytest.fixture(scope="module")
def rotor(edge_vps):
    rotor = Rotor(edge_vps)
    subprocess.run(["docker", "cp", str(SCRIPT), "%s:/root/rotation_fault.py" % edge_vps.name], check=True)
    fingerprint = edge_vps.fingerprint()
    assert edge_vps.sh("cp -p %s /root/web.cfg.baseline" % BACKEND_FILE).returncode == 0
    yield rotor
    # Back to the tier's baseline: no container, server or route of the service, and the backend file
    # (which lists no server either way) as the haproxy role wrote it.
    result = rotor.run(state="absent", image=None, routes=None)
    assert not result.get("failed"), result
    assert rotor.live_servers() == {} and service_state(rotor)[2] == []
    assert edge_vps.sh("mv /root/web.cfg.baseline %s" % BACKEND_FILE).returncode == 0
    assert_unchanged(fingerprint, edge_vps.fingerprint())


def assert_unchanged(before: str, after: str) -> None:
    """The shared VPS as the module found it (its tier's next module would pay for a reset otherwise)."""
    assert after == before, "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm=""))


@pytest.fixture(scope="module")
def summary():
    records = []
    yield records
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(records, indent=2) + "\n")
    print("\nFailed requests per fault (haproxy_rotate, %d round(s) each):" % ROUNDS)
    for record in records:
        print("  %-27s round %d: %5d sent, %3d failed, outage %5.2f s, run: %s, next run changed: %s"
              % (record["fault"], record["round"], record["sent"], record["failed"], record["outage"],
                 record["outcome"], record["next_run_changed"]))


class Sampler:
    """Samples the load's failure count every 50 ms, to tell when requests failed."""

    def __init__(self, load):
        self.load = load
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self.load.result.failed))
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join(timeout=5)

    def windows(self, gap: float = 2.0) -> list:
        """(first, last) times of the failures, grouped where they are less than ``gap`` seconds apart."""
        times = [t for (t, failed), (_before, previous) in zip(self.samples[1:], self.samples) if failed > previous]
        groups = []
        for t in times:
            if groups and t - groups[-1][1] < gap:
                groups[-1][1] = t
            else:
                groups.append([t, t])
        return groups


def service_state(rotor) -> tuple:
    """(containers with their state, HAProxy's servers with their status, the backend file's servers)."""
    listed = sorted(line.split()[1] for line in rotor.vps.sh("cat %s" % BACKEND_FILE).stdout.splitlines()
                    if line.strip().startswith("server "))
    return rotor.containers(), rotor.live_servers(), listed


def assert_whole(rotor) -> list:
    containers, live, listed = service_state(rotor)
    names = running(containers)
    assert len(containers) == 2 and len(names) == 2, "orphan or missing container: %s" % containers
    assert live == {name: "UP" for name in names}, "HAProxy's servers differ from the containers: %s %s" % (live, names)
    assert listed == names, "the backend file's servers differ from the containers: %s %s" % (listed, names)
    return names


def serving(rotor) -> list:
    if len(running(rotor.containers())) != 2 or set(rotor.live_servers().values()) != {"UP"}:
        result = rotor.run()
        assert not result.get("failed"), result
    return assert_whole(rotor)


def wait_haproxy(rotor, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if rotor.vps.sh("python3 /root/haproxy_cli.py --socket /var/lib/rotor/haproxy/run/admin.sock "
                        "--wait 1 'show info' >/dev/null").returncode == 0:
            return
        time.sleep(0.5)
    state = rotor.vps.sh("docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}} "
                         "started={{.State.StartedAt}} error={{.State.Error}}' rotor-haproxy; "
                         "docker logs --tail 15 rotor-haproxy 2>&1; date -u +%FT%T").stdout
    pytest.fail("HAProxy's runtime socket did not answer within %d s: %s" % (seconds, state))


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
@pytest.mark.parametrize("round_", range(1, ROUNDS + 1), ids=["round%d" % n for n in range(1, ROUNDS + 1)])
def test_fault_during_rotation(rotor, summary, fault, round_):
    names = serving(rotor)
    with loadgen.Background("%s:80" % rotor.address, host=HOST, rate=200, duration=60, count=12000,
                            connections=8) as load, Sampler(load) as sampler:
        time.sleep(0.5)
        injector = subprocess.Popen(["docker", "exec", rotor.vps.name, "python3", "/root/rotation_fault.py", "web",
                                     "web", ",".join(names), fault.moment, fault.action, "60"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        result = rotor.run(state="rotated")
        out, err = injector.communicate(timeout=90)
        injected = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        assert injector.returncode == 0, "the fault was not injected: %s %s" % (out, err)
        wait_haproxy(rotor)
        time.sleep(1.5)  # requests after the service is back
    stats = load.result.as_dict()
    windows = sampler.windows()
    outage = round(sum(last - first for first, last in windows), 2)

    # The run: success (what died is replaced by the end-of-run check), or a clear error naming the step.
    killed = injected["new"]
    if result.get("failed"):
        outcome = "failed at step %s" % result.get("step")
        assert result.get("step") in fault.steps, result
        assert result["msg"].startswith("haproxy_rotate web: ") and STEP_WORDS[result["step"]] in result["msg"], result
    else:
        outcome = "ok"
        if fault.action == "kill-new":
            repairs = [r["old"] for r in result["replacements"] if r["reason"].startswith("end-of-run check: ")]
            assert killed in repairs, "the run ended without replacing %s: %s" % (killed, result["replacements"])
            outcome = "ok, %s replaced by the end-of-run check" % killed

    # The next run converges, the one after changes nothing, and nothing is orphaned.
    converged = rotor.run()
    assert not converged.get("failed"), converged
    if converged["changed"]:
        again = rotor.run()
        assert again["changed"] is False and again["actions"] == [], again
    now = assert_whole(rotor)
    if fault.action == "kill-new":
        assert killed not in now

    summary.append({"fault": fault.name, "round": round_, "sent": stats["sent"], "failed": stats["failed"],
                    "errors": stats["errors"], "served_by": len(stats["served_by"]), "outage": outage,
                    "failure_windows": len(windows), "outcome": outcome, "error": result.get("msg", ""), "injected": injected,
                    "next_run_changed": converged["changed"],
                    "next_run_actions": converged["actions"]})
    print("\n%s: %s" % (fault.name, json.dumps(summary[-1])))
    assert stats["sent"] > 500 and stats["served_by"], stats
    if fault.lossless:
        assert stats["failed"] == 0, stats
    else:
        # The service answers again within OUTAGE_BOUND s, and no request fails once it does.
        assert len(windows) <= 1 and outage <= OUTAGE_BOUND, (windows, stats)
