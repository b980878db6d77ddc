"""The rotation role, its systemd timers and playbooks/rotate.yml on a VPS running the edge.

The timers must really fire inside the VPS and rotate through the collection copy the role
installed there; rotate.yml from the controller must rotate only the services it is asked for;
bad input must fail naming the variable and the rule with nothing changed.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from batch import run_cases
from conftest import ROOT

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "rotation.yml"
WEB = {
    "name": "web",
    "image": "rotor-lab/demo-web:1",
    "replicas": 2,
    "port": 8080,
    "hosts": ["web.lab.test"],
    "tmpfs": [{"path": "/tmp", "size": "16m", "uid": 1000}, {"path": "/scratch", "size": "16m", "uid": 1000}],
    "memory": "128m",
    "pids_limit": 64,
    "interval": "*:0/30",
    "jitter": "0",
}
# The fixture's second backend, "test": a service whose scheduled runs only replace old containers.
API = {
    "name": "api",
    "backend": "test",
    "image": "rotor-lab/demo-web:2",
    "replicas": 1,
    "hosts": ["api.lab.test"],
    "tmpfs": [{"path": "/tmp", "size": "8m", "uid": 1000}, {"path": "/scratch", "size": "8m", "uid": 1000}],
    "max_age": "1h",
}
AUDIT_LOG = "/var/log/rotor/rotation.jsonl"
UNITS = "/etc/systemd/system/rotor-rotate-web.service /etc/systemd/system/rotor-rotate-web.timer"


@pytest.fixture(scope="module")
def vps(edge_vps, collection_snapshot):
    return edge_vps


def converge(vps, *args, **overrides):
    variables = {"rotation_services": [WEB], "rotation_mode": "systemd"}
    variables.update(overrides)
    return _run(vps, str(PLAYBOOK), variables, *args)


def _run(vps, playbook: str, variables: dict, *args):
    path = vps.tmp / ("vars-%d.yml" % time.monotonic_ns())
    path.write_text(yaml.safe_dump(dict(vps.variables, **variables)))
    return vps.playbook(playbook, *args, extra_vars=path, timeout=600)


def rotate(vps, variables: dict, *args):
    return _run(vps, "rotate.yml", variables, *args)


def containers(vps, service: str) -> set[str]:
    out = vps.sh("docker ps --filter label=org.rotor.vps.service=%s --format '{{.Names}}'" % service).stdout
    return set(out.split())


def audit_lines(vps) -> list[dict]:
    out = vps.sh("cat %s 2>/dev/null" % AUDIT_LOG).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def state(vps) -> str:
    """What a run could change: containers, units, the services file, HAProxy's files."""
    return vps.sh(
        "docker ps -a --format '{{.Names}} {{.Image}}' | sort; ls -l --time-style=+%s /etc/systemd/system/rotor-rotate-* 2>&1; "
        "sha256sum /etc/rotor/rotation/services.yml /etc/rotor/haproxy/maps/hosts.map /etc/rotor/haproxy/conf.d/*.cfg "
        + UNITS + " 2>&1; systemctl is-active rotor-rotate-web.timer; true"
    ).stdout


def test_check_mode_on_a_host_without_services_changes_nothing(vps):
    before = state(vps)
    run = converge(vps, "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(vps.name)["changed"] > 0
    assert "rotor-rotate-web.timer" in run.output
    assert containers(vps, "web") == set()
    assert state(vps) == before


def test_converge_brings_the_service_up_with_its_timer(vps):
    started = time.monotonic()
    run = converge(vps)
    assert run.rc == 0, run.output[-3000:]
    print("first converge of the rotation role: %.1f s" % (time.monotonic() - started))
    assert len(containers(vps, "web")) == 2
    answer = vps.http("/", host="web.lab.test")
    assert answer.status == 200 and answer.body.startswith("hello from web-"), answer
    assert vps.sh("systemctl is-enabled rotor-rotate-web.timer").stdout.strip() == "enabled"
    assert vps.sh("systemctl is-active rotor-rotate-web.timer").stdout.strip() == "active"
    assert vps.sh("systemd-analyze verify %s" % UNITS).returncode == 0
    unit = vps.sh("systemctl cat rotor-rotate-web.timer rotor-rotate-web.service").stdout
    for line in ("OnCalendar=*:0/30", "RandomizedDelaySec=0", "Persistent=true", "Type=oneshot",
                 "-i localhost, -c local", "rotate_services=web"):
        assert line in unit, line
    assert vps.sh("stat -c %a /etc/rotor/rotation/services.yml").stdout.strip() == "600"
    installed = vps.sh("ls /usr/local/share/rotor/collections/ansible_collections/rotor/vps/playbooks/rotate.yml")
    assert installed.returncode == 0, installed.stderr
    # The timers need ansible-core and rotor.vps only.
    listed = vps.sh("ANSIBLE_COLLECTIONS_PATH=/usr/local/share/rotor/collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=0 "
                    "ansible-galaxy collection list --format json").stdout
    assert [name for found in json.loads(listed).values() for name in found if not name.startswith("ansible.")] == [
        "rotor.vps"
    ], listed


def test_second_converge_and_check_change_nothing(vps):
    timer = vps.sh("systemctl cat rotor-rotate-web.timer").stdout
    if len(containers(vps, "web")) != 2 or "OnCalendar=*:0/30" not in timer:
        assert converge(vps).rc == 0, "the first converge failed (run on its own, this test converges first)"
    run = converge(vps)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(vps.name)["changed"] == 0, run.output[-3000:]
    run = converge(vps, "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(vps.name)["changed"] == 0, run.output[-3000:]


def test_timer_fires_and_rotates(vps):
    fast = dict(WEB, interval="*:*:0/20", jitter="0")
    run = converge(vps, rotation_services=[fast])
    assert run.rc == 0, run.output[-3000:]
    assert "OnCalendar=*:*:0/20" in vps.sh("systemctl cat rotor-rotate-web.timer").stdout
    before = containers(vps, "web")
    lines = len(audit_lines(vps))
    started = time.monotonic()
    deadline = started + 120
    while time.monotonic() < deadline:
        now = containers(vps, "web")
        if len(now) == 2 and not now & before and len(audit_lines(vps)) >= lines + 2:
            break
        time.sleep(2)
    else:
        journal = vps.sh("journalctl -u rotor-rotate-web.service --no-pager | tail -40").stdout
        pytest.fail("the timer did not rotate web within 120 s; journal:\n%s" % journal)
    print("timer rotation seen after %.1f s" % (time.monotonic() - started))
    new = audit_lines(vps)[lines:]
    assert {entry["actor"] for entry in new} == {"systemd"}, new
    assert all(entry["result"] == "ok" and entry["old"] in before for entry in new[:2]), new
    journal = vps.sh("journalctl -u rotor-rotate-web.service --no-pager").stdout
    assert "web (rotated): 2 change(s)" in journal, journal[-3000:]
    assert vps.http("/", host="web.lab.test").status == 200


def test_external_mode_removes_the_timers(vps):
    run = converge(vps, rotation_mode="external")
    assert run.rc == 0, run.output[-3000:]
    assert vps.sh("ls /etc/systemd/system/rotor-rotate-web.timer").returncode != 0
    assert vps.sh("systemctl is-active rotor-rotate-web.timer").stdout.strip() != "active"
    assert vps.sh("ls /etc/rotor/rotation/services.yml").returncode != 0
    assert len(containers(vps, "web")) == 2
    run = converge(vps, rotation_mode="external")
    assert run.recap(vps.name)["changed"] == 0, run.output[-3000:]


def test_rotate_playbook_rotates_only_the_selected_services(vps):
    services = {"rotation_services": [WEB, API], "rotation_mode": "external"}
    run = converge(vps, **services)
    assert run.rc == 0, run.output[-3000:]
    web, api = containers(vps, "web"), containers(vps, "api")
    assert len(web) == 2 and len(api) == 1
    assert vps.http("/", host="api.lab.test").status == 200

    run = rotate(vps, dict(services, rotate_services="web"), "--check")
    assert run.rc == 0, run.output[-3000:]
    assert containers(vps, "web") == web

    started = time.monotonic()
    run = rotate(vps, dict(services, rotate_services="web"))
    assert run.rc == 0, run.output[-3000:]
    print("rotate.yml for web from the controller: %.1f s" % (time.monotonic() - started))
    assert "web (rotated): 2 change(s)" in run.output
    assert "api (" not in run.output
    assert not containers(vps, "web") & web
    assert containers(vps, "api") == api

    # Every service, as the timers would: api has max_age 1h, so its young container stays.
    run = rotate(vps, services)
    assert run.rc == 0, run.output[-3000:]
    assert "api (present, older than 1h): nothing to replace" in run.output
    assert "web (rotated): 2 change(s)" in run.output
    assert containers(vps, "api") == api


def test_absent_service_is_removed(vps):
    run = converge(vps, rotation_services=[WEB, dict(API, state="absent")], rotation_mode="external")
    assert run.rc == 0, run.output[-3000:]
    assert containers(vps, "api") == set()
    assert "api.lab.test" not in vps.sh("cat /etc/rotor/haproxy/maps/hosts.map").stdout
    assert vps.http("/", host="api.lab.test").status == 404
    assert len(containers(vps, "web")) == 2


BAD_INPUT = [
    ("replicas-zero", {"rotation_services": [dict(WEB, replicas=0)]},
     ["rotation_services[0].replicas", "at least 1"]),
    ("tmpfs-size", {"rotation_services": [dict(WEB, tmpfs=[{"path": "/tmp", "size": "10X"}])]},
     ["rotation_services[0].tmpfs[0].size", "10X", "k, m or g suffix"]),
    ("service-name", {"rotation_services": [dict(WEB, name="Web")]},
     ["rotation_services[0].name", "'Web'", "lowercase letter"]),
    ("host-twice", {"rotation_services": [WEB, dict(API, hosts=["web.lab.test"])]},
     ["rotation_services[1]", "host name 'web.lab.test' is already used by rotation_services[0]"]),
    ("max-age", {"rotation_services": [dict(WEB, max_age="6 hours")]},
     ["rotation_services[0].max_age", "s, m, h or d suffix"]),
    ("jitter", {"rotation_services": [dict(WEB, jitter="soon")]},
     ["rotation_services[0].jitter", "s, m, h or d suffix"]),
    ("unknown-option", {"rotation_services": [dict(WEB, colour="blue")]},
     ["rotation_services.colour", "Supported parameters include"]),
    ("mode", {"rotation_mode": "cron"}, ["rotation_mode", "cron"]),
    ("calendar", {"rotation_services": [dict(WEB, interval="every tuesday")], "rotation_mode": "systemd"},
     ["rotation_services[name=web].interval", "every tuesday", "not a systemd OnCalendar expression"]),
]


@pytest.fixture(scope="module")
def bad_input(vps, tmp_path_factory):
    """Every BAD_INPUT case, in as few runs as keep each case's result its own (tests/integration/batch.py),
    with what a run could change before and after."""
    before = state(vps)
    base = dict(vps.variables, rotation_services=[WEB], rotation_mode="external")
    cases = {case: dict(base, **variables) for case, variables, _words in BAD_INPUT}
    results = run_cases(vps, PLAYBOOK, cases, tmp_path_factory.mktemp("cases"))
    return before, results, state(vps)


@pytest.mark.parametrize("case,variables,words", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_fails_naming_the_rule_and_changes_nothing(bad_input, case, variables, words):
    before, results, after = bad_input
    result = results[case]
    assert result.failed, result.output[-3000:]
    for word in words:
        assert word in result.message, "%r not in the error:\n%s" % (word, result.message)
    assert result.changed == 0
    assert after == before


def test_rotate_playbook_refuses_an_unknown_service(vps):
    before = state(vps)
    run = rotate(vps, {"rotation_services": [WEB], "rotate_services": ["nope"]})
    assert run.rc != 0
    assert "rotate_services: nope is not a present service of rotation_services" in run.output, run.output[-3000:]
    assert state(vps) == before
