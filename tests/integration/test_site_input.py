"""playbooks/site.yml refuses bad input before it changes anything, and check mode changes nothing."""

from __future__ import annotations

import pytest
import yaml
from batch import run_cases
from conftest import ROOT

pytestmark = pytest.mark.quick

# The settings without a default (secrets a real inventory takes from its vault), for cases whose
# rule is checked after the roles that need them.
SECRETS = {"haproxy_stats_password": "check-mode-only", "postgres_superuser_password": "check-mode-only",
           "pgbouncer_admin_password": "check-mode-only", "pgbouncer_stats_password": "check-mode-only",
           "observability_postgres_monitor_password": "check-mode-only",
           "observability_grafana_admin_password": "check-mode-only", "socket_proxy_token": "check-mode-only-token-0123456789abcdef"}

# (case id, inventory variables, words the error must contain)
BAD_INPUT = [
    (
        "tmpfs-size-unit",
        {"networks_tmpfs_volumes": [{"name": "scratch", "size": "10X"}]},
        ["networks_tmpfs_volumes[0].size", "10X", "k, m or g suffix"],
    ),
    (
        "tmpfs-size-zero",
        {"networks_tmpfs_volumes": [{"name": "scratch", "size": "0m"}]},
        ["networks_tmpfs_volumes[0].size", "positive whole number"],
    ),
    (
        "tmpfs-mode",
        {"networks_tmpfs_volumes": [{"name": "scratch", "size": "8m", "mode": "rwx"}]},
        ["networks_tmpfs_volumes[0].mode", "octal"],
    ),
    (
        "unknown-network-option",
        {"networks_list": [{"name": "edge", "colour": "blue"}]},
        ["networks_list.colour", "Supported parameters include"],
    ),
    (
        "duplicate-network-name",
        {"networks_list": [{"name": "edge"}, {"name": "app"}, {"name": "edge", "internal": True}]},
        ["networks_list[2].name", "'edge'", "already used by networks_list[0]", "unique"],
    ),
    (
        "network-name-characters",
        {"networks_list": [{"name": "edge net"}]},
        ["networks_list[0].name", "'edge net'", "only letters, digits"],
    ),
    (
        "overlapping-subnets",
        {"networks_list": [{"name": "a", "subnet": "10.10.0.0/16"}, {"name": "b", "subnet": "10.10.5.0/24"}]},
        ["networks_list[1].subnet", "overlaps networks_list[0].subnet"],
    ),
    (
        "gateway-outside-subnet",
        {"networks_list": [{"name": "a", "subnet": "10.20.0.0/24", "gateway": "10.21.0.1"}]},
        ["networks_list[0].gateway", "outside the subnet"],
    ),
    (
        "wrong-type",
        {"docker_host_live_restore": "sometimes"},
        ["docker_host_live_restore", "bool"],
    ),
    (
        "mirror-not-a-url",
        {"docker_host_registry_mirrors": ["mirror.internal:5000"]},
        ["docker_host_registry_mirrors", "mirror.internal:5000", "http:// or https:// URL"],
    ),
    (
        "certbot-invalid-domain",
        dict(SECRETS, certbot_sites=[{"domains": ["web_site.example.com"]}]),
        ["certbot_sites[0].domains[0]", "'web_site.example.com'", "lowercase DNS name"],
    ),
    (
        "certbot-wildcard-http-01",
        dict(SECRETS, certbot_sites=[{"domains": ["*.example.com"]}]),
        ["certbot_sites[0].domains[0]", "wildcard", "dns-01 only"],
    ),
    (
        "certbot-no-domains",
        dict(SECRETS, certbot_sites=[{"domains": []}]),
        ["certbot_sites[0].domains", "at least one domain is required"],
    ),
    (
        "certbot-email-without-at",
        dict(SECRETS, certbot_email="admin.example.com"),
        ["certbot_email", "'admin.example.com'", "an address such as"],
    ),
    (
        "observability-retention-unit",
        dict(SECRETS, observability_retention_time="15x"),
        ["observability_retention_time", "'15x'", "Prometheus duration"],
    ),
    (
        "observability-unknown-receiver-type",
        dict(SECRETS, observability_alert_receivers=[{"name": "ops", "type": "pager", "url": "https://x.example/"}]),
        ["observability_alert_receivers[0].type", "'pager'", "one of email, webhook"],
    ),
    (
        "docker-repo-without-url",
        {"docker_host_source": "docker"},
        ["docker_host_docker_repo_url", "required when docker_host_source is \"docker\""],
    ),
]


@pytest.fixture(scope="module")
def bad_input(fresh_vps, tmp_path_factory):
    """Every BAD_INPUT case against the fresh VPS, in as few runs as keep each case's result its own
    (tests/integration/batch.py), with the VPS's state before and after."""
    before = fresh_vps.snapshot()
    cases = {case: variables for case, variables, _words in BAD_INPUT}
    results = run_cases(fresh_vps, ROOT / "playbooks" / "site.yml", cases, tmp_path_factory.mktemp("cases"),
                        timeout=300)
    return before, results, fresh_vps.snapshot()


@pytest.mark.parametrize("case,variables,words", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_fails_before_any_change(bad_input, case, variables, words):
    before, results, after = bad_input
    result = results[case]
    assert result.failed, result.output[-2000:]
    for word in words:
        assert word in result.message, "%r not in the error:\n%s" % (word, result.message)
    assert result.changed == 0
    assert result.plays == ["Check the inventory"], "a role ran after the input check failed: %s" % result.plays
    assert after == before


def test_check_mode_on_a_fresh_host_changes_nothing(fresh_vps, tmp_path):
    before = fresh_vps.snapshot()
    extra = tmp_path / "required.yml"
    extra.write_text(yaml.safe_dump(SECRETS))
    run = fresh_vps.playbook("site.yml", "--check", "--diff", extra_vars=extra)
    assert run.rc == 0, run.output[-3000:]
    recap = run.recap(fresh_vps.name)
    assert recap["failed"] == 0
    assert recap["changed"] > 0, "check mode on a fresh host must report the install"
    assert "would be created once it is installed" in run.output
    assert '"live-restore": true' in run.output, "the diff shows the daemon.json to be written"
    assert fresh_vps.sh("command -v dockerd").returncode != 0, "check mode installed Docker"
    assert fresh_vps.snapshot() == before
