"""A tenant's PostgREST: the rules of its options, its configuration file, and what a change of its files needs."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rotor.vps.plugins.module_utils._postgrest import (
    CONFIG_FILE,
    KNOWN_SETTINGS,
    MANAGED_SETTINGS,
    POSTGREST_SPEC,
    RESTART_SETTINGS,
    backend_lines,
    config_settings,
    db_uri,
    files_plan,
    new_jwt_secret,
    postgrest_errors,
    render_config,
    restart_digest,
    setting_errors,
)

SECRET = "s" * 32


def options(**overrides) -> dict:
    """The options as AnsibleModule hands them over (defaults filled in, types checked)."""
    given = dict({"tenant": "acme", "authenticator_password": "pw"}, **overrides)
    result = ArgumentSpecValidator(POSTGREST_SPEC).validate(given)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def test_defaults_are_valid_and_derive_the_roles_from_the_tenant():
    p = options()
    assert postgrest_errors(p) == []
    settings = config_settings(p)
    assert settings["db-anon-role"] == "acme_anon"
    assert db_uri(p) == "postgresql://acme_authenticator:pw@rotor-pgbouncer:6432/acme"


BAD = [
    ({"tenant": "Acme"}, "tenant: 'Acme' must start with a lowercase letter"),
    ({"tenant": "ac-me"}, "tenant: 'ac-me' must start with a lowercase letter"),
    ({"tenant": "a" * 49}, "is longer than 48 characters"),
    ({"tenant": "pgbouncer"}, "tenant: 'pgbouncer' is reserved"),
    ({"authenticator_password": None}, "authenticator_password: required when state is present"),
    ({"authenticator_password": "two\nlines"}, "authenticator_password: must be one line and not blank"),
    ({"jwt_secret": "short"}, "jwt_secret: must be at least 32 characters"),
    ({"jwt_secret": "x" * 31}, "jwt_secret: must be at least 32 characters"),
    ({"db_schemas": []}, "db_schemas: at least one schema is required"),
    ({"db_schemas": ["api", "Bad"]}, "db_schemas[1]: 'Bad' must start with a lowercase letter"),
    ({"db_anon_role": "anon role"}, "db_anon_role: 'anon role' must start with a lowercase letter"),
    ({"db_pool": 0}, "db_pool"),
    ({"server_port": 3001}, "admin_port: must differ from server_port (3001)"),
    ({"admin_port": 70000}, "admin_port"),
    ({"memory": "128b"}, "memory"),
    ({"user": "postgrest"}, "user: 'postgrest' must be a numeric uid or uid:gid"),
    ({"routes": ["bad_host.example"]}, "routes[0]"),
    ({"rate_limit": -1}, "rate_limit"),
    ({"rate_limit_period": "0s"}, "rate_limit_period"),
    ({"settings": {"frobnicate": 1}}, "settings.frobnicate: not a setting PostgREST 12 knows"),
    ({"settings": {"db-uri": "postgres://x"}}, "settings.db-uri: set by this module"),
    ({"settings": {"db-prepared-statements": True}}, "settings.db-prepared-statements: set by this module"),
    ({"settings": {"openapi-mode": ["a"]}}, "settings.openapi-mode: must be a string, number or boolean"),
    ({"settings": {"server-trace-header": "a\nb"}}, "settings.server-trace-header: must be one line"),
    ({"networks": []}, "networks: at least one network is required"),
    ({"pgbouncer_host": "bad host"}, "pgbouncer_host"),
    ({"image": "postgrest/postgrest:v12.0.2;id"}, "image: 'postgrest/postgrest:v12.0.2;id' must be a Docker image"),
    ({"config_dir": "/etc/rotor/../postgrest"}, "config_dir: '/etc/rotor/../postgrest' must be an absolute path"),
    ({"config_dir": "/etc/rotor/post grest"}, "config_dir: '/etc/rotor/post grest' must be an absolute path"),
    ({"user": "\uff11000"}, "must be a numeric uid or uid:gid"),
    ({"jwt_aud": "acme\x1b[2J"}, "jwt_aud: must be one line of printable characters without quotes"),
    ({"jwt_secret": "s" * 40 + "\x00"}, "jwt_secret: must not contain a NUL character"),
    ({"authenticator_password": "pw\x00"}, "authenticator_password: must not contain a NUL character"),
    ({"settings": {"log-level\n[x]": "error"}}, "settings.'log-level\\n[x]': not a setting PostgREST 12 knows"),
    ({"settings": {"app.settings.x": "a\tb"}}, "settings.app.settings.x: must be one line of printable characters"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[m.split(":")[0] + "-%d" % i for i, (_o, m) in enumerate(BAD)])
def test_bad_input_is_named_with_its_rule(overrides, message):
    errors = postgrest_errors(options(**overrides))
    assert any(message in error for error in errors), errors


def test_absent_and_reloaded_need_no_password():
    assert postgrest_errors(options(state="absent", authenticator_password=None)) == []
    assert postgrest_errors(options(state="reloaded", authenticator_password=None)) == []


def test_known_settings_pass_and_app_settings_are_free():
    assert setting_errors({"openapi-mode": "disabled", "db-extra-search-path": "public, ext",
                           "app.settings.colour": "blue", "jwt-cache-max-lifetime": 0}) == []
    assert setting_errors({"app.settings.": "x"}) != []
    assert setting_errors(["openapi-mode"]) == ["settings: must be a mapping of PostgREST setting names to values"]


def test_every_managed_and_restart_setting_is_one_postgrest_knows():
    assert set(MANAGED_SETTINGS) <= KNOWN_SETTINGS
    assert RESTART_SETTINGS <= KNOWN_SETTINGS


def test_config_names_the_secrets_by_file_and_turns_off_what_transaction_pooling_breaks():
    text = render_config("acme", config_settings(options(jwt_secret=SECRET, max_rows=100, jwt_aud="acme-api",
                                                         settings={"openapi-mode": "disabled"})))
    assert text.splitlines() == [
        "# Managed by rotor.vps.postgrest_spawn for tenant acme; the secrets are in the files it names.",
        'db-uri = "@/etc/postgrest/db-uri"',
        'jwt-secret = "@/etc/postgrest/jwt-secret"',
        'db-schemas = "api"',
        'db-anon-role = "acme_anon"',
        "db-pool = 10",
        "db-prepared-statements = false",
        "db-channel-enabled = false",
        "db-config = false",
        "server-port = 3000",
        "admin-server-port = 3001",
        'jwt-aud = "acme-api"',
        "db-max-rows = 100",
        'openapi-mode = "disabled"',
    ]
    assert "pw" not in text and SECRET not in text


def test_string_values_are_quoted_and_escaped_for_postgrest():
    text = render_config("acme", config_settings(options(settings={"app.settings.note": 'say "hi" \\ $HOME'})))
    assert 'app.settings.note = "say \\"hi\\" \\\\ $$HOME"' in text


def test_password_is_percent_encoded_in_the_connection_string():
    assert db_uri(options(authenticator_password="p@ss:w/rd%")) == (
        "postgresql://acme_authenticator:p%40ss%3Aw%2Frd%25@rotor-pgbouncer:6432/acme")


def test_restart_digest_changes_only_with_settings_postgrest_reads_at_start():
    base = restart_digest(config_settings(options()))
    assert restart_digest(config_settings(options(db_schemas=["api", "v2"], max_rows=5))) == base
    assert restart_digest(config_settings(options(settings={"openapi-mode": "disabled"}))) == base
    assert restart_digest(config_settings(options(db_pool=4))) != base
    assert restart_digest(config_settings(options(server_port=3100))) != base
    assert restart_digest(config_settings(options(settings={"log-level": "info"}))) != base


def test_generated_secrets_are_long_and_new_each_time():
    first, second = new_jwt_secret(), new_jwt_secret()
    assert len(first) >= 32 and first != second


WANTED = {CONFIG_FILE: "conf v1\n", "db-uri": "uri", "jwt-secret": SECRET}


@pytest.mark.parametrize("current,wanted,running,writes,restart,reload", [
    ({}, WANTED, False, [CONFIG_FILE, "db-uri", "jwt-secret"], [], False),
    (WANTED, WANTED, True, [], [], False),
    (WANTED, dict(WANTED, **{CONFIG_FILE: "conf v2\n"}), True, [CONFIG_FILE], [], True),
    (WANTED, dict(WANTED, **{"db-uri": "uri2"}), True, ["db-uri"], ["db-uri changed"], False),
    (WANTED, dict(WANTED, **{"jwt-secret": "t" * 32}), True, ["jwt-secret"], [], True),
    (WANTED, dict(WANTED, **{"jwt-secret": "t" * 32}), False, ["jwt-secret"], [], False),
], ids=["new", "unchanged", "reloadable", "db-uri", "jwt-secret", "jwt-secret-nothing-running"])
def test_files_plan(current, wanted, running, writes, restart, reload):
    plan = files_plan(current, wanted, running=running)
    assert sorted(plan.writes) == sorted(writes)
    assert plan.restart == restart
    assert plan.reload_config is reload
    assert all(SECRET not in action and "uri" not in action.replace("db-uri", "") for action in plan.actions())


def test_backend_checks_ready_and_reads_its_limit_from_the_map():
    lines = backend_lines(options(rate_limit_period="20s"), "/usr/local/etc/haproxy/maps/rate_limits.map")
    assert "http-check send meth GET uri /ready" in lines
    assert "stick-table type ipv6 size 100k expire 20s store http_req_rate(20s)" in lines
    assert any("map_str_int(/usr/local/etc/haproxy/maps/rate_limits.map,0)" in line for line in lines)


def test_a_new_jwt_secret_replaces_the_container_when_the_jwt_cache_is_on():
    plan = files_plan(WANTED, dict(WANTED, **{"jwt-secret": "t" * 32}), running=True, jwt_cache=True)
    assert plan.restart == ["jwt-secret changed while the JWT cache is on"]
