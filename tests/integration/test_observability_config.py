"""The observability role's configuration files, checked by each component's own tool.

Rendered by Ansible itself (the role's defaults and vars, as in test_observability_rules.py), then
checked in one-shot containers of the lab's images: prometheus.yml with every job and the rules
(`promtool check config`), alertmanager.yml with both receiver types, routes and the inhibit rule
(`amtool check-config`), the blackbox exporter's modules (`blackbox_exporter --config.check`).
The live converge (test_observability.py) runs them too, but only with the lab's settings.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._observability import ALERTS
from conftest import _docker_answers
from test_observability_rules import render_observability

pytestmark = pytest.mark.quick

SETTINGS = {
    "inventory_hostname": "vps1.example.com",
    "observability_probe_names": ["www.example.com", "api.example.com"],
    "observability_probe_ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "observability_grafana_enabled": True,
    "observability_loki_enabled": True,
    "observability_alert_receivers": [
        {"name": "ops-mail", "type": "email", "to": "ops@example.com", "from": "am@example.com",
         "smarthost": "smtp.example.com:587", "auth_username": "am@example.com", "auth_password": "not-in-the-file"},
        {"name": "ops-hook", "type": "webhook", "url": "https://hooks.example.com/a", "bearer_token": "not-either"},
    ],
    "observability_alert_routes": [{"receiver": "ops-hook", "matchers": ['severity="critical"'], "continue": True}],
}
TEMPLATES = ["prometheus/prometheus.yml.j2", "prometheus/rules.yml.j2", "alertmanager/alertmanager.yml.j2",
             "blackbox/config.yml.j2"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("observability-config")
    for sub in ("prometheus", "alertmanager", "blackbox"):
        (out / sub).mkdir()
    render_observability(out, TEMPLATES, **SETTINGS)
    (out / "prometheus" / "rules").mkdir()
    (out / "prometheus" / "rules.yml").rename(out / "prometheus" / "rules" / "rotor.yml")
    # The receivers' secrets are files next to alertmanager.yml on the VPS.
    (out / "alertmanager" / "secrets").mkdir()
    for name in ("ops-mail", "ops-hook"):
        (out / "alertmanager" / "secrets" / name).write_text("secret")
    for path in out.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    out.chmod(0o755)
    return out


def check(image: str, mount: Path, target: str, *args: str) -> subprocess.CompletedProcess:
    if not _docker_answers():
        pytest.fail("no Docker engine answers; run the tests through `make test`, which starts the lab")
    return subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", "%s:%s:ro" % (mount, target), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_prometheus_yml_passes_promtool_with_every_job(rendered):
    text = (rendered / "prometheus" / "prometheus.yml").read_text()
    for job in ("prometheus", "alertmanager", "node", "cadvisor", "blackbox", "postgres", "pgbouncer", "grafana",
                "loki", "alloy", "haproxy", "probe_https"):
        assert "job_name: %s\n" % job in text, job
    proc = check("rotor-lab/prometheus:latest", rendered / "prometheus", "/etc/prometheus",
                 "--entrypoint", "promtool", "rotor-lab/prometheus:latest", "check", "config",
                 "/etc/prometheus/prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "%d rules found" % len(ALERTS) in proc.stdout, proc.stdout


def test_alertmanager_yml_passes_amtool_and_holds_no_secret(rendered):
    text = (rendered / "alertmanager" / "alertmanager.yml").read_text()
    assert "not-in-the-file" not in text and "not-either" not in text
    assert "auth_password_file: /etc/alertmanager/secrets/ops-mail" in text
    assert "credentials_file: /etc/alertmanager/secrets/ops-hook" in text
    proc = check("rotor-lab/alertmanager:latest", rendered / "alertmanager", "/etc/alertmanager",
                 "--entrypoint", "amtool", "rotor-lab/alertmanager:latest", "check-config",
                 "/etc/alertmanager/alertmanager.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Found:\n - global config\n - route\n - 1 inhibit rules\n - 2 receivers" in proc.stdout, proc.stdout


def test_the_blackbox_modules_pass_its_check(rendered):
    assert "ca_file: /etc/blackbox_exporter/ca.pem" in (rendered / "blackbox" / "config.yml").read_text()
    proc = check("rotor-lab/blackbox-exporter:latest", rendered / "blackbox", "/etc/blackbox_exporter",
                 "rotor-lab/blackbox-exporter:latest", "--config.check", "--config.file=/etc/blackbox_exporter/config.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
