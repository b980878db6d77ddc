from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._observability import (
    ALERTS,
    observability_input_errors,
    prom_duration_errors,
)

ROLE = Path(__file__).resolve().parents[4] / "roles" / "observability"


@pytest.fixture
def settings() -> dict:
    """The role's defaults with the required secrets and the derived values set: valid as they are."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(observability_postgres_monitor_password="s3cret", observability_pgbouncer_stats_password="s3cret",
                  observability_grafana_admin_password="s3cret", observability_probe_names=["web.example.com"])
    return values


def test_defaults_with_their_secrets_are_valid(settings):
    assert observability_input_errors(settings) == []


def test_the_alerts_are_those_the_defaults_time():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert sorted(defaults["observability_alert_for"]) == sorted(ALERTS)


@pytest.mark.parametrize("value", ["15d", "1h30m", "500ms", "2w", "1y", "30s"])
def test_prometheus_durations(value):
    assert prom_duration_errors(value, "d") == []


@pytest.mark.parametrize("value", ["15x", "1.5h", "30m1h", "", "d15", None, True, "15 d"])
def test_not_prometheus_durations(value):
    assert prom_duration_errors(value, "d")[0].startswith("d: %r must be a Prometheus duration" % (value,))


def test_zero_only_where_allowed():
    assert prom_duration_errors("0s", "d") == ["d: '0s' must be longer than zero"]
    assert prom_duration_errors("0s", "d", allow_zero=True) == []


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"observability_retention_time": "15x"}, ["observability_retention_time: '15x' must be a Prometheus duration"]),
        ({"observability_retention_size": "1G"}, ["observability_retention_size: '1G' must be a whole number and a unit"]),
        ({"observability_scrape_interval": "0s"}, ["observability_scrape_interval: '0s' must be longer than zero"]),
        ({"observability_alert_receivers": [{"name": "ops", "type": "pager"}]},
         ["observability_alert_receivers[0].type: 'pager' is not a receiver type this role writes; use one of email, "
          "webhook"]),
        ({"observability_alert_receivers": [{"name": "ops", "type": "webhook"}]},
         ["observability_alert_receivers[0].url: required for a webhook receiver"]),
        ({"observability_alert_receivers": [{"name": "ops", "type": "webhook", "url": "ftp://x"}]},
         ["observability_alert_receivers[0].url: 'ftp://x' must be an http:// or https:// URL"]),
        ({"observability_alert_receivers": [{"name": "a", "type": "webhook", "url": "https://x/"},
                                            {"name": "a", "type": "webhook", "url": "https://y/"}]},
         ["observability_alert_receivers[1].name: 'a' is listed twice"]),
        ({"observability_alert_receivers": [{"name": "m", "type": "email", "to": "ops@x.org", "from": "am@x.org",
                                             "smarthost": "smtp.x.org", "auth_username": "am"}]},
         ["observability_alert_receivers[0].smarthost: 'smtp.x.org' must be host:port",
          "observability_alert_receivers[0]: auth_username and auth_password go together"]),
        ({"observability_alert_receivers": [{"name": "m", "type": "webhook", "url": "https://x/", "colour": "red"}]},
         ["observability_alert_receivers[0]: colour not known for a webhook receiver"]),
        ({"observability_alert_routes": [{"receiver": "nobody", "matchers": ['severity="critical"']}]},
         ["observability_alert_routes[0].receiver: 'nobody' is not a receiver"]),
        ({"observability_alert_receivers": [{"name": "h", "type": "webhook", "url": "https://x/"}],
          "observability_alert_routes": [{"receiver": "h", "matchers": ["severity=critical"]}]},
         ["observability_alert_routes[0].matchers[0]: 'severity=critical' must be label, operator"]),
        ({"observability_alert_for": {"TmpfsUsageHigh": "5m"}}, ["observability_alert_for: TmpfsUsageCritical"]),
        ({"observability_tmpfs_warning_ratio": 0.95, "observability_tmpfs_critical_ratio": 0.9},
         ["observability_tmpfs_warning_ratio: 0.95 must be below observability_tmpfs_critical_ratio (0.9)"]),
        ({"observability_tmpfs_critical_ratio": 95}, ["observability_tmpfs_critical_ratio: 95 must be a number above 0"]),
        ({"observability_probe_names": ["Web.example.com"]}, ["observability_probe_names[0]: 'Web.example.com'"]),
        ({"observability_probe_address": "rotor-haproxy"}, ["observability_probe_address: 'rotor-haproxy' must be"]),
        ({"observability_memory": {"prometheus": "1g"}}, ["observability_memory: must give a limit for each of"]),
        ({"observability_grafana_admin_password": ""},
         ["observability_grafana_admin_password: required while observability_grafana_enabled is true"]),
        ({"observability_grafana_admin_password": "", "observability_grafana_enabled": False}, []),
        ({"observability_docker_api_token": ""},
         ["observability_docker_api_token: required while observability_alloy_enabled is true"]),
        ({"observability_docker_api_token": "", "observability_alloy_enabled": False}, []),
        ({"observability_loki_enabled": "yes"}, ["observability_loki_enabled: must be true or false"]),
        ({"observability_collector_interval": "1 fortnight"}, ["observability_collector_interval:"]),
    ],
)
def test_settings_rules(settings, overrides, expected):
    settings.update(overrides)
    errors = observability_input_errors(settings)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected):
        assert error.startswith(start), (error, start)


def test_secrets_never_appear_in_messages(settings):
    settings["observability_alert_receivers"] = [{"name": "m", "type": "email", "to": "ops@x.org", "from": "am@x.org",
                                                  "smarthost": "smtp", "auth_password": "hunter2"}]
    assert not any("hunter2" in e for e in observability_input_errors(settings))
