"""The rotation role on a converged VPS: services behind HAProxy and their timers.

Expected values come from the role defaults and the lab inventory molecule applied.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.fixture(scope="module")
def settings() -> dict:
    merged = _load(ROOT / "roles" / "rotation" / "defaults" / "main.yml")
    merged.update(_load(ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"))
    return merged


@pytest.fixture(scope="module")
def services(settings) -> list[dict]:
    present = [s for s in settings["rotation_services"] if s.get("state", "present") == "present"]
    assert present, "the lab inventory defines a rotated service to check"
    return present


def test_timers_enabled_and_waiting(host, settings, services):
    assert settings["rotation_mode"] == "systemd"
    for service in services:
        timer = "rotor-rotate-%s.timer" % service["name"]
        assert host.service(timer).is_enabled, timer
        assert host.check_output("systemctl is-active %s" % timer) == "active"
        # Waiting for its next run, or (a run under way as the test looks) its service is running: systemd
        # computes the next elapse once that run ends.
        waiting = host.check_output("systemctl show -p NextElapseUSecRealtime --value %s" % timer)
        state = host.check_output("systemctl show -p ActiveState --value rotor-rotate-%s.service" % service["name"])
        assert waiting or state in ("activating", "active"), (timer, state)


def test_units_say_what_the_inventory_says(host, settings, services):
    for service in services:
        unit = host.check_output("systemctl cat rotor-rotate-%s.timer rotor-rotate-%s.service" % (service["name"], service["name"]))
        assert "OnCalendar=%s" % service.get("interval", settings["rotation_interval"]) in unit
        assert "Persistent=true" in unit
        assert "Type=oneshot" in unit
        assert "rotate_services=%s" % service["name"] in unit
        host.run_expect([0], "systemd-analyze verify /etc/systemd/system/rotor-rotate-%s.service "
                             "/etc/systemd/system/rotor-rotate-%s.timer" % (service["name"], service["name"]))


def test_services_file_is_private(host, settings):
    services_file = host.file("%s/services.yml" % settings["rotation_config_dir"])
    assert services_file.exists
    assert services_file.user == "root"
    assert services_file.mode == 0o600


def test_timer_runs_need_only_ansible_core_and_this_collection(host, settings):
    for package in settings["rotation_ansible_packages"]:
        assert host.package(package).is_installed, package
    listed = host.check_output(
        "ANSIBLE_COLLECTIONS_PATH=%s ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=0 ansible-galaxy collection list --format json"
        % settings["rotation_collections_path"]
    )
    assert [name for found in json.loads(listed).values() for name in found if not name.startswith("ansible.")] == [
        "rotor.vps"
    ]


def test_replicas_serve_through_haproxy(host, services):
    for service in services:
        names = host.check_output(
            "docker ps --filter label=org.rotor.vps.service=%s --format '{{.Names}}'" % service["name"]
        ).split()
        assert len(names) == service.get("replicas", 2), names
        for name in service.get("hosts", []):
            answer = host.check_output("curl -sS --max-time 10 -H 'Host: %s' http://127.0.0.1/" % name)
            assert answer.startswith("hello from %s-" % service["name"]), answer
