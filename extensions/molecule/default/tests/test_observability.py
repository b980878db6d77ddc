"""Observability (rotor.vps.observability) on a converged VPS: node-exporter exports the host-side
collector's tmpfs and container metrics and the rotation schedule; Prometheus's admin port asks for
HAProxy's login (and answers 503 behind it, Prometheus being off here); the audit log is rotated.

converge.yml runs node-exporter and the collector on both distributions (the integration tests run
every component on Debian 13).
"""

from __future__ import annotations

import json

LOGIN = "admin:lab-stats-password"


def node_metrics(host) -> str:
    """node-exporter's page, from the host through its address on the observability network."""
    inspect = json.loads(host.check_output("docker inspect rotor-node-exporter"))[0]
    address = inspect["NetworkSettings"]["Networks"]["observability"]["IPAddress"]
    return host.check_output("curl -fsS http://%s:9100/metrics" % address)


def test_the_admin_port_needs_the_login(host):
    status = "curl -s -o /dev/null -w '%%{http_code}' %s http://127.0.0.1:9090/"
    assert host.check_output(status % "") == "401"
    assert host.check_output(status % ("-u " + LOGIN)) == "503", "Prometheus is off in this scenario"


def test_the_collector_measures_the_web_containers_tmpfs(host):
    assert host.check_output("systemctl is-active rotor-container-metrics.timer") == "active"
    metrics = node_metrics(host)
    web = [line for line in metrics.splitlines() if line.startswith('rotor_tmpfs_size_bytes{container="web-')
           and 'mount="/tmp"' in line]
    assert web and all(line.endswith(" 1.6777216e+07") for line in web), web
    assert 'rotor_container_unhealthy{container="rotor-haproxy"} 0' in metrics
    assert "node_textfile_scrape_error 0" in metrics


def test_the_rotation_schedule_is_exported(host):
    assert 'rotor_rotation_interval_seconds{service="web"} 300' in node_metrics(host)


def test_the_audit_log_is_rotated(host):
    assert host.run("logrotate --debug /etc/logrotate.d/rotor-audit").rc == 0
    assert "/var/log/rotor/rotation.jsonl" in host.check_output("cat /etc/logrotate.d/rotor-audit")
