"""haproxy_rotate against the real HAProxy of the haproxy role, in a lab VPS.

The demo web service (tests/lab/images/demo-web) names its container in X-Served-By and lists
its tmpfs at /scratch/, so every assertion about "a new container serves" is made on what
clients actually receive through HAProxy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from batch import run_module

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
import loadgen  # noqa: E402

ANSIBLE = str(Path(sys.executable).parent / "ansible")
HOST = "web.rotate.test"
BACKEND_FILE = "/etc/rotor/haproxy/conf.d/web.cfg"
MAP_FILE = "/etc/rotor/haproxy/maps/hosts.map"
AUDIT = "/var/log/rotor/rotation.jsonl"
BASE = {
    "service": "web",
    "backend": "web",
    "image": "rotor-lab/demo-web:1",
    "replicas": 2,
    "tmpfs": [{"path": "/tmp", "size": "16m", "uid": 1000}, {"path": "/scratch", "size": "16m", "uid": 1000}],
    "memory": "64m",
    "pids_limit": 64,
    "routes": [HOST],
}


class Rotor:
    """Runs the module on the VPS (ad hoc, JSON output) and reads what clients and HAProxy see."""

    def __init__(self, vps):
        self.vps = vps
        self.address = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", vps.name],
            capture_output=True, text=True, check=True).stdout.split()[0]

    def run(self, *, check: bool = False, diff: bool = False, **overrides) -> dict:
        args = dict(BASE, **overrides)
        cmd = [ANSIBLE, "all", "-i", str(self.vps.inventory), "-m", "rotor.vps.haproxy_rotate", "-a", json.dumps(args)]
        cmd += ["--check"] if check else []
        cmd += ["--diff"] if diff else []
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            pytest.fail("no JSON from ansible (rc %d): %s %s" % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
        return data["plays"][0]["tasks"][0]["hosts"][self.vps.name]

    def containers(self) -> list:
        out = self.vps.sh("docker ps -a --filter label=org.rotor.vps.service=web --format '{{.Names}} {{.State}}'").stdout
        return sorted(out.split("\n")[:-1]) if out.strip() else []

    def files(self) -> str:
        # Mode and owner too: the module keeps the haproxy role's root:99 0640.
        return self.vps.sh("stat -c '%%n %%a %%U:%%g' %s %s; cat %s %s; wc -l < %s 2>/dev/null || echo 0"
                           % (BACKEND_FILE, MAP_FILE, BACKEND_FILE, MAP_FILE, AUDIT)).stdout

    def live_servers(self) -> dict:
        """server name -> status, from the running HAProxy's runtime API."""
        script = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.connect('/var/lib/rotor/haproxy/run/admin.sock')\n"
            "s.sendall(b'show stat\\n')\n"
            "data = b''\n"
            "while True:\n"
            "    chunk = s.recv(65536)\n"
            "    if not chunk:\n"
            "        break\n"
            "    data += chunk\n"
            "print(data.decode())\n"
        )
        out = subprocess.run(["docker", "exec", "-i", self.vps.name, "python3", "-"], input=script,
                             capture_output=True, text=True, timeout=30, check=True).stdout
        servers = {}
        for line in out.splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "web" and fields[1] not in ("BACKEND", "FRONTEND"):
                servers[fields[1]] = fields[17]
        return servers

    def failures(self) -> int:
        """rotor_rotation_failures_total of the service, from its textfile metrics."""
        text = self.vps.sh("cat /var/lib/rotor/metrics/rotation_web.prom 2>/dev/null").stdout
        match = re.search(r'^rotor_rotation_failures_total\{service="web"\} (\d+)$', text, re.M)
        return int(match.group(1)) if match else 0

    def get(self, path: str = "/") -> tuple:
        request = urllib.request.Request("http://%s%s" % (self.address, path), headers={"Host": HOST})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as response:
            return response.status, response.headers.get("X-Served-By"), response.read().decode()


@pytest.fixture(scope="module")
def rotor(edge_vps) -> Rotor:
    """The shared edge VPS (docker_host, networks, haproxy converged)."""
    # The load comes from this machine, which HAProxy sees as the lab network's gateway: the edge
    # fixture exempts it from the per-client rate limit (the limit itself is tested in test_haproxy.py).
    gateway = subprocess.run(["docker", "network", "inspect", "rotor-lab", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert gateway in edge_vps.variables["haproxy_rate_limit_exempt_networks"], edge_vps.variables
    return Rotor(edge_vps)


def serving(rotor) -> list:
    """The service's two running containers, UP in HAProxy; brought up first when an earlier test (or
    none, when this test runs alone) left it otherwise, so no test depends on another's leftovers."""
    names = running(rotor.containers())
    if len(names) != 2 or rotor.live_servers() != {n: "UP" for n in names}:
        result = rotor.run()
        assert not result.get("failed"), result
        names = running(rotor.containers())
    assert len(names) == 2 and rotor.live_servers() == {n: "UP" for n in names}, names
    return names


def running(names: list) -> list:
    return sorted(n.split()[0] for n in names if n.endswith(" running"))


def test_present_four_steps(rotor):
    before = (rotor.containers(), rotor.files())
    planned = rotor.run(check=True, diff=True)
    assert planned["changed"] is True
    assert planned["actions"].count("start a new container (fewer than 2 replicas)") == 2
    assert "route %s to backend" % HOST in planned["actions"]
    assert planned["diff"]["before"]["servers"] == []
    assert len(planned["diff"]["after"]["servers"]) == 2
    assert (rotor.containers(), rotor.files()) == before, "check mode changed something"

    applied = rotor.run()
    assert applied["changed"] is True, applied
    assert "diff" not in applied, "a diff without --diff"
    names = running(rotor.containers())
    assert len(names) == 2 and sorted(applied["servers"]) == names
    assert rotor.live_servers() == {n: "UP" for n in names}
    files = rotor.files()
    for name in names:
        assert "server %s " % name in files
    assert "%s 640 root:99" % BACKEND_FILE in files and "%s 640 root:99" % MAP_FILE in files, files
    assert {r["result"] for r in applied["replacements"]} == {"ok"}

    state = (rotor.containers(), rotor.files())
    again = rotor.run()
    assert again["changed"] is False and again["actions"] == [] and again["replacements"] == []
    assert rotor.run(check=True)["changed"] is False
    assert (rotor.containers(), rotor.files()) == state


def test_new_container_serves_with_empty_tmpfs(rotor):
    old = set(serving(rotor))
    result = rotor.run(state="rotated")
    assert result["changed"] is True
    new = set(running(rotor.containers()))
    assert len(new) == 2 and not new & old, "every container must be replaced"
    assert {r["old"] for r in result["replacements"]} == old
    seen = set()
    for _request in range(20):
        status, served_by, body = rotor.get("/scratch/")
        assert status == 200 and served_by in new
        listing = [entry["name"] for entry in json.loads(body)]
        assert listing == ["started-by-%s" % served_by], "tmpfs of %s is not fresh: %s" % (served_by, listing)
        seen.add(served_by)
    assert seen == new, "both new containers must serve"
    record = [json.loads(line) for line in rotor.vps.sh("tail -n 2 %s" % AUDIT).stdout.splitlines()]
    assert [(r["old"] in old, r["new"] in new, r["result"]) for r in record] == [(True, True, "ok")] * 2


def test_max_age_is_idempotent(rotor):
    names = serving(rotor)
    assert rotor.run(max_age="1h")["changed"] is False
    time.sleep(3)
    assert rotor.run(max_age="2s", check=True)["changed"] is True
    assert running(rotor.containers()) == names, "check mode replaced containers"
    replaced = rotor.run(max_age="2s")
    assert replaced["changed"] is True
    assert all(r["reason"].startswith("older than max_age") for r in replaced["replacements"])
    assert not set(running(rotor.containers())) & set(names)
    assert rotor.run(max_age="1h")["changed"] is False


def test_rotation_under_load_fails_no_request(rotor):
    serving(rotor)
    with loadgen.Background("%s:80" % rotor.address, host=HOST, rate=300, duration=60, count=18000,
                            connections=8) as load:
        time.sleep(1)
        for _rotation in range(3):
            assert rotor.run(state="rotated")["changed"] is True
        time.sleep(1)
    result = load.result.as_dict()
    assert result["sent"] > 1000
    assert result["failed"] == 0, result
    assert len(result["served_by"]) >= 8, "requests must have reached the new containers: %s" % result


def test_crash_of_a_serving_replica_fails_no_request(rotor):
    """HAProxy sends the requests the dead server had, and those it gets before its checks notice, to the
    other one (retry-on, redispatch); the next run replaces the dead replica."""
    names = serving(rotor)
    with loadgen.Background("%s:80" % rotor.address, host=HOST, rate=300, duration=30, count=6000,
                            connections=8) as load:
        time.sleep(1)
        rotor.vps.sh("docker update --restart=no %s >/dev/null && docker kill %s >/dev/null" % (names[0], names[0]))
        deadline = time.monotonic() + 20
        while not rotor.live_servers().get(names[0], "").startswith("DOWN") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # the load goes on against the one replica left
    result = load.result.as_dict()
    assert rotor.live_servers().get(names[0], "").startswith("DOWN"), "HAProxy never took the dead server down"
    assert result["sent"] > 300 and result["failed"] == 0, result
    repaired = rotor.run()
    assert repaired["changed"] is True, repaired
    assert ("retire", names[0], "not running") in [(r["action"], r["old"], r["reason"]) for r in repaired["replacements"]]
    assert len(serving(rotor)) == 2


def test_replica_dying_after_its_switch_is_replaced_at_the_end_of_the_run(rotor):
    names = serving(rotor)
    script = (ROOT / "tests" / "integration" / "files" / "kill_new_server.py").read_text()
    with loadgen.Background("%s:80" % rotor.address, host=HOST, rate=200, duration=60, count=12000,
                            connections=8) as load:
        killer = subprocess.Popen(["docker", "exec", "-i", rotor.vps.name, "python3", "-", "web", ",".join(names), "60"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        killer.stdin.write(script)
        killer.stdin.close()
        result = rotor.run(state="rotated")
        killed = killer.stdout.read().strip()
        assert killer.wait(timeout=60) == 0, "no new server came UP"
        time.sleep(1)
    assert not result.get("failed"), result
    checks = [r for r in result["replacements"] if r["reason"].startswith("end-of-run check: ")]
    assert checks, result["replacements"]
    assert killed in [r["old"] for r in checks], (killed, checks)
    now = serving(rotor)
    assert killed not in now and not set(now) & set(names)
    assert load.result.failed == 0, load.result.as_dict()


def test_reload_during_rotation_loses_no_server(rotor):
    serving(rotor)
    stop = threading.Event()
    reloads = []

    def reload_loop():
        while not stop.is_set() and len(reloads) < 40:
            # To the master process, not through Docker's kill: that would count HAProxy's container as stopped
            # by hand, and Docker would not restart it after a crash (test_faults_rotation.py kills it later).
            rotor.vps.signal("USR2", "rotor-haproxy")
            reloads.append(time.monotonic())
            time.sleep(0.3)

    with loadgen.Background("%s:80" % rotor.address, host=HOST, rate=200, duration=60, count=12000) as load:
        thread = threading.Thread(target=reload_loop, daemon=True)
        thread.start()
        result = rotor.run(state="rotated")
        stop.set()
        thread.join(timeout=30)
        time.sleep(2)
    assert result["changed"] is True and len(reloads) >= 3, (result, len(reloads))
    names = running(rotor.containers())
    assert len(names) == 2
    assert rotor.live_servers() == {n: "UP" for n in names}, "HAProxy lost or kept a server across reloads"
    assert load.result.failed == 0, load.result.as_dict()


def test_unhealthy_image_keeps_old_serving(rotor):
    names = serving(rotor)
    files = rotor.files().rsplit("\n", 2)[0]
    failures_before = rotor.failures()
    failed = rotor.run(image="rotor-lab/demo-web:unhealthy", healthy_timeout=3)
    assert failed.get("failed") is True
    assert "step 'healthy' failed" in failed["msg"] and "old ones keep serving" in failed["msg"], failed["msg"]
    assert failed["replacements"][0]["result"] == "failed"
    assert running(rotor.containers()) == names, "the new container must be gone and the old ones kept"
    assert rotor.files().rsplit("\n", 2)[0] == files
    assert rotor.live_servers() == {n: "UP" for n in names}
    status, served_by, _body = rotor.get("/")
    assert status == 200 and served_by in names
    last = json.loads(rotor.vps.sh("tail -n 1 %s" % AUDIT).stdout)
    assert last["result"] == "failed" and last["old"] in names
    assert rotor.failures() == failures_before + 1


def test_concurrent_rotations_are_serialized(rotor):
    serving(rotor)
    results = []
    threads = [threading.Thread(target=lambda: results.append(rotor.run(state="rotated"))) for _run in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert [r.get("failed", False) for r in results] == [False, False], results
    assert len(running(rotor.containers())) == 2
    lines = [json.loads(line) for line in rotor.vps.sh("tail -n 4 %s" % AUDIT).stdout.splitlines()]
    # The second run replaced the first run's new containers: one chain, never two runs interleaved.
    assert sorted(line["old"] for line in lines[2:]) == sorted(line["new"] for line in lines[:2]), lines
    assert running(rotor.containers()) == sorted(line["new"] for line in lines[2:])


def test_lock_timeout_is_a_clear_error(rotor):
    serving(rotor)
    before = (rotor.containers(), rotor.files())
    holder = subprocess.Popen(["docker", "exec", rotor.vps.name, "flock", "/run/lock/rotor/haproxy-web.lock",
                               "sleep", "8"])
    try:
        time.sleep(1)
        result = rotor.run(state="rotated", lock_timeout=1)
    finally:
        holder.wait(timeout=30)
    assert result.get("failed") is True
    assert "backend web is locked by another run" in result["msg"] and "lock_timeout" in result["msg"]
    assert (rotor.containers(), rotor.files()) == before


BAD_INPUT = [
    ({"replicas": 0}, "replicas: 0 must be a whole number of at least 1"),
    ({"replicas": -2}, "replicas: -2 must be a whole number of at least 1"),
    ({"backend": "nosuch"}, "backend nosuch is not defined in the running HAProxy"),
    ({"tmpfs": [{"path": "/tmp", "size": "10X"}]}, "tmpfs[0].size: must be a positive whole number"),
    ({"haproxy_socket": "/run/nosuch.sock"}, "runtime socket /run/nosuch.sock does not exist"),
    ({"service": "Web"}, "service: 'Web' must start with a lowercase letter"),
    ({"routes": ["Web.Example.com:80"]}, "routes[0]: 'Web.Example.com:80' must be a lowercase host name"),
    ({"max_age": "soon"}, "max_age: must be a positive whole number"),
]


@pytest.fixture(scope="module")
def bad_input(rotor, tmp_path_factory):
    """Every BAD_INPUT case at the same time (one run, a fork each), with the containers and files before and after."""
    before = (rotor.containers(), rotor.files())
    runs = [dict(BASE, state="rotated", **overrides) for overrides, _message in BAD_INPUT]
    results = run_module(rotor.vps, "rotor.vps.haproxy_rotate", runs, tmp_path_factory.mktemp("cases"))
    return before, results, (rotor.containers(), rotor.files())


@pytest.mark.parametrize("overrides, message", BAD_INPUT)
def test_bad_input_changes_nothing(bad_input, overrides, message):
    before, results, after = bad_input
    result = results[BAD_INPUT.index((overrides, message))]
    assert result.get("failed") is True, result
    assert message in result["msg"], result["msg"]
    assert after == before


def test_absent_drains_and_removes(rotor):
    serving(rotor)
    result = rotor.run(state="absent", image=None, routes=None)
    assert result["changed"] is True
    assert rotor.containers() == []
    assert rotor.live_servers() == {}
    files = rotor.files()
    assert "\n    server " not in files and HOST not in files
    assert rotor.run(state="absent", image=None, routes=None)["changed"] is False
