# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The input rules of each role, run by ``playbooks/site.yml``'s check play before any host changes.

Each ``<role>_input_errors`` takes the role's variables by name (``{"postgres_port": 5432, ...}``)
and returns one message per problem, naming the variable and the rule; an empty list means the
input is valid. The rules themselves are the shared ones of ``_validate`` and, for rotated
services, the ``haproxy_rotate`` module's own (``_web_service``): a role never has a rule of its own
that a module could disagree with. Types and choices are left to the roles' argument specs, so
values templated into strings (``"6432"``) count as the whole numbers they are.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Optional

from ansible_collections.rotor.vps.plugins.module_utils._backup_plan import backup_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._certbot_sites import (
    DEFAULT_KEYS as CERTBOT_DEFAULT_KEYS,
    certbot_defaults_errors,
    certbot_sites_errors,
    only_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._observability import observability_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._postgrest import TENANT_BACKEND_PREFIX
from ansible_collections.rotor.vps.plugins.module_utils._tenants import tenants_input_errors
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    backend_name_errors,
    calendar_errors,
    duration_errors,
    haproxy_time_errors,
    health_path_errors,
    is_int,
    listed_name_errors,
    memory_bytes,
    memory_errors,
    positive_number_errors,
    network_errors,
    one_line_errors,
    pg_memory_bytes,
    port_errors,
    SERVICE_ADDRESS_RE,
    setting_name_errors,
    socket_dir_errors,
    tmpfs_volume_errors,
    whole_number_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._web_service import rotation_service_errors

# An HTTP field name (RFC 9110 token).
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
CONTAINER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HAPROXY_TIMEOUTS = ("connect", "client", "server", "http-request", "http-keep-alive", "queue", "client-fin",
                    "server-fin", "tunnel", "check", "tarpit")
# Ports HAProxy binds inside its container (8405: the container's health check, __haproxy_health_port).
HAPROXY_CONTAINER_PORTS = (80, 443, 8404, 8405)
# A PostgreSQL role name the roles write unquoted (the PgBouncer admin).
PG_USER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# postgresql.conf names: lowercase words, optionally one dotted prefix (an extension's settings).
PG_SETTING_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
# A registry mirror: a URL of a host, no path.
MIRROR_RE = re.compile(r"^https?://[^/\s]+/?$")
# A name of haproxy_admin_services (its frontend and backend are admin_<name>).
ADMIN_SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# A size with a k, m or g suffix, as Docker's json-file log driver reads it.
LOG_SIZE_RE = re.compile(r"^[1-9][0-9]*[kmg]$")


def as_int(value: object) -> Optional[int]:
    """A whole number, or its decimal text as a templated variable gives it; None otherwise."""
    if is_int(value):
        return value  # type: ignore[return-value]
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _number(settings: dict, name: str, minimum: int = 0, maximum: Optional[int] = None, hint: str = "") -> list[str]:
    value = settings.get(name)
    return whole_number_errors(as_int(value) if as_int(value) is not None else value, name, minimum, maximum, hint)


def _secret(settings: dict, name: str, why: str) -> list[str]:
    value = settings.get(name)
    if isinstance(value, str) and value:
        return []
    return ["%s: required (keep it in the vault), %s" % (name, why)]


def _container_limits(settings: dict, prefix: str, keys: tuple = ("memory", "cpus", "pids_limit")) -> list[str]:
    """A role's container limits, ``<prefix>_memory``, ``<prefix>_cpus`` and ``<prefix>_pids_limit`` (of ``keys``)."""
    errors = memory_errors(settings.get(prefix + "_memory"), prefix + "_memory") if "memory" in keys else []
    if "cpus" in keys:
        cpus = settings.get(prefix + "_cpus")
        try:
            cpus = float(cpus) if isinstance(cpus, str) else cpus
        except ValueError:
            pass  # reported as it is
        errors += positive_number_errors(cpus, prefix + "_cpus")
    return errors + (_number(settings, prefix + "_pids_limit", 1) if "pids_limit" in keys else [])


def _address_errors(value: object, where: str, *, allow_empty: bool) -> list[str]:
    if allow_empty and value == "":
        return []
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return ["%s: %r must be an IPv4 or IPv6 address%s"
                % (where, value, " or empty (every interface)" if allow_empty else "")]
    return []


def _cidr_list_errors(values: object, where: str) -> list[str]:
    if not isinstance(values, list):
        return ["%s: must be a list of addresses or CIDR networks" % where]
    errors = []
    for index, value in enumerate(values):
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            errors.append("%s[%d]: %r must be an IP address or a CIDR network such as 10.0.0.0/8" % (where, index, value))
    return errors


def _lines_errors(values: object, where: str) -> list[str]:
    if not isinstance(values, list):
        return ["%s: must be a list of configuration lines" % where]
    return ["%s[%d]: must be one line of configuration (a string without line breaks)" % (where, index)
            for index, value in enumerate(values) if not isinstance(value, str) or one_line_errors(value, "")]


def _settings_errors(settings: object, where: str, *, managed: list, name_errors: Callable[[object, str], list],
                     what: str) -> list[str]:
    """A dict of extra configuration settings: names by rule, none the role writes itself, one-line values."""
    if not isinstance(settings, dict):
        return ["%s: must be a dict of %s settings by name" % (where, what)]
    errors = []
    for key, value in settings.items():
        problems = name_errors(key, where)
        if problems:
            errors += problems
        elif key in managed:
            errors.append("%s: %s is set by the role (use its own variable)" % (where, key))
        elif isinstance(value, (dict, list)) or value is None:
            errors.append("%s.%s: the value must be a string, number or boolean" % (where, key))
        else:
            errors += one_line_errors(value, "%s.%s" % (where, key))
    return errors


def docker_host_input_errors(s: dict) -> list[str]:
    """The docker_host role's variables."""
    errors = []
    if s.get("docker_host_source") == "docker":
        for name in ("docker_host_docker_repo_url", "docker_host_docker_repo_key_url"):
            if not s.get(name):
                errors.append('%s: required when docker_host_source is "docker"' % name)
    size = s.get("docker_host_log_max_size")
    if not isinstance(size, str) or not LOG_SIZE_RE.fullmatch(size):
        errors.append("docker_host_log_max_size: %r must be a number with a k, m or g suffix, e.g. 10m" % (size,))
    errors += _number(s, "docker_host_log_max_file", 1)
    mirrors = s.get("docker_host_registry_mirrors") or []
    if not isinstance(mirrors, list):
        return errors + ["docker_host_registry_mirrors: must be a list of URLs"]
    errors += ["docker_host_registry_mirrors[%d]: %r must be an http:// or https:// URL with no path" % (index, url)
               for index, url in enumerate(mirrors) if not isinstance(url, str) or not MIRROR_RE.fullmatch(url)]
    return errors


def networks_input_errors(s: dict) -> list[str]:
    """The networks role's variables."""
    return (network_errors(s.get("networks_list") or [], "networks_list")
            + tmpfs_volume_errors(s.get("networks_tmpfs_volumes") or [], "networks_tmpfs_volumes"))


def haproxy_backend_errors(backends: object, where: str, *, reserved: list) -> list[str]:
    """haproxy_backends: names, health paths, check timings, timeouts, duplicates."""
    if not isinstance(backends, list):
        return ["%s: must be a list of backends" % where]
    errors: list[str] = []
    seen: dict[str, int] = {}
    for index, backend in enumerate(backends):
        at = "%s[%d]" % (where, index)
        if not isinstance(backend, dict):
            errors.append("%s: must be a dict with at least a name" % at)
            continue
        name = backend.get("name")
        problems = backend_name_errors(name, at + ".name")
        if problems:
            errors += problems
        elif name in reserved:
            errors.append("%s.name: %r is used by the role itself (reserved: %s)" % (at, name, ", ".join(reserved)))
        elif name.startswith(TENANT_BACKEND_PREFIX):
            errors.append("%s.name: %r starts with %r, which tenants' backends use (rotor.vps.postgrest_spawn)"
                          % (at, name, TENANT_BACKEND_PREFIX))
        elif name in seen:
            errors.append("%s.name: %r is already used by %s[%d]; names must be unique" % (at, name, where, seen[name]))
        else:
            seen[name] = index
        if "health_path" in backend:
            errors += health_path_errors(backend["health_path"], at + ".health_path")
        for key in ("check_interval", "timeout_connect", "timeout_server", "timeout_queue"):
            if key in backend:
                errors += haproxy_time_errors(backend[key], "%s.%s" % (at, key))
        for key, low in (("check_rise", 1), ("check_fall", 1), ("retries", 0)):
            if key in backend:
                errors += whole_number_errors(backend[key], "%s.%s" % (at, key), low)
    return errors


def haproxy_input_errors(s: dict, reserved: Optional[list] = None) -> list[str]:
    """The haproxy role's variables; ``reserved`` lists section names the role uses itself."""
    errors: list[str] = []
    if not s.get("haproxy_stats_password"):
        errors.append("haproxy_stats_password: required; set it (from the vault) to protect the stats page")
    elif not isinstance(s["haproxy_stats_password"], str):
        errors.append("haproxy_stats_password: must be a string")
    if not USER_RE.fullmatch(str(s.get("haproxy_stats_user", ""))):
        errors.append("haproxy_stats_user: %r must be letters, digits, '_', '.' or '-'" % (s.get("haproxy_stats_user"),))
    if not CONTAINER_NAME_RE.match(str(s.get("haproxy_container_name", ""))):
        errors.append("haproxy_container_name: %r must start with a letter or digit and contain only letters, "
                      "digits, '_', '.' and '-'" % (s.get("haproxy_container_name"),))
    if not s.get("haproxy_image"):
        errors.append("haproxy_image: required")
    errors += _container_limits(s, "haproxy")
    for name in ("haproxy_http_port", "haproxy_https_port", "haproxy_stats_port"):
        errors += port_errors(s.get(name), name)
    if s.get("haproxy_http_port") == s.get("haproxy_https_port") and is_int(s.get("haproxy_http_port")):
        errors.append("haproxy_https_port: %r is already haproxy_http_port; the ports must differ" % s["haproxy_https_port"])
    runtime = s.get("haproxy_runtime_tcp_port", 0)
    errors += port_errors(runtime, "haproxy_runtime_tcp_port", allow_zero=True)
    if runtime in HAPROXY_CONTAINER_PORTS:
        errors.append("haproxy_runtime_tcp_port: %r is taken inside the container (%s)"
                      % (runtime, ", ".join(str(p) for p in HAPROXY_CONTAINER_PORTS)))
    errors += _address_errors(s.get("haproxy_publish_address"), "haproxy_publish_address", allow_empty=True)
    errors += _address_errors(s.get("haproxy_stats_publish_address"), "haproxy_stats_publish_address", allow_empty=False)
    errors += whole_number_errors(s.get("haproxy_rate_limit_requests"), "haproxy_rate_limit_requests", 0,
                                  hint=" (0 turns the limit off)")
    errors += haproxy_time_errors(s.get("haproxy_rate_limit_period"), "haproxy_rate_limit_period")
    errors += _cidr_list_errors(s.get("haproxy_rate_limit_exempt_networks"), "haproxy_rate_limit_exempt_networks")
    timeouts = s.get("haproxy_timeouts") or {}
    for key, value in timeouts.items():
        if key not in HAPROXY_TIMEOUTS:
            errors.append("haproxy_timeouts.%s: unknown timeout; known ones are %s" % (key, ", ".join(HAPROXY_TIMEOUTS)))
        else:
            errors += haproxy_time_errors(value, "haproxy_timeouts.%s" % key)
    for key in ("connect", "client", "server"):
        if key not in timeouts:
            errors.append("haproxy_timeouts.%s: required (HAProxy warns about proxies without it)" % key)
    errors += haproxy_time_errors(s.get("haproxy_hard_stop_after"), "haproxy_hard_stop_after")
    errors += whole_number_errors(s.get("haproxy_hsts_max_age"), "haproxy_hsts_max_age", 0,
                                  hint=" (seconds; 0 sends no HSTS header)")
    for name, value in (s.get("haproxy_security_headers") or {}).items():
        if not HEADER_NAME_RE.match(str(name)):
            errors.append("haproxy_security_headers: %r is not a valid header name" % (name,))
        elif not isinstance(value, str) or not value or re.search(r"[\r\n\"]", value):
            errors.append("haproxy_security_headers.%s: the value must be a non-empty string without quotes or line breaks" % name)
    for index, name in enumerate(s.get("haproxy_hidden_headers") or []):
        if not HEADER_NAME_RE.match(str(name)):
            errors.append("haproxy_hidden_headers[%d]: %r is not a valid header name" % (index, name))
    errors += whole_number_errors(s.get("haproxy_maxconn"), "haproxy_maxconn", 1)
    errors += whole_number_errors(s.get("haproxy_default_cert_days"), "haproxy_default_cert_days", 1)
    for name in ("haproxy_global_extra", "haproxy_frontend_extra"):
        errors += _lines_errors(s.get(name, []), name)
    errors += haproxy_backend_errors(s.get("haproxy_backends", []), "haproxy_backends", reserved=list(reserved or []))
    acme = s.get("haproxy_acme_webroot_server") or ""
    if acme and not _service_address_ok(acme):
        errors.append("haproxy_acme_webroot_server: %r must be '<container name>:<port>' (such as rotor-acme:8080), or "
                      "empty" % (acme,))
    return errors + haproxy_admin_service_errors(s.get("haproxy_admin_services", []), s)


def _service_address_ok(value: object) -> bool:
    match = SERVICE_ADDRESS_RE.fullmatch(value) if isinstance(value, str) else None
    return bool(match) and 1 <= int(match.group(1)) <= 65535


def haproxy_admin_service_errors(services: object, s: dict) -> list[str]:
    """haproxy_admin_services: each {name, port, server}, names and ports unique and clear of the role's own."""
    where = "haproxy_admin_services"
    if not isinstance(services, list):
        return ["%s: must be a list of {name, port, server}" % where]
    errors: list[str] = []
    taken: dict = {port: "the container's own port %d" % port for port in HAPROXY_CONTAINER_PORTS}
    taken.update({s.get(name): name for name in ("haproxy_http_port", "haproxy_https_port", "haproxy_stats_port")})
    names: set = set()
    for index, service in enumerate(services):
        at = "%s[%d]" % (where, index)
        if not isinstance(service, dict) or set(service) - {"name", "port", "server"}:
            errors.append("%s: must be a dict of name, port and server" % at)
            continue
        errors += listed_name_errors(service.get("name"), at, names, ADMIN_SERVICE_NAME_RE,
                                     "lower-case letters, digits and '_' (a letter first)")
        port = service.get("port")
        port_problems = port_errors(port, at + ".port")
        errors += port_problems
        if not port_problems and port in taken:
            errors.append("%s.port: %r is already taken (%s)" % (at, port, taken[port]))
        elif not port_problems:
            taken[port] = "%s.port" % at
        if not _service_address_ok(service.get("server")):
            errors.append("%s.server: %r must be '<container name>:<port>' (such as rotor-grafana:3000)"
                          % (at, service.get("server")))
    return errors


def postgres_input_errors(s: dict, managed: Optional[list] = None) -> list[str]:
    """The postgres role's variables; ``managed`` lists the settings the role writes itself."""
    errors = _secret(s, "postgres_superuser_password", 'it is the password of the superuser "postgres"')
    if not isinstance(s.get("postgres_superuser_previous_password") or "", str):
        errors.append("postgres_superuser_previous_password: must be a string (the current password, from the vault), "
                      "or empty")
    errors += _number(s, "postgres_tenant_connection_budget", 1)
    reserve, reserved = as_int(s.get("postgres_connection_reserve")), as_int(s.get("postgres_superuser_reserved_connections"))
    if reserve is None or reserved is None or reserve <= reserved:
        errors.append("postgres_connection_reserve: %r must be a whole number larger than "
                      "postgres_superuser_reserved_connections (%r): the reserve also holds the admin, exporter and "
                      "module connections" % (s.get("postgres_connection_reserve"),
                                              s.get("postgres_superuser_reserved_connections")))
    budget, pids = as_int(s.get("postgres_tenant_connection_budget")), as_int(s.get("postgres_pids_limit"))
    if budget is not None and reserve is not None:
        floor = budget + reserve + 32
        if pids is None or pids < floor:
            errors.append("postgres_pids_limit: %r must leave room for one process per connection: at least "
                          "max_connections + 32 = %d" % (s.get("postgres_pids_limit"), floor))
    errors += postgres_memory_errors(s, None if budget is None or reserve is None else budget + reserve)
    errors += _container_limits(s, "postgres", keys=("cpus",))

    def name_errors(key: object, where: str) -> list[str]:
        if isinstance(key, str) and PG_SETTING_RE.fullmatch(key):
            return []
        return ["%s: %s is not a setting name (lower-case letters, digits and _, optionally one dotted prefix)"
                % (where, key)]

    errors += _settings_errors(s.get("postgres_settings"), "postgres_settings", managed=list(managed or []),
                               name_errors=name_errors, what="postgresql.conf")
    return errors


# What PostgreSQL needs besides shared_buffers: each connection's backend (its catalog and plan
# caches, the page tables of shared_buffers; about 5 MB measured with PostgREST's schema cache
# queries, and a 1g container killed a backend at about 145 connections), and the server's own
# processes (postmaster, checkpointer, WAL writer, autovacuum).
POSTGRES_MEMORY_PER_CONNECTION = 6 * 1024**2
POSTGRES_MEMORY_BASE = 64 * 1024**2


def postgres_memory_errors(s: dict, max_connections: Optional[int]) -> list[str]:
    """postgres_memory must hold shared_buffers and every connection the budget allows."""
    errors = memory_errors(s.get("postgres_memory"), "postgres_memory")
    shared = pg_memory_bytes(s.get("postgres_shared_buffers"))
    if shared is None:
        errors.append("postgres_shared_buffers: %r must be a PostgreSQL memory size: a whole number with kB, MB, GB "
                      "or TB (e.g. 256MB)" % (s.get("postgres_shared_buffers"),))
    memory = memory_bytes(s.get("postgres_memory"))
    if errors or memory is None or max_connections is None:
        return errors
    needed = shared + max_connections * POSTGRES_MEMORY_PER_CONNECTION + POSTGRES_MEMORY_BASE
    if memory < needed:
        mib = 1024**2
        errors.append("postgres_memory: %s cannot hold postgres_shared_buffers (%s) and %d connections "
                      "(max_connections: postgres_tenant_connection_budget + postgres_connection_reserve) at %d MB "
                      "each plus %d MB: at least %dm; raise postgres_memory or lower the budget"
                      % (s.get("postgres_memory"), s.get("postgres_shared_buffers"), max_connections,
                         POSTGRES_MEMORY_PER_CONNECTION // mib, POSTGRES_MEMORY_BASE // mib, -(-needed // mib)))
    return errors


def pgbouncer_input_errors(s: dict, managed: Optional[list] = None) -> list[str]:
    """The pgbouncer role's variables; ``managed`` lists the settings the role writes itself."""
    user = s.get("pgbouncer_admin_user")
    errors = _secret(s, "pgbouncer_admin_password", "it is the password of the admin console user %s" % (user,))
    if not isinstance(user, str) or not PG_USER_RE.fullmatch(user):
        errors.append("pgbouncer_admin_user: %r must be a plain user name (lower-case letters, digits, _)" % (user,))
    stats_user = s.get("pgbouncer_stats_user")
    if not isinstance(stats_user, str) or not PG_USER_RE.fullmatch(stats_user):
        errors.append("pgbouncer_stats_user: %r must be a plain user name (lower-case letters, digits, _)" % (stats_user,))
    elif stats_user == user:
        errors.append("pgbouncer_stats_user: %r is already pgbouncer_admin_user; the stats user must be another" % user)
    if not isinstance(s.get("pgbouncer_stats_password", ""), str):
        errors.append("pgbouncer_stats_password: must be a string (empty for no stats user)")
    port = s.get("pgbouncer_port")
    errors += port_errors(as_int(port) if as_int(port) is not None else port, "pgbouncer_port", minimum=1024)
    errors += _number(s, "pgbouncer_max_client_conn", 1)
    errors += _container_limits(s, "pgbouncer")
    errors += _number(s, "pgbouncer_default_pool_size", 1)
    socket_dir = s.get("pgbouncer_postgres_socket_dir")
    if socket_dir != "":
        errors += socket_dir_errors(socket_dir, "pgbouncer_postgres_socket_dir")
    host = str(s.get("pgbouncer_postgres_host", ""))
    if host.startswith("/") and not socket_dir:
        errors.append('pgbouncer_postgres_host: %r is a socket directory, but pgbouncer_postgres_socket_dir is "" '
                      "(nothing is mounted there)" % host)
    errors += _settings_errors(s.get("pgbouncer_settings"), "pgbouncer_settings", managed=list(managed or []),
                               name_errors=setting_name_errors, what="[pgbouncer]")
    return errors


def rotation_input_errors(s: dict) -> list[str]:
    """The rotation role's variables (its services are the haproxy_rotate module's options)."""
    services = s.get("rotation_services") or []
    errors = rotation_service_errors(services, "rotation_services")
    errors += calendar_errors(s.get("rotation_interval"), "rotation_interval")
    errors += duration_errors(s.get("rotation_jitter"), "rotation_jitter", allow_zero=True)
    errors += _number(s, "rotation_run_timeout", 1, hint=" (seconds)")
    present = [svc.get("name") for svc in services if isinstance(svc, dict) and svc.get("state", "present") == "present"]
    errors += ["rotate_services: %s is not a present service of rotation_services" % name
               for name in s.get("rotation_rotate_services") or [] if name not in present]
    return errors


def certbot_input_errors(s: dict) -> list[str]:
    """The certbot role's variables: its sites by certbot_site's rules, the defaults, the webroot and the timer."""
    defaults = {key: s.get("certbot_" + key) for key in CERTBOT_DEFAULT_KEYS}
    errors = certbot_defaults_errors(defaults)
    errors += certbot_sites_errors(s.get("certbot_sites"), defaults)
    errors += only_errors(s.get("certbot_only"), s.get("certbot_sites"), "renew_sites")
    if s.get("certbot_mode") not in ("systemd", "external"):
        errors.append("certbot_mode: %r must be systemd (a timer on the VPS) or external (AWX or cron run "
                      "playbooks/renew_certs.yml)" % (s.get("certbot_mode"),))
    errors += calendar_errors(s.get("certbot_on_calendar"), "certbot_on_calendar")
    errors += duration_errors(s.get("certbot_jitter"), "certbot_jitter", allow_zero=True)
    errors += _number(s, "certbot_run_timeout", 60, hint=" (seconds)")
    errors += _number(s, "certbot_timeout", 10, hint=" (seconds)")
    errors += port_errors(s.get("certbot_webroot_port"), "certbot_webroot_port", minimum=1024)
    errors += _container_limits(s, "certbot_webroot")
    if not CONTAINER_NAME_RE.match(str(s.get("certbot_webroot_container_name", ""))):
        errors.append("certbot_webroot_container_name: %r must start with a letter or digit and contain only letters, "
                      "digits, '_', '.' and '-'" % (s.get("certbot_webroot_container_name"),))
    bundle = s.get("certbot_ca_bundle") or ""
    if bundle and (not isinstance(bundle, str) or "-----BEGIN CERTIFICATE-----" not in bundle):
        errors.append("certbot_ca_bundle: must be the PEM text of the ACME server's CA certificates "
                      "(-----BEGIN CERTIFICATE-----), or empty")
    return errors


ROLE_RULES: dict[str, Callable[..., list]] = {
    "docker_host": docker_host_input_errors,
    "networks": networks_input_errors,
    "haproxy": haproxy_input_errors,
    "postgres": postgres_input_errors,
    "pgbouncer": pgbouncer_input_errors,
    "rotation": rotation_input_errors,
    "tenants": tenants_input_errors,
    "certbot": certbot_input_errors,
    "observability": observability_input_errors,
    "backup": backup_input_errors,
}


def role_input_errors(settings: dict, role: str, **options) -> list[str]:
    """The input rules of ``role`` on its variables (``options`` as that role's rules take them)."""
    if role not in ROLE_RULES:
        raise ValueError("role must be one of %s, got %r" % (", ".join(sorted(ROLE_RULES)), role))
    return ROLE_RULES[role](settings, **options)
