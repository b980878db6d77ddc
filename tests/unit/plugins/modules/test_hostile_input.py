"""Hostile input to the four modules: every option that takes a name, a path or free text is fed
injections into INI files, HAProxy runtime commands, SQL identifiers, a shell and YAML/JSON, path
tricks, control characters and look-alike letters. Each must be refused before anything is touched,
with a message that names the option and its rule, without echoing a control character or a secret.

The bulk runs in process, as the module runs it: AnsibleModule's normalisation of the arguments (the
module's own ARGUMENT_SPEC through ArgumentSpecValidator), then the module's own input rules. Then one
case per option runs the real module as Ansible does (a process reading ANSIBLE_MODULE_ARGS), half of
them in check mode, against a tmp_path tree that must stay byte-identical: no lock, no audit line,
no file written. The Docker engine and HAProxy's socket the arguments name do not exist, so a value
that slipped through would fail with a connection error instead, and the test would say so.

``CASES`` is the number of cases; ``test_case_count`` prints it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rotor.vps.plugins.modules import certbot_site, haproxy_rotate, pgbouncer_tenant, postgrest_spawn
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_tenant import input_errors as tenant_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._postgrest import postgrest_errors
from ansible_collections.rotor.vps.plugins.module_utils._scram import make_verifier
from ansible_collections.rotor.vps.plugins.module_utils._web_service import host_errors, service_errors

COLLECTIONS = str(Path(__file__).resolve().parents[4] / ".cache" / "collections")

VERIFIER = make_verifier("acme secret", salt=b"fedcba9876543210")

# Each module: its argument spec, the checks AnsibleModule is built with, and the rules its main() runs.
MODULES = {
    "haproxy_rotate": (haproxy_rotate.ARGUMENT_SPEC, {},
                       lambda p: service_errors(p) + host_errors(p)),
    "pgbouncer_tenant": (pgbouncer_tenant.ARGUMENT_SPEC,
                         {"mutually_exclusive": [("password", "verifier"), ("login_unix_socket", "login_host")]},
                         tenant_input_errors),
    "postgrest_spawn": (postgrest_spawn.ARGUMENT_SPEC, {},
                        lambda p: postgrest_errors(p) + host_errors(p)),
    "certbot_site": (certbot_site.ARGUMENT_SPEC, {"required_if": [("challenge", "dns-01", ("dns_hook",))]},
                     certbot_site.input_errors),
}


def base_args(module: str, root: str) -> dict:
    """Valid arguments of ``module`` whose files are all under ``root``, whose engine and sockets do not exist."""
    host = dict(lock_dir=root + "/lock", audit_log=root + "/log/rotation.jsonl", actor="hostile-input test",
                haproxy_socket=root + "/haproxy/run/admin.sock", haproxy_config_dir=root + "/haproxy",
                haproxy_config_mount="/usr/local/etc/haproxy", docker_host="unix://%s/docker.sock" % root)
    if module == "haproxy_rotate":
        return dict(host, service="web", backend="web", image="rotor-lab/demo-web:1", max_age="6h",
                    health_path="/healthz", env={"APP_MODE": "demo"}, networks=["app"],
                    tmpfs=[{"path": "/tmp", "size": "16m", "mode": "1777"}], memory="128m", cap_drop=["ALL"],
                    cap_add=["NET_BIND_SERVICE"], user="1000:1000", labels={"org.example.team": "web"},
                    routes=["web.lab.test"], check_interval="2s", check_fast_interval="50ms",
                    metrics_dir=root + "/metrics")
    if module == "pgbouncer_tenant":
        return dict(name="acme", database="acme", user="acme", password="acme secret", host="/var/run/postgresql",
                    options={"application_name": "acme api"}, config=root + "/pgbouncer/databases.ini",
                    userlist=root + "/pgbouncer/userlist.txt", admin_host=root + "/pgbouncer/run",
                    admin_user="pgbouncer_admin", admin_password="admin secret", log_container="rotor-pgbouncer",
                    docker_host=host["docker_host"], login_user="postgres", login_db="postgres",
                    login_password="superuser secret", max_connections=100, lock_timeout=5)
    if module == "postgrest_spawn":
        return dict(host, tenant="acme", image="postgrest/postgrest:v12.0.2", database="acme",
                    authenticator="acme_authenticator", authenticator_password="authenticator secret",
                    pgbouncer_host="rotor-pgbouncer", db_schemas=["api"], db_anon_role="acme_anon",
                    jwt_secret="j" * 40, jwt_aud="acme-api", networks=["app", "data"], user="1000",
                    settings={"app.settings.greeting": "hello", "log-level": "error"}, routes=["acme.lab.test"],
                    rate_limit_period="10s", config_dir=root + "/postgrest",
                    haproxy_master_socket=root + "/haproxy/run/master.sock", haproxy_container="rotor-haproxy",
                    lock_timeout=5)
    assert module == "certbot_site"
    return dict(host, domains=["www.lab.test", "lab.test"], email="admin@lab.test",
                acme_directory="https://acme.lab.test:14000/dir", ca_bundle=root + "/acme-ca.pem",
                challenge="dns-01", dns_hook=root + "/dns-hook", image="certbot/certbot:v4.0.0",
                certbot_binary=root + "/certbot", network="bridge", certbot_dir=root + "/certbot-dir",
                webroot=root + "/webroot", state_dir=root + "/state", verify_address="127.0.0.1",
                metrics_dir=root + "/metrics")


def seed(root: Path) -> None:
    """What a host has before the module runs: the files the arguments name (a write to one would show)."""
    (root / "pgbouncer").mkdir()
    (root / "pgbouncer" / "databases.ini").write_text("[databases]\nother = host=/var/run/postgresql dbname=other\n")
    (root / "pgbouncer" / "userlist.txt").write_text('"other" "%s"\n' % make_verifier("other", salt=b"0123456789abcdef"))
    (root / "haproxy" / "maps").mkdir(parents=True)
    (root / "haproxy" / "maps" / "hosts.map").write_text("other.lab.test other\n")
    (root / "postgrest").mkdir()
    (root / "acme-ca.pem").write_text("not a real bundle\n")
    for name in ("dns-hook", "certbot"):
        (root / name).write_text("#!/bin/sh\nexit 1\n")
        (root / name).chmod(0o755)


# Hostile values, by kind of sink: each makes one from a valid value ``v`` of the option.
CYRILLIC = str.maketrans("aceopxy", "асеорху")


def _lookalike(v: str) -> str:
    swapped = v.translate(CYRILLIC)
    return swapped if swapped != v else "а" + v


def _fullwidth(v: str) -> str:
    index = next((i for i, c in enumerate(v) if c.isascii() and c.isalnum()), 0)
    return v[:index] + chr(ord(v[index]) + 0xFEE0) + v[index + 1:] if v else "\uff41"


HOSTILE = {
    # INI files (pgbouncer.ini, postgrest.conf): a new line, a section, a key, a comment.
    "ini-newline-section": lambda v: v + "\n[pgbouncer]\nauth_type = trust",
    "ini-crlf-key": lambda v: v + "\r\nlisten_addr = *",
    "ini-section": lambda v: "[%s]" % v,
    "ini-key": lambda v: v + " = host=evil.example",
    "ini-semicolon-comment": lambda v: v + ";comment",
    "ini-hash-comment": lambda v: v + "#comment",
    # HAProxy's runtime API: a second command after ';' or a line break, a further argument after a space.
    "haproxy-semicolon": lambda v: v + ";shutdown sessions server web/web1",
    "haproxy-newline": lambda v: v + "\ndel server web/web1",
    "haproxy-argument": lambda v: v + " weight 0",
    # SQL identifiers and literals.
    "sql-double-quote": lambda v: v + '"; DROP ROLE postgres; --',
    "sql-single-quote": lambda v: v + "' OR '1'='1",
    "sql-comment": lambda v: v + "--",
    "sql-dollar-quote": lambda v: v + "$$;SELECT 1$$",
    # A shell (certbot's hooks run through one).
    "shell-substitution": lambda v: v + "$(touch /tmp/pwned)",
    "shell-backticks": lambda v: v + "`id`",
    "shell-pipe": lambda v: v + "|sh",
    "shell-and": lambda v: v + "&&id",
    "shell-redirect": lambda v: v + ">/etc/passwd",
    # YAML and JSON (inventories, audit lines, Docker's API).
    "yaml-mapping": lambda v: v + ": {evil: 1}",
    "yaml-flow": lambda v: "{%s}" % v,
    "yaml-list-item": lambda v: v + "\n- evil",
    "json-break-out": lambda v: v + '", "admin": true, "x": "',
    # Paths.
    "path-parent": lambda v: v + "/../../etc",
    "path-absolute": lambda v: "/etc/passwd",
    "path-relative": lambda v: "etc/rotor/" + v.lstrip("/"),
    "path-nul": lambda v: v + "\x00.txt",
    "path-very-long": lambda v: v + "a" * 5000,
    # Control characters and invisible or look-alike letters.
    "control-escape": lambda v: v + "\x1b[2J",
    "control-tab": lambda v: v + "\tx",
    "control-delete": lambda v: v + "\x7f",
    "control-line-separator": lambda v: v + "\u2028x",
    "control-next-line": lambda v: v + "\x85x",
    "lookalike-cyrillic": _lookalike,
    "lookalike-fullwidth": _fullwidth,
    "lookalike-zero-width": lambda v: v[:1] + "\u200b" + v[1:],
    "lookalike-bidi-override": lambda v: "\u202e" + v,
}
# What free text may hold (an audit actor, a label, a setting's value): anything printable on one line.
# What a secret may hold: anything but NUL (it is hashed, or URL-quoted, or written to a file of its own).
TEXT_KINDS = {kind for kind, make in HOSTILE.items() if not make("x").isprintable()}
SECRET_KINDS = {kind for kind, make in HOSTILE.items() if "\x00" in make("x")}
# Valid in a path, so only where a path is not wanted: ...
PATHS_ALLOW = {"path-absolute", "sql-comment"}
# ... and valid in a URL's path and query (a health check path).
URL_PATH_ALLOW = PATHS_ALLOW | {"ini-semicolon-comment", "shell-and", "path-parent"}


class Option:
    """One option that takes a name, a path or free text: where in the arguments it is, what the error
    names, its valid value, and which hostile kinds are valid for it (``allow``) or apply (``only``)."""

    def __init__(self, module: str, label: str, put, valid: str, *, names: str = "", allow=(), only=None,
                 wrap=None, secret: bool = False):
        self.module, self.label, self.put, self.valid = module, label, put, valid
        self.names = names or label
        self.kinds = [kind for kind in HOSTILE if kind not in set(allow) and (only is None or kind in only)]
        self.wrap = wrap or (lambda value: value)
        self.secret = secret

    def value(self, kind: str) -> str:
        return self.wrap(HOSTILE[kind](self.valid))

    def args(self, root: str, kind: str) -> dict:
        args = copy.deepcopy(base_args(self.module, root))
        self.put(args, self.value(kind), root)
        return args


def key(name: str):
    def put(args: dict, value: str, _root: str) -> None:
        args[name] = value

    return put


def path(name: str):
    """A path option: the hostile value is made from its valid path under the test's root."""
    def put(args: dict, value: str, root: str) -> None:
        args[name] = value.replace("{root}", root)

    return put


def item(name: str, index: int = 0, sub: str = ""):
    def put(args: dict, value: str, _root: str) -> None:
        if sub:
            args[name][index][sub] = value
        else:
            args[name][index] = value

    return put


def verifier(args: dict, value: str, _root: str) -> None:
    """The verifier instead of the password (the module takes one of them)."""
    del args["password"]
    args["verifier"] = value


def dict_key(name: str):
    def put(args: dict, value: str, _root: str) -> None:
        args[name] = {value: "a value"}

    return put


def dict_value(name: str, entry: str):
    def put(args: dict, value: str, _root: str) -> None:
        args[name] = {entry: value}

    return put


def _host_options(module: str, *, metrics: bool = True, master: bool = False) -> list:
    options = [
        Option(module, "lock_dir", path("lock_dir"), "{root}/lock", allow=PATHS_ALLOW),
        Option(module, "audit_log", path("audit_log"), "{root}/log/rotation.jsonl", allow=PATHS_ALLOW),
        Option(module, "haproxy_socket", path("haproxy_socket"), "{root}/haproxy/run/admin.sock", allow=PATHS_ALLOW),
        Option(module, "haproxy_config_dir", path("haproxy_config_dir"), "{root}/haproxy", allow=PATHS_ALLOW),
        Option(module, "haproxy_config_mount", key("haproxy_config_mount"), "/usr/local/etc/haproxy",
               allow=PATHS_ALLOW),
        Option(module, "docker_host", path("docker_host"), "unix://{root}/docker.sock", allow={"sql-comment"}),
        Option(module, "actor", key("actor"), "ops", only=TEXT_KINDS | {"path-very-long"}),
    ]
    if metrics:
        options.append(Option(module, "metrics_dir", path("metrics_dir"), "{root}/metrics", allow=PATHS_ALLOW))
    if master:
        options.append(Option(module, "haproxy_master_socket", path("haproxy_master_socket"),
                              "{root}/haproxy/run/master.sock", allow=PATHS_ALLOW))
    return options


HR = "haproxy_rotate"
PT = "pgbouncer_tenant"
PS = "postgrest_spawn"
CS = "certbot_site"
# Valid in a Docker or service name, a user or a label name: '-' (so '--' too).
DASHES = {"sql-comment"}
# Valid in an image reference: a registry or repository path without a leading '/' too.
IMAGES_ALLOW = DASHES | {"path-relative"}

OPTIONS = [
    Option(HR, "service", key("service"), "web", allow=DASHES),
    Option(HR, "backend", key("backend"), "web", allow=DASHES),
    Option(HR, "image", key("image"), "rotor-lab/demo-web:1", allow=IMAGES_ALLOW),
    Option(HR, "max_age", key("max_age"), "6h"),
    Option(HR, "health_path", key("health_path"), "/healthz", allow=URL_PATH_ALLOW),
    Option(HR, "env name", dict_key("env"), "APP_MODE", names="env", allow={"path-very-long"}),
    Option(HR, "env value", dict_value("env", "APP_MODE"), "demo", names="env", only=SECRET_KINDS, secret=True),
    Option(HR, "networks[0]", item("networks"), "app", allow=DASHES),
    Option(HR, "tmpfs[0].path", item("tmpfs", 0, "path"), "/tmp", allow=PATHS_ALLOW),
    Option(HR, "tmpfs[0].size", item("tmpfs", 0, "size"), "16m"),
    Option(HR, "tmpfs[0].mode", item("tmpfs", 0, "mode"), "1777"),
    Option(HR, "memory", key("memory"), "128m"),
    Option(HR, "cap_drop[0]", item("cap_drop"), "ALL"),
    Option(HR, "cap_add[0]", item("cap_add"), "NET_BIND_SERVICE"),
    Option(HR, "user", key("user"), "1000:1000", allow=DASHES),
    Option(HR, "labels name", dict_key("labels"), "org.example.team", names="labels", allow=DASHES),
    Option(HR, "labels value", dict_value("labels", "org.example.team"), "web", names="labels.org.example.team",
           only=TEXT_KINDS | {"path-very-long"}),
    Option(HR, "routes[0]", item("routes"), "web.lab.test"),
    Option(HR, "check_interval", key("check_interval"), "2s"),
    Option(HR, "check_fast_interval", key("check_fast_interval"), "50ms"),
    *_host_options(HR),
    Option(PT, "name", key("name"), "acme"),
    Option(PT, "database", key("database"), "acme"),
    Option(PT, "user", key("user"), "acme"),
    Option(PT, "host", key("host"), "/var/run/postgresql", allow=PATHS_ALLOW),
    Option(PT, "options name", dict_key("options"), "application_name", names="options"),
    Option(PT, "options value", dict_value("options", "application_name"), "acme api",
           names="options.application_name", only=TEXT_KINDS),
    Option(PT, "config", path("config"), "{root}/pgbouncer/databases.ini", allow=PATHS_ALLOW),
    Option(PT, "userlist", path("userlist"), "{root}/pgbouncer/userlist.txt", allow=PATHS_ALLOW),
    Option(PT, "admin_host", path("admin_host"), "{root}/pgbouncer/run", allow=PATHS_ALLOW),
    Option(PT, "admin_user", key("admin_user"), "pgbouncer_admin"),
    Option(PT, "log_container", key("log_container"), "rotor-pgbouncer", allow=DASHES),
    Option(PT, "docker_host", path("docker_host"), "unix://{root}/docker.sock", allow={"sql-comment"}),
    Option(PT, "login_unix_socket", key("login_unix_socket"), "/var/run/postgresql", allow=PATHS_ALLOW),
    Option(PT, "login_host", key("login_host"), "db.lab.test"),
    Option(PT, "login_user", key("login_user"), "postgres"),
    Option(PT, "login_db", key("login_db"), "postgres"),
    Option(PT, "password", key("password"), "acme secret", only=SECRET_KINDS, secret=True),
    Option(PT, "admin_password", key("admin_password"), "admin secret", only=SECRET_KINDS, secret=True),
    Option(PT, "login_password", key("login_password"), "superuser secret", only=SECRET_KINDS, secret=True),
    Option(PT, "verifier", verifier, VERIFIER, secret=True),
    Option(PS, "tenant", key("tenant"), "acme"),
    Option(PS, "image", key("image"), "postgrest/postgrest:v12.0.2", allow=IMAGES_ALLOW),
    Option(PS, "database", key("database"), "acme"),
    Option(PS, "authenticator", key("authenticator"), "acme_authenticator"),
    Option(PS, "db_anon_role", key("db_anon_role"), "acme_anon"),
    Option(PS, "db_schemas[0]", item("db_schemas"), "api"),
    Option(PS, "pgbouncer_host", key("pgbouncer_host"), "rotor-pgbouncer"),
    Option(PS, "jwt_aud", key("jwt_aud"), "acme-api", only=TEXT_KINDS | {"sql-double-quote"}),
    Option(PS, "networks[0]", item("networks"), "app", allow=DASHES),
    Option(PS, "user", key("user"), "1000"),
    Option(PS, "settings name", dict_key("settings"), "log-level", names="settings"),
    Option(PS, "settings value", dict_value("settings", "app.settings.greeting"), "hello",
           names="settings.app.settings.greeting", only=TEXT_KINDS),
    Option(PS, "routes[0]", item("routes"), "acme.lab.test"),
    Option(PS, "rate_limit_period", key("rate_limit_period"), "10s"),
    Option(PS, "memory", key("memory"), "64m"),
    Option(PS, "check_interval", key("check_interval"), "2s"),
    Option(PS, "check_fast_interval", key("check_fast_interval"), "50ms"),
    Option(PS, "config_dir", path("config_dir"), "{root}/postgrest", allow=PATHS_ALLOW),
    Option(PS, "haproxy_container", key("haproxy_container"), "rotor-haproxy", allow=DASHES),
    Option(PS, "authenticator_password", key("authenticator_password"), "authenticator secret",
           only=SECRET_KINDS, secret=True),
    Option(PS, "jwt_secret", key("jwt_secret"), "j" * 40, only=SECRET_KINDS, secret=True),
    *_host_options(PS, metrics=False, master=True),
    Option(CS, "domains[0]", item("domains"), "www.lab.test"),
    Option(CS, "email", key("email"), "admin", wrap=lambda local: local + "@lab.test", allow=DASHES),
    Option(CS, "acme_directory", key("acme_directory"), "https://acme.lab.test:14000/dir", allow=DASHES),
    Option(CS, "account_key", key("account_key"), "2026-12", allow=DASHES),
    Option(CS, "ca_bundle", path("ca_bundle"), "{root}/acme-ca.pem", allow=PATHS_ALLOW),
    Option(CS, "dns_hook", path("dns_hook"), "{root}/dns-hook", allow=PATHS_ALLOW),
    Option(CS, "certbot_binary", path("certbot_binary"), "{root}/certbot", allow=PATHS_ALLOW),
    Option(CS, "image", key("image"), "certbot/certbot:v4.0.0", allow=IMAGES_ALLOW),
    Option(CS, "network", key("network"), "bridge", allow=DASHES),
    Option(CS, "certbot_dir", path("certbot_dir"), "{root}/certbot-dir", allow=PATHS_ALLOW),
    Option(CS, "webroot", path("webroot"), "{root}/webroot", allow=PATHS_ALLOW),
    Option(CS, "state_dir", path("state_dir"), "{root}/state", allow=PATHS_ALLOW),
    Option(CS, "verify_address", key("verify_address"), "127.0.0.1"),
    *_host_options(CS, master=True),
]

CASE_LIST = [(option, kind) for option in OPTIONS for kind in option.kinds]
CASES = len(CASE_LIST)


def input_errors(module: str, args: dict) -> list[str]:
    """What the module refuses the arguments for, before it touches anything: AnsibleModule's checks, its rules."""
    spec, checks, rules = MODULES[module]
    result = ArgumentSpecValidator(spec, **checks).validate(args)
    if result.error_messages:
        return list(result.error_messages)
    return rules(result.validated_parameters)


def assert_refused(option: Option, kind: str, errors: list, args: dict) -> None:
    assert errors, "%s accepted %s: %r" % (option.label, kind, option.value(kind))
    for error in errors:
        assert error.startswith(option.names.split("[")[0]), (
            "%s: the message names another option, not %s: %s" % (kind, option.names, error))
        assert re.search(r"\bmust\b|is longer than|is not a|is reserved|not allowed|not a setting", error), (
            "%s: the message states no rule: %s" % (kind, error))
        assert not any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in error), (
            "%s: the message echoes a control or format character: %r" % (kind, error))
        assert not option.secret or option.valid not in error, "%s: the message echoes the secret: %s" % (kind, error)
    assert any(error.startswith(option.names) for error in errors), (option.names, errors)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """The files the in-process cases' arguments name (certbot_site's must exist); they write none."""
    path = tmp_path_factory.mktemp("hostile")
    seed(path)
    return str(path)


def test_the_valid_arguments_are_valid(root):
    """Each case changes one option of these: so its error is that option's."""
    for module in MODULES:
        assert input_errors(module, base_args(module, root)) == [], module


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: "%s-%s" % (o.module, o.label.replace(" ", "-")))
def test_every_hostile_value_is_refused_naming_the_option_and_rule(option, root):
    for kind in option.kinds:
        args = option.args(root, kind)
        assert_refused(option, kind, input_errors(option.module, args), args)


def test_every_module_and_kind_is_covered():
    """Every module has its options here, and every kind of hostile value is tried on some option."""
    assert {option.module for option in OPTIONS} == set(MODULES)
    assert {kind for option in OPTIONS for kind in option.kinds} == set(HOSTILE)
    for module, (spec, _checks, _rules) in MODULES.items():
        tried = {option.label.split()[0].split("[")[0] for option in OPTIONS if option.module == module}
        texts = {name for name, entry in spec.items() if entry.get("type") in ("str", "path", "list", "dict")
                 and not entry.get("choices") and entry.get("elements") in (None, "str", "dict")}
        assert texts - tried == set(), "%s: options that take text but have no hostile cases: %s" % (
            module, texts - tried)


def test_case_count(capsys):
    by_module = {module: sum(1 for option, _kind in CASE_LIST if option.module == module) for module in MODULES}
    with capsys.disabled():
        print("\nhostile input: %d cases over %d options (%s)" % (
            CASES, len(OPTIONS), ", ".join("%s %d" % item for item in by_module.items())))
    assert CASES >= 1000


def tree(root: Path) -> dict:
    """Every file, directory and link under ``root`` with its bytes and mode."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            stat = os.lstat(full)
            found[os.path.relpath(full, root)] = (stat.st_mode, Path(full).read_bytes() if name in filenames else None)
    return found


def _process_groups(size: int = 6) -> list:
    """The options of each module in groups of about ``size``, each option with one of its kinds (taken in turn,
    so every kind is tried on some option): one module run refuses a whole group, naming every option in it.
    Neighbours (an option's name and value) go to different groups; an option whose error stops the check
    of the rest (postgrest_spawn's tenant) or that replaces another (the verifier) runs alone."""
    groups = []
    for module in MODULES:
        options = [option for option in OPTIONS if option.module == module]
        alone = [option for option in options if option.label in ALONE]
        rest = [option for option in options if option.label not in ALONE]
        count = -(-len(rest) // size)
        groups += [[option] for option in alone] + [rest[index::count] for index in range(count)]
    return [[(option, option.kinds[OPTIONS.index(option) % len(option.kinds)]) for option in group]
            for group in groups]


ALONE = ("tenant", "verifier")
PROCESS_GROUPS = _process_groups()


def test_every_option_runs_through_the_module():
    assert sorted(OPTIONS.index(option) for group in PROCESS_GROUPS for option, _kind in group) == list(
        range(len(OPTIONS)))


@pytest.mark.parametrize("number,group", list(enumerate(PROCESS_GROUPS)),
                         ids=["%s-%d" % (group[0][0].module, number) for number, group in enumerate(PROCESS_GROUPS)])
def test_the_module_refuses_it_and_changes_nothing(number, group, tmp_path, run_module):
    """Every hostile option of the group is named with its rule, and nothing under tmp_path changes;
    every other group runs in check mode."""
    seed(tmp_path)
    root = str(tmp_path)
    module = group[0][0].module
    args = base_args(module, root)
    for option, kind in group:
        option.put(args, option.value(kind), root)
    before = tree(tmp_path)
    result = run_module(module, args, check=number % 2 == 1)
    assert result.get("failed") is True and result.get("changed", False) is False, result
    assert result["msg"].startswith("Invalid input, nothing was changed: "), result["msg"]
    for option, kind in group:
        named = [error for error in result["errors"] if error.startswith(option.names)]
        assert named, "%s: %s was not refused: %s" % (kind, option.label, result["errors"])
        assert_refused(option, kind, named, args)
    prefixes = tuple(option.names.split("[")[0] for option, _kind in group)
    assert all(error.startswith(prefixes) for error in result["errors"]), result["errors"]
    assert tree(tmp_path) == before, "the module wrote to the host"


@pytest.mark.parametrize("module", MODULES)
def test_the_valid_arguments_pass_the_input_check_in_the_module(module, tmp_path):
    """The process cases' baseline: the same arguments, valid, get past the input check (and fail on the
    missing engine, socket or console instead) and change nothing in check mode."""
    seed(tmp_path)
    before = tree(tmp_path)
    payload = {"ANSIBLE_MODULE_ARGS": dict(base_args(module, str(tmp_path)), _ansible_check_mode=True)}
    done = subprocess.run([sys.executable, "-m", "ansible_collections.rotor.vps.plugins.modules.%s" % module],
                          input=json.dumps(payload), capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    assert "Invalid input" not in done.stdout + done.stderr, done.stdout
    assert tree(tmp_path) == before
