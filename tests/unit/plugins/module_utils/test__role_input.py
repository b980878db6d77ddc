from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._role_input import (
    HAPROXY_CONTAINER_PORTS,
    haproxy_backend_errors as backend_errors,
    haproxy_input_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate import haproxy_time_errors as time_errors

ROLE = Path(__file__).resolve().parents[4] / "roles" / "haproxy"
RESERVED = ["rotor", "http", "https", "stats", "rotor_health", "rotor_no_route", "rotor_rate_limit"]


@pytest.fixture
def settings() -> dict:
    """The role's defaults with the one required secret set: valid as they are."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values["haproxy_stats_password"] = "s3cret"
    return values


def test_defaults_with_a_password_are_valid(settings):
    assert haproxy_input_errors(settings, RESERVED) == []


@pytest.mark.parametrize("value", ["5s", "1500ms", "100us", "2m", "1h", "1d", "500", 30])
def test_time_accepts(value):
    assert time_errors(value, "t") == []


@pytest.mark.parametrize("value", ["5 s", "5sec", "-1s", "", "1.5s", None])
def test_time_rejects(value):
    assert time_errors(value, "t") == [
        "t: %r must be an HAProxy time: a whole number with an optional unit us, ms, s, m, h or d (e.g. 5s)" % (value,)]


@pytest.mark.parametrize("value", ["0s", 0, "0", "0ms"])
def test_time_of_zero_is_refused(value):
    assert time_errors(value, "t") == ["t: %r must be longer than zero" % (value,)]


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"haproxy_stats_password": ""}, ["haproxy_stats_password: required"]),
        ({"haproxy_http_port": 0}, ["haproxy_http_port: 0 must be a whole number from 1 to 65535"]),
        ({"haproxy_stats_port": "8404"}, ["haproxy_stats_port: '8404' must be a whole number from 1 to 65535"]),
        ({"haproxy_https_port": 80}, ["haproxy_https_port: 80 is already haproxy_http_port; the ports must differ"]),
        ({"haproxy_runtime_tcp_port": 443}, ["haproxy_runtime_tcp_port: 443 is taken inside the container (80, 443, 8404, 8405)"]),
        ({"haproxy_runtime_tcp_port": 8405}, ["haproxy_runtime_tcp_port: 8405 is taken inside the container (80, 443, 8404, 8405)"]),
        ({"haproxy_runtime_tcp_port": 9999}, []),
        ({"haproxy_publish_address": "0.0.0.0"}, []),
        ({"haproxy_publish_address": "::"}, []),
        ({"haproxy_publish_address": "eth0"}, ["haproxy_publish_address: 'eth0' must be an IPv4 or IPv6 address or empty"]),
        ({"haproxy_stats_publish_address": ""}, ["haproxy_stats_publish_address: '' must be an IPv4 or IPv6 address"]),
        ({"haproxy_rate_limit_requests": -1}, ["haproxy_rate_limit_requests: -1 must be a whole number of at least 0 (0 turns the limit off)"]),
        ({"haproxy_rate_limit_requests": 0}, []),
        ({"haproxy_rate_limit_period": "0s"}, ["haproxy_rate_limit_period: '0s' must be longer than zero"]),
        ({"haproxy_rate_limit_exempt_networks": ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]}, []),
        ({"haproxy_rate_limit_exempt_networks": ["10.0.0.0/8", "office"]},
         ["haproxy_rate_limit_exempt_networks[1]: 'office' must be an IP address or a CIDR network"]),
        ({"haproxy_timeouts": {"connect": "5s", "client": "30s", "server": "30s", "clinet": "1s"}},
         ["haproxy_timeouts.clinet: unknown timeout"]),
        ({"haproxy_timeouts": {"connect": "5s", "client": "30s"}}, ["haproxy_timeouts.server: required"]),
        ({"haproxy_hsts_max_age": -1}, ["haproxy_hsts_max_age: -1 must be a whole number of at least 0 (seconds; 0 sends no HSTS header)"]),
        ({"haproxy_security_headers": {"X Bad": "1"}}, ["haproxy_security_headers: 'X Bad' is not a valid header name"]),
        ({"haproxy_security_headers": {"X-Ok": 'a"b'}}, ["haproxy_security_headers.X-Ok: the value must be"]),
        ({"haproxy_global_extra": ["maxconn 10", "a\nb"]}, ["haproxy_global_extra[1]: must be one line"]),
        ({"haproxy_stats_user": "ad min"}, ["haproxy_stats_user: 'ad min' must be letters"]),
        ({"haproxy_maxconn": 0}, ["haproxy_maxconn: 0 must be a whole number of at least 1"]),
        ({"haproxy_acme_webroot_server": ""}, []),
        ({"haproxy_acme_webroot_server": "rotor-acme"}, ["haproxy_acme_webroot_server: 'rotor-acme' must be '<container name>:<port>'"]),
        ({"haproxy_acme_webroot_server": "acme:70000"}, ["haproxy_acme_webroot_server: 'acme:70000' must be"]),
        ({"haproxy_admin_services": []}, []),
        ({"haproxy_admin_services": "grafana"}, ["haproxy_admin_services: must be a list"]),
        ({"haproxy_admin_services": [{"name": "Graf ana", "port": 3000, "server": "g:3000"}]},
         ["haproxy_admin_services[0].name: 'Graf ana' must be lower-case"]),
        ({"haproxy_admin_services": [{"name": "a", "port": 3000, "server": "g:3000"},
                                     {"name": "a", "port": 3001, "server": "g:3000"}]},
         ["haproxy_admin_services[1].name: 'a' is listed twice"]),
        ({"haproxy_admin_services": [{"name": "a", "port": 8404, "server": "g:3000"}]},
         ["haproxy_admin_services[0].port: 8404 is already taken (haproxy_stats_port)"]),
        ({"haproxy_admin_services": [{"name": "a", "port": 3000, "server": "g:3000"},
                                     {"name": "b", "port": 3000, "server": "g:3000"}]},
         ["haproxy_admin_services[1].port: 3000 is already taken (haproxy_admin_services[0].port)"]),
        ({"haproxy_admin_services": [{"name": "a", "port": 3000, "server": "g"}]},
         ["haproxy_admin_services[0].server: 'g' must be '<container name>:<port>'"]),
        ({"haproxy_admin_services": [{"name": "a", "port": 3000, "server": "g:1", "auth": False}]},
         ["haproxy_admin_services[0]: must be a dict of name, port and server"]),
    ],
)
def test_settings_rules(settings, overrides, expected):
    settings.update(overrides)
    errors = haproxy_input_errors(settings, RESERVED)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected):
        assert error.startswith(start), (error, start)


def test_the_password_never_appears_in_messages(settings):
    settings.update(haproxy_stats_password=12345, haproxy_http_port=0)
    assert not any("12345" in e for e in haproxy_input_errors(settings, RESERVED))


@pytest.mark.parametrize(
    "backends,expected",
    [
        ([{"name": "web"}, {"name": "api-v2"}, {"name": "a.b_c"}], []),
        ([{"name": "web", "health_path": "/ready?full=1", "check_interval": "500ms", "check_rise": 1,
           "check_fall": 1, "retries": 0, "timeout_server": "2m"}], []),
        ([{"name": ""}], ["b[0].name: a name is required"]),
        ([{}], ["b[0].name: a name is required"]),
        (["web"], ["b[0]: must be a dict"]),
        ([{"name": "-web"}], ["b[0].name: '-web' must start with a letter or digit"]),
        ([{"name": "web/1"}], ["b[0].name: 'web/1' must start"]),
        ([{"name": "x" * 65}], ["b[0].name: '%s' must start" % ("x" * 65)]),
        ([{"name": "stats"}], ["b[0].name: 'stats' is used by the role itself"]),
        ([{"name": "tenant_acme"}], ["b[0].name: 'tenant_acme' starts with 'tenant_', which tenants' backends use"]),
        ([{"name": "web"}, {"name": "api"}, {"name": "web"}], ["b[2].name: 'web' is already used by b[0]"]),
        ([{"name": "web", "health_path": "healthz"}], ["b[0].health_path: 'healthz' must start with /"]),
        ([{"name": "web", "health_path": "/a b"}], ["b[0].health_path: '/a b' must start with /"]),
        ([{"name": "web", "check_interval": "2 s"}], ["b[0].check_interval: '2 s' must be an HAProxy time"]),
        ([{"name": "web", "check_rise": 0}], ["b[0].check_rise: 0 must be a whole number of at least 1"]),
        ([{"name": "web", "retries": -1}], ["b[0].retries: -1 must be a whole number of at least 0"]),
    ],
)
def test_backend_rules(backends, expected):
    errors = backend_errors(backends, "b", reserved=RESERVED)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected):
        assert error.startswith(start), (error, start)


def test_backend_defaults_match_the_documented_ones():
    """vars/main.yml fills in what the argument specs document as the backend defaults."""
    filled = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__haproxy_backend_defaults"]
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]["haproxy_backends"]["options"]
    documented = {k: v["default"] for k, v in options.items() if "default" in v}
    assert filled == documented


def test_reserved_names_match_the_role():
    names = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__haproxy_reserved_names"]
    assert names == RESERVED


def _defaults(role: str, **extra) -> dict:
    """A role's defaults with its required secrets set and templated values as a converge renders them."""
    values = yaml.safe_load((ROLE.parent / role / "defaults" / "main.yml").read_text())
    values.update(extra)
    return values


@pytest.mark.parametrize(
    "role,overrides,expected",
    [
        ("docker_host", {}, []),
        ("docker_host", {"docker_host_source": "docker"},
         ['docker_host_docker_repo_url: required when docker_host_source is "docker"',
          'docker_host_docker_repo_key_url: required when docker_host_source is "docker"']),
        ("docker_host", {"docker_host_log_max_size": "10"}, ["docker_host_log_max_size: '10' must be a number with a k"]),
        ("docker_host", {"docker_host_log_max_file": 0}, ["docker_host_log_max_file: 0 must be a whole number of at least 1"]),
        ("docker_host", {"docker_host_log_max_file": "3"}, []),
        ("docker_host", {"docker_host_registry_mirrors": ["http://127.0.0.1:5000", "ftp://m", "http://m/path"]},
         ["docker_host_registry_mirrors[1]: 'ftp://m' must be an http:// or https:// URL with no path",
          "docker_host_registry_mirrors[2]: 'http://m/path' must be an http://"]),
        ("postgres", {"postgres_superuser_password": "pw"}, []),
        ("postgres", {}, ['postgres_superuser_password: required (keep it in the vault)']),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_tenant_connection_budget": 0},
         ["postgres_tenant_connection_budget: 0 must be a whole number of at least 1"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_connection_reserve": 1},
         ["postgres_connection_reserve: 1 must be a whole number larger than postgres_superuser_reserved_connections"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_pids_limit": 10},
         ["postgres_pids_limit: 10 must leave room for one process per connection"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_tenant_connection_budget": 200},
         ["postgres_memory: 1g cannot hold postgres_shared_buffers (256MB) and 210 connections (max_connections: "
          "postgres_tenant_connection_budget + postgres_connection_reserve) at 6 MB each plus 64 MB: at least 1580m"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_tenant_connection_budget": 200,
                      "postgres_memory": "1580m"}, []),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_tenant_connection_budget": 200,
                      "postgres_memory": "1579m"}, ["postgres_memory: 1579m cannot hold"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_memory": "1gb"},
         ["postgres_memory: '1gb' must be a positive whole number with an optional b, k, m or g suffix"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_shared_buffers": "256mb"},
         ["postgres_shared_buffers: '256mb' must be a PostgreSQL memory size"]),
        ("postgres", {"postgres_superuser_password": "pw", "postgres_shared_buffers": 16384}, []),
        ("postgres", {"postgres_superuser_password": "pw",
                      "postgres_settings": {"Work_Mem": "4MB", "max_connections": 5, "auto_explain.log_min_duration": 10,
                                            "work_mem": ["4MB"]}},
         ["postgres_settings: Work_Mem is not a setting name", "postgres_settings: max_connections is set by the role",
          "postgres_settings.work_mem: the value must be a string, number or boolean"]),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": "/var/run/pg"}, []),
        ("pgbouncer", {"pgbouncer_postgres_socket_dir": "/var/run/pg"}, ["pgbouncer_admin_password: required"]),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": "/var/run/pg",
                       "pgbouncer_admin_user": "Admin"}, ["pgbouncer_admin_user: 'Admin' must be a plain user name"]),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": "/var/run/pg",
                       "pgbouncer_port": 80}, ["pgbouncer_port: 80 must be a whole number from 1024 to 65535"]),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": "/var/run/pg",
                       "pgbouncer_port": "6433"}, []),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": "/var/run/../pg"},
         ["pgbouncer_postgres_socket_dir: '/var/run/../pg' must be an absolute path"]),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": ""},
         ["pgbouncer_postgres_host: '/var/run/postgresql' is a socket directory, but pgbouncer_postgres_socket_dir is"]),
        ("pgbouncer", {"pgbouncer_admin_password": "pw", "pgbouncer_postgres_socket_dir": "/var/run/pg",
                       "pgbouncer_settings": {"_x": 1, "pool_mode": "session", "server_lifetime": "3600\n"}},
         ["pgbouncer_settings: setting name '_x' must be a lowercase letter",
          "pgbouncer_settings: pool_mode is set by the role",
          "pgbouncer_settings.server_lifetime: must be one line"]),
        ("rotation", {}, []),
        ("rotation", {"rotation_interval": "hourly; rm -rf /"}, ["rotation_interval: 'hourly; rm -rf /' must be a systemd OnCalendar"]),
        ("rotation", {"rotation_jitter": "10 minutes"}, ["rotation_jitter: must be a positive whole number"]),
        ("rotation", {"rotation_jitter": "0"}, []),
        ("rotation", {"rotation_run_timeout": 0}, ["rotation_run_timeout: 0 must be a whole number of at least 1"]),
        ("rotation", {"rotation_services": [{"name": "web", "image": "i", "memory": "128b"}]},
         ["rotation_services[0].memory: '128b' is below Docker's minimum memory limit of 6m"]),
        ("rotation", {"rotation_services": [{"name": "web", "image": "i", "check_interval": "0"}]},
         ["rotation_services[0].check_interval: '0' must be longer than zero"]),
        ("rotation", {"rotation_services": [{"name": "web", "image": "i"}], "rotation_rotate_services": ["web", "api"]},
         ["rotate_services: api is not a present service of rotation_services"]),
    ],
)
def test_role_rules(role, overrides, expected):
    from ansible_collections.rotor.vps.plugins.module_utils._role_input import role_input_errors

    managed = yaml.safe_load((ROLE.parent / role / "vars" / "main.yml").read_text() or "{}") if (
        ROLE.parent / role / "vars" / "main.yml").exists() else {}
    options = {"managed": managed["__%s_managed_settings" % role]} if "__%s_managed_settings" % role in managed else {}
    errors = role_input_errors(_defaults(role, **overrides), role, **options)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected):
        assert error.startswith(start), (error, start)


def test_unknown_role_is_an_error():
    from ansible_collections.rotor.vps.plugins.module_utils._role_input import role_input_errors

    with pytest.raises(ValueError, match="role must be one of"):
        role_input_errors({}, "nginx")


def test_the_health_port_is_one_the_rules_keep_free():
    assert yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__haproxy_health_port"] in HAPROXY_CONTAINER_PORTS
