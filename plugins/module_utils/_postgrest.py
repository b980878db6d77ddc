# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's PostgREST: its options and rules, its files, and what each kind of change needs.

Files on the host, in ``<config_dir>/<tenant>/`` (mounted read-only at ``/etc/postgrest``), owned by
the container's user and 0400, so that no secret is in the container's environment, labels or
command line, where ``docker inspect`` shows them:

- ``postgrest.conf``: every setting; the secrets only as ``@file`` references;
- ``db-uri``: the connection string to PgBouncer with the authenticator's password;
- ``jwt-secret``: the JWT secret. When none is given, one is generated once and kept, root-only
  0600, in ``<config_dir>/<tenant>.jwt-secret``.

What a change needs (PostgREST 12): a setting it reloads, and the JWT secret, go live with SIGUSR2
in the same container; a change of the schema cache with SIGUSR1; a setting it reads only at start
(the connection string, the pool, the ports) replaces the container behind HAProxy, with no failed
request. The containers and their backend are
kept by the rotation machinery (``_haproxy_rotate.Rotation``): one replica, health on the admin
server's ``/ready``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

from ansible_collections.rotor.vps.plugins.module_utils._haproxy_backend import retry_lines
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import tenant_name_errors
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    haproxy_time_errors,
    host_path_errors,
    hostname_errors,
    no_nul_errors,
    port_errors,
    text_errors,
    whole_number_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import (
    container_limit_errors,
    image_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._web_service import SWITCH_SPEC, switch_errors

IMAGE = "postgrest/postgrest:v12.0.2"
BINARY = "/bin/postgrest"  # where the upstream image has it
CONFIG_MOUNT = "/etc/postgrest"
CONFIG_FILE = "postgrest.conf"
SECRET_FILES = ("db-uri", "jwt-secret")
JWT_SECRET_MIN = 32
# A tenant's roles are <tenant>_authenticator, <tenant>_anon...: PostgreSQL's 63 characters leave this.
TENANT_MAX = 48

# Every setting PostgREST 12 reads (``postgrest --dump-config``), plus ``app.settings.*``.
KNOWN_SETTINGS = frozenset({
    "admin-server-port", "db-aggregates-enabled", "db-anon-role", "db-channel", "db-channel-enabled", "db-config",
    "db-extra-search-path", "db-max-rows", "db-plan-enabled", "db-pool", "db-pool-acquisition-timeout",
    "db-pool-automatic-recovery", "db-pool-max-idletime", "db-pool-max-lifetime", "db-pre-config", "db-pre-request",
    "db-prepared-statements", "db-root-spec", "db-schemas", "db-tx-end", "db-uri", "jwt-aud", "jwt-cache-max-lifetime",
    "jwt-role-claim-key", "jwt-secret", "jwt-secret-is-base64", "log-level", "openapi-mode", "openapi-security-active",
    "openapi-server-proxy-uri", "server-cors-allowed-origins", "server-host", "server-port", "server-timing-enabled",
    "server-trace-header", "server-unix-socket", "server-unix-socket-mode",
})
APP_SETTINGS = "app.settings."
# Settings PostgREST reads only when it starts (its documentation's "Reloadable: N").
RESTART_SETTINGS = frozenset({
    "admin-server-port", "db-pool", "db-pool-acquisition-timeout", "db-pool-max-idletime", "db-pool-max-lifetime",
    "db-tx-end", "db-uri", "log-level", "openapi-server-proxy-uri", "server-cors-allowed-origins", "server-host",
    "server-port", "server-unix-socket", "server-unix-socket-mode",
})
# Set from the module's own options, or fixed: behind PgBouncer in transaction mode a session is not
# the client's, so no prepared statements and no LISTEN; the configuration comes from this file only.
MANAGED_SETTINGS = {
    "db-uri": "authenticator, authenticator_password, pgbouncer_host, pgbouncer_port and database",
    "jwt-secret": "jwt_secret", "db-schemas": "db_schemas", "db-anon-role": "db_anon_role", "jwt-aud": "jwt_aud",
    "db-pool": "db_pool", "db-max-rows": "max_rows", "server-port": "server_port", "admin-server-port": "admin_port",
    "db-prepared-statements": "nothing: it is always false behind PgBouncer's transaction mode",
    "db-channel-enabled": "nothing: LISTEN is always off behind PgBouncer's transaction mode (use state=reloaded)",
    "db-config": "nothing: the settings come from this module only",
    "server-host": "nothing: PostgREST listens on every address of its container",
    "server-unix-socket": "nothing: HAProxy reaches PostgREST over TCP",
}

# The options of postgrest_spawn that describe a tenant's PostgREST (the module adds where HAProxy,
# the audit log and the engine are).
POSTGREST_SPEC = dict(
    tenant=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent", "restarted", "reloaded"]),
    image=dict(type="str", default=IMAGE),
    pull=dict(type="bool", default=True),
    database=dict(type="str"),
    authenticator=dict(type="str"),
    authenticator_password=dict(type="str", no_log=True),
    pgbouncer_host=dict(type="str", default="rotor-pgbouncer"),
    pgbouncer_port=dict(type="int", default=6432),
    db_schemas=dict(type="list", elements="str", default=["api"]),
    db_anon_role=dict(type="str"),
    jwt_secret=dict(type="str", no_log=True),
    jwt_aud=dict(type="str"),
    db_pool=dict(type="int", default=10),
    max_rows=dict(type="int"),
    server_port=dict(type="int", default=3000),
    admin_port=dict(type="int", default=3001),
    networks=dict(type="list", elements="str", default=["app", "data"]),
    memory=dict(type="str", default="64m"),
    cpus=dict(type="float", default=1.0),
    pids_limit=dict(type="int", default=64),
    user=dict(type="str", default="1000"),
    settings=dict(type="dict", default={}),
    routes=dict(type="list", elements="str"),
    rate_limit=dict(type="int", default=0),
    rate_limit_period=dict(type="str", default="10s"),
    config_dir=dict(type="path", default="/etc/rotor/postgrest"),
    healthy_timeout=dict(type="int", default=30),
    **SWITCH_SPEC,
)


# A tenant's HAProxy backend is tenant_<tenant>: haproxy_backends may not use the prefix.
TENANT_BACKEND_PREFIX = "tenant_"


def backend_name(tenant: str) -> str:
    return TENANT_BACKEND_PREFIX + tenant


def service_name(tenant: str) -> str:
    """The containers' name prefix and service label: ``postgrest-<tenant>-<random>``."""
    return "postgrest-%s" % tenant


def defaults_for(p: dict) -> dict:
    """The options with the tenant-derived defaults filled in."""
    tenant = p["tenant"]
    return dict(p, database=p["database"] or tenant, authenticator=p["authenticator"] or "%s_authenticator" % tenant,
                db_anon_role=p["db_anon_role"] or "%s_anon" % tenant)


def _role_name_errors(value: object, where: str) -> list[str]:
    errors = tenant_name_errors(value, where)
    return [e.replace("(PgBouncer cannot read a quoted database name)", "(a PostgreSQL name without quotes)")
            for e in errors]


def _app_setting(name: object) -> bool:
    """``app.settings.<name>``: free settings PostgREST hands to SQL (``current_setting``)."""
    return isinstance(name, str) and name.startswith(APP_SETTINGS) and len(name) > len(APP_SETTINGS)


def setting_errors(settings: object, where: str = "settings") -> list[str]:
    """Extra PostgREST settings: names PostgREST knows and this module does not set, one-line scalar values."""
    if not isinstance(settings, dict):
        return ["%s: must be a mapping of PostgREST setting names to values" % where]
    errors = []
    for name in sorted(settings, key=str):
        value = settings[name]
        at = "%s.%s" % (where, name if isinstance(name, str) and name.isprintable() else repr(name))
        if name in MANAGED_SETTINGS:
            errors.append("%s: set by this module (from %s), not through settings" % (at, MANAGED_SETTINGS[name]))
        elif name not in KNOWN_SETTINGS and not _app_setting(name):
            errors.append("%s: not a setting PostgREST 12 knows (see `postgrest --example`; app.settings.<name> is "
                          "free)" % at)
        elif isinstance(value, (dict, list)) or value is None:
            errors.append("%s: must be a string, number or boolean" % at)
        elif isinstance(value, str):
            errors += text_errors(value, at)
    return errors


def postgrest_errors(p: dict, where: str = "") -> list[str]:
    """Every rule the (type-checked) options break, each naming the option; empty when valid."""
    def at(key: str) -> str:
        return where + key

    errors = tenant_name_errors(p["tenant"], at("tenant"))
    if isinstance(p["tenant"], str) and len(p["tenant"]) > TENANT_MAX:
        errors.append("%s: %r is longer than %d characters (its role names, <tenant>_authenticator, must fit "
                      "PostgreSQL's 63)" % (at("tenant"), p["tenant"], TENANT_MAX))
    if p["state"] == "absent" or errors:
        return errors
    p = defaults_for(p)
    for key in ("database", "authenticator", "db_anon_role"):
        errors += _role_name_errors(p[key], at(key))
    if p["state"] in ("present", "restarted") and not p["authenticator_password"]:
        errors.append("%s: required when state is %s" % (at("authenticator_password"), p["state"]))
    elif p["authenticator_password"] is not None and ("\n" in p["authenticator_password"]
                                                      or not p["authenticator_password"].strip()):
        errors.append("%s: must be one line and not blank" % at("authenticator_password"))
    if p["jwt_secret"] is not None and len(p["jwt_secret"]) < JWT_SECRET_MIN:
        errors.append("%s: must be at least %d characters (PostgREST refuses shorter secrets); leave it out to "
                      "have one generated" % (at("jwt_secret"), JWT_SECRET_MIN))
    elif p["jwt_secret"] is not None and "\n" in p["jwt_secret"].strip("\n"):
        errors.append("%s: must be one line" % at("jwt_secret"))
    for key in ("authenticator_password", "jwt_secret"):
        errors += no_nul_errors(p[key], at(key))
    if not p["image"] or not p["image"].strip():
        errors.append("%s: an image is required" % at("image"))
    else:
        errors += image_errors(p["image"], at("image"))
    errors += host_path_errors(p["config_dir"], at("config_dir"))
    errors += hostname_errors(p["pgbouncer_host"], at("pgbouncer_host"))
    for key in ("pgbouncer_port", "server_port", "admin_port"):
        errors += port_errors(p[key], at(key))
    if p["server_port"] == p["admin_port"]:
        errors.append("%s: must differ from server_port (%s)" % (at("admin_port"), p["server_port"]))
    if not p["db_schemas"]:
        errors.append("%s: at least one schema is required" % at("db_schemas"))
    for index, schema in enumerate(p["db_schemas"]):
        errors += _role_name_errors(schema, "%s[%d]" % (at("db_schemas"), index))
    if p["jwt_aud"] is not None and (not p["jwt_aud"].strip() or not p["jwt_aud"].isprintable() or '"' in p["jwt_aud"]):
        errors.append("%s: must be one line of printable characters without quotes" % at("jwt_aud"))
    errors += whole_number_errors(p["db_pool"], at("db_pool"), 1, 1000)
    if p["max_rows"] is not None:
        errors += whole_number_errors(p["max_rows"], at("max_rows"), 1)
    if not p["networks"]:
        errors.append("%s: at least one network is required (HAProxy reaches PostgREST on the first, PgBouncer "
                      "is on another)" % at("networks"))
    errors += container_limit_errors(p, at)
    if not _numeric_user(p["user"]):
        errors.append("%s: %r must be a numeric uid or uid:gid (its files are owned by it)" % (at("user"), p["user"]))
    errors += setting_errors(p["settings"], at("settings"))
    for index, host in enumerate(p["routes"] or []):
        errors += hostname_errors(host, "%s[%d]" % (at("routes"), index))
    errors += whole_number_errors(p["rate_limit"], at("rate_limit"), 0)
    errors += haproxy_time_errors(p["rate_limit_period"], at("rate_limit_period"))
    return errors + switch_errors(p, at)


def _numeric_user(user: object) -> Optional[tuple]:
    """``(uid, gid)`` of a numeric ``uid`` or ``uid:gid``; None when it is not one."""
    if not isinstance(user, str):
        return None
    parts = user.split(":")
    if len(parts) > 2 or not all(re.fullmatch(r"[0-9]+", part) for part in parts):
        return None
    return int(parts[0]), int(parts[-1]) if len(parts) == 2 else 0


def user_ids(user: str) -> tuple:
    return _numeric_user(user)


# Rendering ---------------------------------------------------------------------------------------


def _value(value: object) -> str:
    """A value as PostgREST's config file reads it: booleans and numbers bare, strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return '"%s"' % text


def config_settings(p: dict) -> dict:
    """Every setting of the tenant's postgrest.conf, name -> value (secrets as ``@file`` references)."""
    p = defaults_for(p)
    settings = {
        "db-uri": "@%s/db-uri" % CONFIG_MOUNT,
        "jwt-secret": "@%s/jwt-secret" % CONFIG_MOUNT,
        "db-schemas": ", ".join(p["db_schemas"]),
        "db-anon-role": p["db_anon_role"],
        "db-pool": p["db_pool"],
        "db-prepared-statements": False,
        "db-channel-enabled": False,
        "db-config": False,
        "server-port": p["server_port"],
        "admin-server-port": p["admin_port"],
    }
    if p["jwt_aud"] is not None:
        settings["jwt-aud"] = p["jwt_aud"]
    if p["max_rows"] is not None:
        settings["db-max-rows"] = p["max_rows"]
    for name in sorted(p["settings"]):
        settings[name] = p["settings"][name]
    return settings


def render_config(tenant: str, settings: dict) -> str:
    lines = ["# Managed by rotor.vps.postgrest_spawn for tenant %s; the secrets are in the files it names." % tenant]
    lines += ["%s = %s" % (name, _value(value)) for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def restart_digest(settings: dict) -> str:
    """A hash of the settings PostgREST reads only at start: the container is labelled with it."""
    fixed = {name: _value(value) for name, value in settings.items() if name in RESTART_SETTINGS}
    return hashlib.sha256(repr(sorted(fixed.items())).encode()).hexdigest()[:16]


def db_uri(p: dict) -> str:
    p = defaults_for(p)
    return "postgresql://%s:%s@%s:%d/%s" % (quote(p["authenticator"], safe=""), quote(p["authenticator_password"], safe=""),
                                            p["pgbouncer_host"], p["pgbouncer_port"], quote(p["database"], safe=""))


def new_jwt_secret() -> str:
    """A random secret: 48 bytes, URL-safe base64 (64 characters)."""
    return secrets.token_urlsafe(48)


def backend_lines(p: dict, limits_map: str) -> list:
    """The settings of the tenant's HAProxy backend (its servers come and go at run time).

    Health: PostgREST's admin ``/ready`` (200 once it has its schema cache and a connection).
    Rate limit: each client address's requests per ``rate_limit_period``, counted in the backend's own
    table; the limit itself is this backend's entry in ``limits_map`` (0 or none: no limit), so it
    changes at run time, without a reload.
    """
    period = p["rate_limit_period"]
    return [
        "balance roundrobin",
        "option httpchk",
        "http-check send meth GET uri /ready",
        "http-check expect status 200",
        *retry_lines(2),
        "stick-table type ipv6 size 100k expire %s store http_req_rate(%s)" % (period, period),
        "http-request track-sc1 src",
        "http-request set-var(txn.tenant_rate_limit) be_name,map_str_int(%s,0)" % limits_map,
        "http-request deny deny_status 429 if { var(txn.tenant_rate_limit) -m int gt 0 } "
        "{ sc_http_req_rate(1),sub(txn.tenant_rate_limit) -m int gt 0 }",
    ]


# Planning -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantFiles:
    """The tenant's files on the host."""

    config_dir: str
    tenant: str

    @property
    def directory(self) -> str:
        return os.path.join(self.config_dir, self.tenant)

    @property
    def generated_secret(self) -> str:
        return os.path.join(self.config_dir, "%s.jwt-secret" % self.tenant)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)


@dataclass
class FilesPlan:
    """What the tenant's files need: the names to write, and what that asks of the running container."""

    writes: dict = field(default_factory=dict)  # file name -> new text
    restart: list = field(default_factory=list)  # why the container must be replaced
    reload_config: bool = False  # SIGUSR2

    def actions(self) -> list:
        out = []
        for name in self.writes:
            out.append("write %s%s" % (name, " (secret)" if name in SECRET_FILES else ""))
        if self.restart:
            out.append("replace the container (%s)" % ", ".join(self.restart))
        elif self.reload_config:
            out.append("reload the configuration (SIGUSR2)")
        return out


def files_plan(current: dict, wanted: dict, *, running: bool, jwt_cache: bool = False) -> FilesPlan:
    """Compare the files on the host (name -> text or None) with the wanted ones; pure.

    PostgREST reads the connection string only when it starts: a new one replaces the container.
    It reads the JWT secret's file again on SIGUSR2, and from then on refuses tokens signed with the
    old secret (tested) - unless its JWT cache is on (``jwt-cache-max-lifetime``), which could keep
    accepting a cached token: then the container is replaced. Which settings of the config file need
    a restart is the container's restart hash's business (``restart_digest``).
    """
    plan = FilesPlan()
    for name, text in wanted.items():
        if current.get(name) != text:
            plan.writes[name] = text
    if not running:
        return plan
    changed = {name for name in plan.writes if current.get(name) is not None}
    if "db-uri" in changed:
        plan.restart.append("db-uri changed")
    if "jwt-secret" in changed and jwt_cache:
        plan.restart.append("jwt-secret changed while the JWT cache is on")
    plan.reload_config = bool(changed & {CONFIG_FILE, "jwt-secret"})
    return plan
