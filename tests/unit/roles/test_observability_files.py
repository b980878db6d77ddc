"""Grafana's, Loki's and Alloy's configuration as the observability role renders it, and its dashboards.

None of the three runs in the lab, so their files are checked here: they parse, every address comes
from the role's table of services, and every name one file gives another (data source uids, Alloy
components) is declared where it is used.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._promql import dashboard_queries, metric_names

ROLE = Path(__file__).resolve().parents[3] / "roles" / "observability"
SERVICES = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__observability_services"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))
TEMPLATES = ["grafana/grafana.ini.j2", "grafana/datasources.yml.j2", "grafana/dashboards.yml.j2",
             "loki/loki.yml.j2", "alloy/config.alloy.j2"]
# The second render: Loki and Alertmanager off, and values that need quoting or escaping.
OTHER = dict(observability_loki_enabled=False, observability_alertmanager_enabled=False,
             observability_loki_retention="48h", observability_grafana_admin_password="pw-3f9a-not-in-files",
             haproxy_container_name="edge.proxy", observability_audit_log='/srv/rotor log/"audit".jsonl')
# The data source each uid stands for, and the service it reaches.
DATASOURCES = {"rotor-prometheus": "prometheus", "rotor-alertmanager": "alertmanager", "rotor-loki": "loki"}
# Every metric the dashboards may read: what the role's exporters and the rotor.vps textfiles export.
METRICS = {
    "up", "node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_load1", "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total", "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
    "rotor_tmpfs_used_bytes", "rotor_tmpfs_size_bytes", "rotor_container_restart_count", "rotor_container_unhealthy",
    "haproxy_frontend_http_requests_total", "haproxy_backend_http_responses_total", "haproxy_backend_active_servers",
    "haproxy_server_status", "haproxy_backend_current_queue", "haproxy_backend_response_time_average_seconds",
    "rotor_rotation_last_success_timestamp_seconds", "rotor_rotation_interval_seconds",
    "rotor_rotation_replacements_total", "rotor_rotation_failures_total", "rotor_rotation_last_duration_seconds",
    "rotor_rotation_sessions_cut_total", "probe_success", "probe_duration_seconds", "probe_http_status_code",
    "probe_ssl_earliest_cert_expiry", "pgbouncer_pools_client_active_connections",
    "pgbouncer_pools_client_waiting_connections", "pgbouncer_pools_server_active_connections", "pgbouncer_up",
    "pgbouncer_stats_queries_pooled_total", "pgbouncer_stats_queries_duration_seconds_total", "pg_up",
    "pg_stat_database_numbackends", "pg_stat_database_xact_commit", "pg_stat_database_blks_hit",
    "pg_database_size_bytes", "rotor_certificate_not_after_timestamp_seconds",
    "rotor_certificate_not_before_timestamp_seconds", "rotor_certificate_failed_orders",
}
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge"}
# The Alloy components the configuration uses, and the top-level blocks that are not components.
ALLOY_COMPONENTS = {"discovery.docker", "discovery.relabel", "loki.source.docker", "local.file_match",
                    "loki.source.file", "loki.process", "loki.write"}
ALLOY_BLOCKS = {"logging"}
ALLOY_EXPORTS = ("receiver", "targets", "output", "rules")
# Components that only send (their forward_to), so nothing refers to them.
ALLOY_SOURCES = {"loki.source.docker", "loki.source.file"}


def _url(service: str) -> str:
    return "http://%s:%s" % (SERVICES[service]["container"], SERVICES[service]["port"])


@pytest.fixture(name="default", scope="module")
def _default(render_observability_module) -> Path:
    return render_observability_module(TEMPLATES)


@pytest.fixture(name="other", scope="module")
def _other(render_observability_module) -> Path:
    return render_observability_module(TEMPLATES, **OTHER)


def _yaml(out: Path, name: str) -> dict:
    return yaml.safe_load((out / name).read_text())


def _provisioned(out: Path) -> dict:
    return {source["uid"]: source for source in _yaml(out, "grafana/datasources.yml")["datasources"]}


# Grafana ---------------------------------------------------------------------------------------------

def test_grafana_ini_is_hardened_and_reads_the_password_from_a_file(default):
    text = (default / "grafana/grafana.ini").read_text()
    assert text.startswith(";\n; Ansible managed\n;\n")
    ini = configparser.ConfigParser(interpolation=None, strict=True)
    ini.read_string(text)
    expected = {
        ("paths", "data"): "/var/lib/grafana",
        ("paths", "provisioning"): "/etc/grafana/provisioning",
        ("server", "http_port"): str(SERVICES["grafana"]["port"]),
        ("security", "admin_user"): DEFAULTS["observability_grafana_admin_user"],
        ("security", "admin_password"): "$__file{/etc/grafana/secrets/admin_password}",
        ("security", "disable_gravatar"): "true",
        ("users", "allow_sign_up"): "false",
        ("users", "allow_org_create"): "false",
        ("auth.anonymous", "enabled"): "false",
        ("analytics", "reporting_enabled"): "false",
        ("analytics", "check_for_updates"): "false",
        ("analytics", "check_for_plugin_updates"): "false",
        ("snapshots", "external_enabled"): "false",
        ("log", "mode"): "console",
    }
    assert {key: ini.get(*key) for key in expected} == expected


def test_no_file_holds_the_admin_password(other):
    password = OTHER["observability_grafana_admin_password"]
    leaks = [str(path) for path in other.rglob("*") if path.is_file() and password in path.read_text()]
    assert not leaks


def test_datasources_reach_the_services_by_their_fixed_uids(default):
    provisioning = _yaml(default, "grafana/datasources.yml")
    assert provisioning["apiVersion"] == 1 and "deleteDatasources" not in provisioning
    uids = [source["uid"] for source in provisioning["datasources"]]
    assert sorted(uids) == sorted(DATASOURCES) and len(set(uids)) == len(uids)
    for source in provisioning["datasources"]:
        assert source["url"] == _url(DATASOURCES[source["uid"]]), source["uid"]
        assert source["type"] == DATASOURCES[source["uid"]]
    assert [source["uid"] for source in provisioning["datasources"] if source.get("isDefault")] == ["rotor-prometheus"]
    assert provisioning["datasources"][0]["jsonData"]["alertmanagerUid"] == "rotor-alertmanager"
    assert _provisioned(default)["rotor-alertmanager"]["jsonData"]["implementation"] == "prometheus"


def test_datasources_of_components_switched_off_are_deleted(other):
    provisioning = _yaml(other, "grafana/datasources.yml")
    assert list(_provisioned(other)) == ["rotor-prometheus"]
    assert "alertmanagerUid" not in provisioning["datasources"][0]["jsonData"]
    assert sorted(source["name"] for source in provisioning["deleteDatasources"]) == ["Alertmanager", "Loki"]


def test_dashboard_provider_reads_the_dashboards_directory(default):
    (provider,) = _yaml(default, "grafana/dashboards.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (provider["folder"], provider["type"], provider["allowUiUpdates"]) == ("rotor.vps", "file", False)


# Dashboards ------------------------------------------------------------------------------------------

def _dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def _all_panels(panels: list) -> list:
    return [found for panel in panels for found in [panel] + _all_panels(panel.get("panels", []))]


def test_there_are_six_dashboards_with_unique_uids_and_titles():
    dashboards = [_dashboard(path) for path in DASHBOARDS]
    assert len(dashboards) == 6
    for key in ("uid", "title"):
        values = [dashboard[key] for dashboard in dashboards]
        assert len(set(values)) == len(values), key


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_dashboard_model(path):
    dashboard = _dashboard(path)
    assert dashboard["uid"].startswith("rotor-") and dashboard["schemaVersion"] == 39
    assert dashboard["tags"] == ["rotor.vps"] and dashboard["refresh"] and dashboard["time"]["from"]
    assert dashboard["templating"]["list"] == []
    panels = _all_panels(dashboard["panels"])
    assert 6 <= len(panels) <= 10
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_dashboard_panels_are_placed_without_overlap(path):
    cells = {}
    for panel in _all_panels(_dashboard(path)["panels"]):
        grid = panel["gridPos"]
        assert {key: type(grid[key]) for key in "xywh"} == dict.fromkeys("xywh", int), panel["title"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, "%s overlaps %s" % (panel["title"], cells[(x, y)])
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_dashboard_queries_use_provisioned_datasources_and_known_metrics(path, default):
    provisioned = _provisioned(default)
    dashboard = _dashboard(path)
    queries = dashboard_queries(dashboard)
    assert queries
    for title, uid, expr in queries:
        assert uid in provisioned, (title, uid)
        if uid != "rotor-prometheus":
            continue
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= METRICS, (title, sorted(names - METRICS))
    for panel in _all_panels(dashboard["panels"]):
        loki = panel["datasource"]["uid"] == "rotor-loki"
        assert panel["type"] in ({"logs"} if loki else PANEL_TYPES), panel["title"]


# Loki ------------------------------------------------------------------------------------------------

def _directories(config, where=""):
    """Every setting of a directory in Loki's configuration: ``(where, path)``."""
    if isinstance(config, dict):
        for key, value in config.items():
            path = "%s.%s" % (where, key) if where else key
            if isinstance(value, str) and (key.endswith(("directory", "_dir", "prefix", "location")) or key == "dir"):
                yield path, value
            else:
                yield from _directories(value, path)
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield from _directories(value, "%s[%d]" % (where, index))


def test_loki_keeps_everything_under_loki_with_retention(default):
    loki = _yaml(default, "loki/loki.yml")
    assert loki["auth_enabled"] is False
    assert loki["server"]["http_listen_port"] == SERVICES["loki"]["port"]
    (schema,) = loki["schema_config"]["configs"]
    assert (str(schema["from"]), schema["store"], schema["object_store"], schema["schema"]) == (
        "2024-01-01", "tsdb", "filesystem", "v13")
    compactor = loki["compactor"]
    assert compactor["retention_enabled"] is True and compactor["delete_request_store"] == "filesystem"
    assert loki["limits_config"]["retention_period"] == DEFAULTS["observability_loki_retention"]
    assert loki["limits_config"]["reject_old_samples"] is True
    assert loki["analytics"]["reporting_enabled"] is False
    directories = dict(_directories(loki))
    assert "common.path_prefix" in directories and "compactor.working_directory" in directories
    assert {where: path for where, path in directories.items() if not path.startswith("/loki")} == {
        "schema_config.configs[0].index.prefix": "index_"}


def test_loki_retention_is_the_variable(other):
    assert _yaml(other, "loki/loki.yml")["limits_config"]["retention_period"] == "48h"


# Alloy -----------------------------------------------------------------------------------------------

_ALLOY_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<ident>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<punct>==|!=|<=|>=|&&|\|\||[{}\[\]()=,:+\-*/%<>!^?])
  | (?P<error>.)
""", re.VERBOSE | re.DOTALL)
_PAIRS = {"}": "{", "]": "[", ")": "("}


def _alloy_tokens(text: str) -> list[tuple[str, str]]:
    tokens = [(match.lastgroup, match.group()) for match in _ALLOY_TOKEN_RE.finditer(text)
              if match.lastgroup not in ("space", "comment")]
    assert [value for kind, value in tokens if kind == "error"] == [], "an unclosed string or a stray character"
    return tokens


def _alloy_blocks(tokens: list) -> list[tuple[str, str]]:
    """``(name, label)`` of every top-level block (label "" for a block without one)."""
    blocks, depth, stack = [], 0, []
    for index, (kind, text) in enumerate(tokens):
        if kind == "punct" and text in ("{", "[", "("):
            if text == "{" and depth == 0:
                if tokens[index - 1][0] == "string":
                    blocks.append((tokens[index - 2][1], json.loads(tokens[index - 1][1])))
                else:
                    blocks.append((tokens[index - 1][1], ""))
            stack.append(text)
            depth += 1
        elif kind == "punct" and text in _PAIRS:
            assert stack and stack.pop() == _PAIRS[text], "unbalanced %s" % text
            depth -= 1
    assert not stack, "unclosed %s" % stack
    return blocks


def _alloy_values(tokens: list, name: str) -> list[str]:
    """The strings assigned to ``name`` (an attribute, or a quoted key of an object)."""
    return [json.loads(tokens[index + 2][1]) for index in range(len(tokens) - 2)
            if tokens[index][1] in (name, json.dumps(name)) and tokens[index + 1][1] == "="
            and tokens[index + 2][0] == "string"]


@pytest.fixture(name="alloy", scope="module")
def _alloy(default) -> list:
    return _alloy_tokens((default / "alloy/config.alloy").read_text())


def test_alloy_declares_only_known_components_once_each(alloy, default):
    assert (default / "alloy/config.alloy").read_text().startswith("//\n// Ansible managed\n//\n")
    blocks = _alloy_blocks(alloy)
    components = [block for block in blocks if block[1]]
    assert {name for name, _label in components} == ALLOY_COMPONENTS
    assert len(set(components)) == len(components)
    assert {name for name, label in blocks if not label} == ALLOY_BLOCKS


def test_alloy_references_point_to_declared_components(alloy):
    declared = {block for block in _alloy_blocks(alloy) if block[1]}
    references = {tuple(text.rsplit(".", 2)) for kind, text in alloy
                  if kind == "ident" and text.endswith(ALLOY_EXPORTS) and text.count(".") >= 3}
    assert {(name, label) for name, label, _export in references} <= declared
    referenced = {name for name, _label, _export in references}
    assert referenced == ALLOY_COMPONENTS - ALLOY_SOURCES


def test_alloy_ships_to_loki_and_reads_the_audit_log(alloy):
    assert _alloy_values(alloy, "url") == [_url("loki") + "/loki/api/v1/push"]
    assert _alloy_values(alloy, "__path__") == [DEFAULTS["observability_audit_log"]]
    assert _alloy_values(alloy, "job") == ["containers", "rotor-audit"]
    assert _alloy_values(alloy, "replacement") == ["haproxy"]
    # Containers and their logs through the Docker API broker with its token, never the Docker socket.
    assert set(_alloy_values(alloy, "host")) == {"tcp://rotor-docker-api:2375"}
    assert _alloy_values(alloy, "bearer_token_file") == ["/run/secrets/rotor/docker_api_token"] * 2


def test_alloy_makes_only_the_service_of_audit_lines_a_label(alloy):
    start = alloy.index(("ident", "stage.labels"))
    end = alloy.index(("punct", "}"), alloy.index(("punct", "}"), start) + 1)
    assert {text for kind, text in alloy[start + 1:end] if kind == "ident"} == {"values", "service"}


@pytest.mark.parametrize("container,job", [("/edge.proxy", True), ("/edgeXproxy", False), ("/edge.proxy-2", False)])
def test_alloy_haproxy_job_matches_only_its_container(other, container, job):
    tokens = _alloy_tokens((other / "alloy/config.alloy").read_text())
    assert _alloy_values(tokens, "__path__") == [OTHER["observability_audit_log"]]
    regexes = _alloy_values(tokens, "regex")
    assert regexes[0] == "/(.*)"
    assert bool(re.fullmatch(regexes[1], container)) is job
