"""The hardening rules every container is checked against, their exemptions, and the README's list of them."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._hardening import (
    EXEMPTIONS,
    RULES,
    broken_rules,
    container_errors,
    daemon_errors,
)

README = Path(__file__).resolve().parents[4] / "README.md"

HARDENED = {
    "Name": "/rotor-example",
    "Config": {"User": "65534:65534", "Labels": {"org.rotor.vps.managed-by": "rotor.vps.observability"},
               "Healthcheck": {"Test": ["CMD", "wget", "-q", "http://127.0.0.1/"]}},
    "HostConfig": {"CapDrop": ["ALL"], "CapAdd": None, "SecurityOpt": ["no-new-privileges:true"],
                   "ReadonlyRootfs": True, "Memory": 67108864, "NanoCpus": 250000000, "CpuQuota": 0,
                   "PidsLimit": 128, "Privileged": False,
                   "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}},
}


def variant(name: str = "rotor-example", labels: dict | None = None, **changes) -> dict:
    """HARDENED with ``changes`` ("HostConfig.Memory": 0, ...)."""
    inspect = copy.deepcopy(HARDENED)
    inspect["Name"] = "/" + name
    if labels is not None:
        inspect["Config"]["Labels"] = labels
    for path, value in changes.items():
        section, key = path.split("__")
        inspect[section][key] = value
    return inspect


def test_a_hardened_container_breaks_no_rule():
    assert broken_rules(HARDENED) == {}
    assert container_errors(HARDENED) == []


@pytest.mark.parametrize("changes, rule", [
    ({"HostConfig__CapDrop": ["NET_RAW"]}, "capabilities"),
    ({"HostConfig__CapDrop": None}, "capabilities"),
    ({"HostConfig__CapAdd": ["NET_BIND_SERVICE"]}, "capabilities"),
    ({"HostConfig__SecurityOpt": ["label=disable"]}, "no_new_privileges"),
    ({"HostConfig__SecurityOpt": None}, "no_new_privileges"),
    ({"HostConfig__ReadonlyRootfs": False}, "read_only"),
    ({"HostConfig__Memory": 0}, "memory"),
    ({"HostConfig__NanoCpus": 0}, "cpus"),
    ({"HostConfig__PidsLimit": None}, "pids"),
    ({"HostConfig__PidsLimit": -1}, "pids"),
    ({"Config__User": ""}, "user"),
    ({"Config__User": "root"}, "user"),
    ({"Config__User": "0:0"}, "user"),
    ({"Config__Healthcheck": None}, "healthcheck"),
    ({"Config__Healthcheck": {"Test": ["NONE"]}}, "healthcheck"),
    ({"HostConfig__LogConfig": {"Type": "json-file", "Config": {}}}, "log_rotation"),
    ({"HostConfig__LogConfig": {"Type": "fluentd", "Config": {}}}, "log_rotation"),
    ({"HostConfig__Privileged": True}, "unprivileged"),
])
def test_each_rule_is_seen_broken(changes, rule):
    assert list(broken_rules(variant(**changes))) == [rule]
    errors = container_errors(variant(**changes))
    assert len(errors) == 1 and errors[0].startswith("rotor-example: "), errors


@pytest.mark.parametrize("changes", [
    {"HostConfig__CpuQuota": 50000, "HostConfig__NanoCpus": 0},  # --cpu-quota instead of --cpus
    {"HostConfig__SecurityOpt": ["no-new-privileges"]},
    {"HostConfig__LogConfig": {"Type": "local", "Config": {}}},  # rotates by default
    {"Config__User": "demo"},
])
def test_equivalent_settings_pass(changes):
    assert broken_rules(variant(**changes)) == {}


def test_exemptions_cover_only_their_containers_and_rules():
    assert container_errors(variant("rotor-cadvisor", Config__User="0:0")) == []
    # cAdvisor's exemption is about its user, not its limits; another container gets none.
    assert container_errors(variant("rotor-cadvisor", Config__User="0:0", HostConfig__Memory=0)) == [
        "rotor-cadvisor: no memory limit"]
    assert container_errors(variant("rotor-cadvisor-2", Config__User="0:0")) == ["rotor-cadvisor-2: runs as root (User '0:0')"]
    web = {"org.rotor.vps.managed-by": "rotor.vps.haproxy_rotate", "org.rotor.vps.service": "web"}
    assert container_errors(variant("web-1a2b3c4d", labels=web, Config__Healthcheck=None)) == []
    assert container_errors(variant("web-1a2b3c4d", labels=web, Config__Healthcheck=None, HostConfig__ReadonlyRootfs=False)) == [
        "web-1a2b3c4d: the root file system is writable"]
    assert container_errors(variant("web-1a2b3c4d", Config__Healthcheck=None)) == ["web-1a2b3c4d: no health check"]


def test_every_exemption_names_a_rule():
    assert {e.rule for e in EXEMPTIONS} <= set(RULES)


@pytest.mark.parametrize("daemon, expected", [
    ({"live-restore": True, "no-new-privileges": True}, 0),
    ({"live-restore": False, "no-new-privileges": True}, 1),
    ({"no-new-privileges": True}, 1),
    ({}, 2),
])
def test_daemon_defaults(daemon, expected):
    assert len(daemon_errors(daemon)) == expected


def test_the_readme_lists_exactly_the_exemptions():
    text = README.read_text()
    block = text.split("<!-- hardening exceptions:")[1].split("<!-- end of hardening exceptions -->")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| Container") and not line.startswith("| ---")]
    words = {"user": "user (root)", "healthcheck": "health check"}
    expected = [["`%s`" % e.name if e.name else "containers of `%s`" % e.managed_by, words[e.rule], e.reason]
                for e in EXEMPTIONS]
    assert rows == expected
    assert all(re.fullmatch(r"[\w-]+", e.name) for e in EXEMPTIONS if e.name)
