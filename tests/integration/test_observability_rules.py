"""The observability role's alert rules, checked and unit-tested by the promtool of the lab's Prometheus.

roles/observability/templates/prometheus/rules.yml.j2 is rendered by Ansible itself (the role's
defaults and vars, through tests/unit/roles/conftest.py's helper), then `promtool check rules` checks
it and `promtool test rules` runs the tests of tests/promtool/*.yml against it, each in a one-shot
container of the lab's Prometheus image (about a second each). The promtool tests are written for
the role's defaults; a rendering with other values must still pass the check and carry those values.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, _docker_answers

# A few seconds: part of the edit-test loop.
pytestmark = pytest.mark.quick

PROMETHEUS_IMAGE = "rotor-lab/prometheus:latest"
RULES_TEMPLATE = "prometheus/rules.yml.j2"
# One file of promtool tests per kind of alert.
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yml"))
PROMTOOL_FILES = ["/w/%s" % path.name for path in PROMTOOL_TESTS]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "observability" / "defaults" / "main.yml").read_text())
# Values unlike every default, for the rendering that must carry them.
OTHER_VALUES = {
    "observability_alert_for": dict.fromkeys(DEFAULTS["observability_alert_for"], "15s"),
    "observability_tmpfs_warning_ratio": 0.5,
    "observability_tmpfs_critical_ratio": 0.9,
    "observability_disk_fill_hours": 48,
    "observability_memory_available_ratio": 0.2,
    "observability_audit_log": "/srv/audit/rotor.jsonl",
}


def _load_render_helper():
    """render_observability() of tests/unit/roles/conftest.py (that directory is not a package)."""
    spec = importlib.util.spec_from_file_location("observability_render",
                                                  ROOT / "tests" / "unit" / "roles" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_observability


render_observability = _load_render_helper()


def render_rules(out: Path, **variables) -> Path:
    """Render the rules into ``out``/rules.yml, next to a copy of the promtool tests; return ``out``,
    readable by the image's user (nobody)."""
    rendered = out / "rendered"
    (rendered / "prometheus").mkdir(parents=True)
    # This machine's Python: interpreter discovery could pick another one that lacks Ansible.
    render_observability(rendered, [RULES_TEMPLATE], ansible_python_interpreter=sys.executable, **variables)
    work = out / "promtool"
    work.mkdir()
    shutil.copyfile(rendered / "prometheus" / "rules.yml", work / "rules.yml")
    for path in PROMTOOL_TESTS:
        shutil.copyfile(path, work / path.name)
    work.chmod(0o755)
    for path in work.iterdir():
        path.chmod(0o644)
    return work


def promtool(work: Path, *args: str) -> subprocess.CompletedProcess:
    """promtool ``args`` in a one-shot container of the lab's Prometheus image, ``work`` mounted at /w."""
    return subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", "%s:/w:ro" % work,
                           "--entrypoint", "promtool", PROMETHEUS_IMAGE, *args],
                          capture_output=True, text=True, timeout=120, check=False)


def alerts_of(rules_file: Path) -> dict[str, dict]:
    """Every alert rule of a rules file, by name."""
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


@pytest.fixture(scope="module")
def lab_promtool():
    """Fails (never skips) when promtool cannot run: no Docker engine, or no lab Prometheus image."""
    if not _docker_answers():
        pytest.fail("no Docker engine answers; run the tests through `make test`, which starts the lab")
    proc = subprocess.run(["docker", "image", "inspect", PROMETHEUS_IMAGE], capture_output=True, timeout=60,
                          check=False)
    if proc.returncode != 0:
        pytest.fail("the lab image %s is missing; `make lab` builds it" % PROMETHEUS_IMAGE)
    return promtool


@pytest.fixture(scope="module")
def default_rules(tmp_path_factory) -> Path:
    """The rules rendered with the role's defaults, and the promtool tests, in one directory."""
    return render_rules(tmp_path_factory.mktemp("rules-defaults"))


def test_the_rules_pass_promtool_check(lab_promtool, default_rules):
    proc = lab_promtool(default_rules, "check", "rules", "/w/rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: %d rules found" % len(DEFAULTS["observability_alert_for"]) in proc.stdout, proc.stdout


def test_the_promtool_unit_tests_pass(lab_promtool, default_rules):
    proc = lab_promtool(default_rules, "test", "rules", *PROMTOOL_FILES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_the_alerts_are_the_for_durations_keys(default_rules):
    assert sorted(alerts_of(default_rules / "rules.yml")) == sorted(DEFAULTS["observability_alert_for"])


def test_every_alert_has_a_firing_and_a_quiet_case(default_rules):
    cases = [case for path in PROMTOOL_TESTS for test in yaml.safe_load(path.read_text())["tests"]
             for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = set(alerts_of(default_rules / "rules.yml"))
    assert alerts - firing == set(), "alerts no promtool case sees firing"
    assert alerts - quiet == set(), "alerts no promtool case sees quiet"
    assert (firing | quiet) - alerts == set(), "promtool cases of alerts the rules do not have"


def test_every_alert_has_a_severity_a_summary_and_a_description(default_rules):
    for name, rule in alerts_of(default_rules / "rules.yml").items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["for"] == DEFAULTS["observability_alert_for"][name], name


def test_other_values_are_rendered_and_pass_the_check(lab_promtool, tmp_path):
    work = render_rules(tmp_path, **OTHER_VALUES)
    proc = lab_promtool(work, "check", "rules", "/w/rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = alerts_of(work / "rules.yml")
    assert {name: rule["for"] for name, rule in alerts.items()} == OTHER_VALUES["observability_alert_for"]
    assert alerts["TmpfsUsageHigh"]["expr"].endswith("> 0.5")
    assert alerts["TmpfsUsageCritical"]["expr"].endswith("> 0.9")
    assert "More than 50% " in alerts["TmpfsUsageHigh"]["annotations"]["description"]
    assert "More than 90% " in alerts["TmpfsUsageCritical"]["annotations"]["description"]
    assert "48 * 3600" in alerts["HostDiskFilling"]["expr"]
    assert "within 48 hours" in alerts["HostDiskFilling"]["annotations"]["description"]
    assert alerts["HostMemoryPressure"]["expr"].endswith("< 0.2")
    assert "(/srv/audit/rotor.jsonl)" in alerts["RotationFailed"]["annotations"]["description"]
    # The promtool tests are written for the defaults: they notice the other thresholds.
    proc = lab_promtool(work, "test", "rules", *PROMTOOL_FILES)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "alertname: TmpfsUsageHigh" in proc.stderr, proc.stdout + proc.stderr
