"""The Docker API broker's endpoint expressions and input rules.

The request table is the integration test's (tests/integration/files/docker_api_probe.py): every
request whose method, path and query alone decide must be refused or let through by the Python
model of the rules exactly as the real broker must answer it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._socket_proxy import (
    CADVISOR_ENDPOINTS,
    DEFAULT_ENDPOINTS,
    ENDPOINTS,
    allows,
    endpoint_rules,
    path_regex,
    query_regex,
    socket_proxy_input_errors,
)

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "socket_proxy"
TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef"
SPEC = importlib.util.spec_from_file_location("docker_api_probe", ROOT / "tests" / "integration" / "files" / "docker_api_probe.py")
PROBE = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(PROBE)
MODEL_CASES = [case for case in PROBE.cases(TOKEN, "rotor-docker-api", "docker_api")
               + PROBE.allowed_cases(TOKEN, "rotor-docker-api", "docker_api", 1700000000) if case["model"]]
CADVISOR_ALLOWED, CADVISOR_DENIED = PROBE.cadvisor_cases("0123abcd")


@pytest.fixture
def settings() -> dict:
    """The role's defaults with a token: valid as they are."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values["socket_proxy_token"] = TOKEN
    return values


@pytest.mark.parametrize("case", MODEL_CASES, ids=[case["id"] for case in MODEL_CASES])
def test_the_model_answers_each_request_as_the_broker_must(case):
    method, target = case["model"]
    assert allows(DEFAULT_ENDPOINTS, method, target) is (case["expect"] == "allow")


@pytest.mark.parametrize("case", CADVISOR_ALLOWED + CADVISOR_DENIED, ids=[c["id"] for c in CADVISOR_ALLOWED + CADVISOR_DENIED])
def test_cadvisor_gets_its_four_endpoints_only(case):
    method, target = case["model"]
    assert allows(CADVISOR_ENDPOINTS, method, target) is (case["expect"] == "allow")


def test_the_table_is_large_enough():
    denied = [case for case in PROBE.cases(TOKEN, "c", "n") if case["expect"] == "deny"]
    assert len(denied) + len(CADVISOR_DENIED) + len(CADVISOR_ALLOWED) >= 200


@pytest.mark.parametrize("path, endpoint, matches", [
    ("/containers/abc/json", "container", True),
    ("/v1.24/containers/0123abcd/json", "container", True),
    ("/v1.41/containers/my.app_1-x/json", "container", True),
    ("/containers/../json", "container", False),
    ("/containers/a/b/json", "container", False),
    ("/containers//json", "container", False),
    ("/containers/abc/json/", "container", False),
    ("/v1/containers/abc/json", "container", False),
    ("/v1.123/containers/abc/json", "container", False),
    ("x/containers/abc/json", "container", False),
    ("/_ping", "ping", True),
    ("/_pingx", "ping", False),
    ("/x_ping", "ping", False),
    ("/networks/docker_api", "network", True),
    ("/networks/create/x", "network", False),
])
def test_paths_are_anchored_and_names_strict(path, endpoint, matches):
    assert bool(re.search(path_regex(endpoint), path)) is matches


@pytest.mark.parametrize("query, matches", [
    ("all=1", True),
    ("all=1&limit=5&size=0&filters=%7B%22name%22%3A%5B%22x%22%5D%7D", True),
    ("all=1&all=0", True),
    ("", False),
    ("all", False),
    ("all=1&", False),
    ("&all=1", False),
    ("all=1&exec=1", False),
    ("all=1;x", False),
    ("filters={}", False),
    ("all=a b", False),
])
def test_query_strings_take_the_endpoints_parameters_only(query, matches):
    assert bool(re.search(query_regex("containers"), query)) is matches


def test_endpoints_without_parameters_take_no_query_string():
    assert [name for name in ENDPOINTS if query_regex(name) is None] == ["ping", "version", "info"]


def test_rules_for_the_template():
    rules = endpoint_rules(["ping", "events"])
    assert [rule["name"] for rule in rules] == ["ping", "events"]
    assert rules[0]["query"] is None and rules[1]["query"].startswith("^(since|until|filters)=")
    assert [rule["name"] for rule in endpoint_rules("cadvisor")] == list(CADVISOR_ENDPOINTS)
    # HAProxy reads them between single quotes: none may hold one.
    assert not any("'" in (rule["path"] + (rule["query"] or "")) for rule in endpoint_rules(list(ENDPOINTS)))


def test_defaults_with_a_token_are_valid(settings):
    assert socket_proxy_input_errors(settings) == []


def test_the_defaults_list_the_default_endpoints(settings):
    assert tuple(settings["socket_proxy_endpoints"]) == DEFAULT_ENDPOINTS


@pytest.mark.parametrize("changes, message", [
    ({"socket_proxy_token": ""}, "socket_proxy_token: required (keep it in the vault)"),
    ({"socket_proxy_token": "short"}, "socket_proxy_token: must be at least 32"),
    ({"socket_proxy_token": TOKEN + "\nBearer x"}, "socket_proxy_token: must be at least 32"),
    ({"socket_proxy_token": TOKEN + " x"}, "socket_proxy_token: must be at least 32"),
    ({"socket_proxy_token": 12345}, "socket_proxy_token: required"),
    ({"socket_proxy_docker_host": "tcp://127.0.0.1:2375"}, "socket_proxy_docker_host: 'tcp://127.0.0.1:2375' must be"),
    ({"socket_proxy_network": "bad name"}, "socket_proxy_network: 'bad name' must start"),
    ({"socket_proxy_cadvisor_network": "docker_api"}, "socket_proxy_cadvisor_network: 'docker_api' is already"),
    ({"socket_proxy_port": 2376}, "must differ"),
    ({"socket_proxy_port": 80}, "socket_proxy_port: 80 must be a whole number from 1024"),
    ({"socket_proxy_endpoints": ["ping", "exec"]}, "socket_proxy_endpoints[1]: 'exec' is not an endpoint"),
    ({"socket_proxy_endpoints": ["ping", "ping"]}, "socket_proxy_endpoints: ping listed more than once"),
    ({"socket_proxy_endpoints": []}, "socket_proxy_endpoints: must be a non-empty list"),
    ({"socket_proxy_cadvisor_enabled": "yes"}, "socket_proxy_cadvisor_enabled: must be true or false"),
    ({"socket_proxy_stream_timeout": "1 hour"}, "socket_proxy_stream_timeout: '1 hour' must be an HAProxy time"),
    ({"socket_proxy_memory": "1x"}, "socket_proxy_memory: '1x' must be"),
    ({"socket_proxy_cpus": 0}, "socket_proxy_cpus: 0 must be a number greater than 0"),
    ({"socket_proxy_pids_limit": 2}, "socket_proxy_pids_limit: 2 must be a whole number of at least 8"),
])
def test_bad_input_is_named(settings, changes, message):
    settings.update(changes)
    errors = socket_proxy_input_errors(settings)
    assert any(message in error for error in errors), errors
    assert not any(TOKEN in error for error in errors), "a message repeats the token"
