"""Observability (rotor.vps.observability) on a converged VPS: Prometheus scrapes node-exporter, which
exports the host-side collector's tmpfs and container metrics and the rotation schedule, behind
HAProxy's admin port and its login; the audit log is rotated.

converge.yml runs Prometheus, node-exporter and the collector on both distributions (the
integration tests run every component on Debian 13).
"""

from __future__ import annotations

import json

import pytest

LOGIN = "admin:lab-stats-password"


def prometheus(host, path: str) -> dict:
    return json.loads(host.check_output("curl -fsS -u %s http://127.0.0.1:9090%s" % (LOGIN, path)))


def test_prometheus_needs_the_login(host):
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/") == "401"


@pytest.mark.parametrize("job", ["prometheus", "node", "haproxy"])
def test_targets_up(host, job):
    targets = [t for t in prometheus(host, "/api/v1/targets")["data"]["activeTargets"] if t["labels"]["job"] == job]
    assert targets and all(t["health"] == "up" for t in targets), targets


def test_the_collector_measures_the_web_containers_tmpfs(host):
    assert host.check_output("systemctl is-active rotor-container-metrics.timer") == "active"
    text = host.check_output("cat /var/lib/rotor/metrics/containers.prom")
    web = [line for line in text.splitlines() if line.startswith('rotor_tmpfs_size_bytes{container="web-')
           and 'mount="/tmp"' in line]
    assert web and all(line.endswith(" 16777216") for line in web), text
    found = prometheus(host, "/api/v1/query?query=rotor_container_unhealthy")["data"]["result"]
    assert {r["metric"]["container"] for r in found} >= {"rotor-haproxy", "rotor-prometheus"}


def test_the_rotation_schedule_is_exported(host):
    found = prometheus(host, "/api/v1/query?query=rotor_rotation_interval_seconds")["data"]["result"]
    assert [(r["metric"]["service"], r["value"][1]) for r in found] == [("web", "300")]


def test_the_audit_log_is_rotated(host):
    assert host.run("logrotate --debug /etc/logrotate.d/rotor-audit").rc == 0
    assert "/var/log/rotor/rotation.jsonl" in host.check_output("cat /etc/logrotate.d/rotor-audit")
