# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input rules of the haproxy role, as a filter.

``haproxy_input_errors`` takes the role's settings (a dict of ``haproxy_*`` variables) and returns
one message per problem, each naming the variable and the rule it broke; an empty list means the
input is valid. Type and choice checks are left to the role's argument specs.
"""

from __future__ import annotations

import ipaddress
import re

# HAProxy's time format: a whole number with an optional unit (milliseconds without one).
TIME_RE = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")
# Backend names become section names and file names (conf.d/<name>.cfg): keep them plain.
BACKEND_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BACKEND_NAME_MAX = 64
# An HTTP field name (RFC 9110 token).
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
CONTAINER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
PATH_RE = re.compile(r"^/[^\s\"'\\]*$")
TIMEOUT_NAMES = ("connect", "client", "server", "http-request", "http-keep-alive", "queue", "client-fin",
                 "server-fin", "tunnel", "check", "tarpit")
# Ports HAProxy binds inside the container.
CONTAINER_PORTS = (80, 443, 8404)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def port_errors(value: object, where: str, *, allow_zero: bool = False) -> list[str]:
    """Check a TCP port number (1-65535, or 0 when ``allow_zero``)."""
    low = 0 if allow_zero else 1
    if not _is_int(value) or not low <= value <= 65535:
        return ["%s: %r must be a whole number from %d to 65535%s"
                % (where, value, low, " (0 turns it off)" if allow_zero else "")]
    return []


def time_errors(value: object, where: str, *, positive: bool = True) -> list[str]:
    """Check an HAProxy time such as ``5s`` or ``1500ms``."""
    text = str(value) if _is_int(value) else value
    if not isinstance(text, str) or not TIME_RE.fullmatch(text):
        return ["%s: %r must be an HAProxy time: a whole number with an optional unit us, ms, s, m, h or d (e.g. 5s)"
                % (where, value)]
    if positive and int(re.match(r"^[0-9]+", text).group(0)) == 0:
        return ["%s: %r must be longer than zero" % (where, value)]
    return []


def address_errors(value: object, where: str, *, allow_empty: bool) -> list[str]:
    """Check a host address to publish ports on."""
    if allow_empty and value == "":
        return []
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return ["%s: %r must be an IPv4 or IPv6 address%s"
                % (where, value, " or empty (every interface)" if allow_empty else "")]
    return []


def network_errors(values: object, where: str) -> list[str]:
    """Check a list of addresses or CIDR networks."""
    if not isinstance(values, list):
        return ["%s: must be a list of addresses or CIDR networks" % where]
    errors = []
    for index, value in enumerate(values):
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            errors.append("%s[%d]: %r must be an IP address or a CIDR network such as 10.0.0.0/8" % (where, index, value))
    return errors


def line_errors(values: object, where: str) -> list[str]:
    """Check extra configuration lines: strings without line breaks."""
    if not isinstance(values, list):
        return ["%s: must be a list of configuration lines" % where]
    return [
        "%s[%d]: must be one line of HAProxy configuration (a string without line breaks)" % (where, index)
        for index, value in enumerate(values)
        if not isinstance(value, str) or "\n" in value or "\r" in value
    ]


def backend_errors(backends: object, where: str, *, reserved: list[str]) -> list[str]:
    """Check haproxy_backends: names, health paths, check timings, timeouts, duplicates."""
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
        if not isinstance(name, str) or not name:
            errors.append("%s.name: a name is required" % at)
        elif len(name) > BACKEND_NAME_MAX or not BACKEND_NAME_RE.fullmatch(name):
            errors.append(
                "%s.name: %r must start with a letter or digit, contain only letters, digits, '_', '.' and '-', "
                "and be at most %d characters" % (at, name, BACKEND_NAME_MAX)
            )
        elif name in reserved:
            errors.append("%s.name: %r is used by the role itself (reserved: %s)" % (at, name, ", ".join(reserved)))
        elif name in seen:
            errors.append("%s.name: %r is already used by %s[%d]; names must be unique" % (at, name, where, seen[name]))
        else:
            seen[name] = index
        if "health_path" in backend and not (isinstance(backend["health_path"], str)
                                             and PATH_RE.fullmatch(backend["health_path"])):
            errors.append("%s.health_path: %r must start with / and contain no spaces or quotes"
                          % (at, backend["health_path"]))
        for key in ("check_interval", "timeout_connect", "timeout_server", "timeout_queue"):
            if key in backend:
                errors += time_errors(backend[key], "%s.%s" % (at, key))
        for key, low in (("check_rise", 1), ("check_fall", 1), ("retries", 0)):
            if key in backend and not (_is_int(backend[key]) and backend[key] >= low):
                errors.append("%s.%s: %r must be a whole number of at least %d" % (at, key, backend[key], low))
    return errors


def haproxy_input_errors(settings: dict, reserved: list | None = None) -> list[str]:
    """Return every problem with the haproxy role's settings (keys are the variable names).

    ``reserved`` lists section names the role uses itself, which backends must not take.
    """
    s = settings
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
    for name in ("haproxy_http_port", "haproxy_https_port", "haproxy_stats_port"):
        errors += port_errors(s.get(name), name)
    if s.get("haproxy_http_port") == s.get("haproxy_https_port") and _is_int(s.get("haproxy_http_port")):
        errors.append("haproxy_https_port: %r is already haproxy_http_port; the ports must differ" % s["haproxy_https_port"])
    runtime = s.get("haproxy_runtime_tcp_port", 0)
    errors += port_errors(runtime, "haproxy_runtime_tcp_port", allow_zero=True)
    if runtime in CONTAINER_PORTS:
        errors.append("haproxy_runtime_tcp_port: %r is taken inside the container (%s)"
                      % (runtime, ", ".join(str(p) for p in CONTAINER_PORTS)))
    errors += address_errors(s.get("haproxy_publish_address"), "haproxy_publish_address", allow_empty=True)
    errors += address_errors(s.get("haproxy_stats_publish_address"), "haproxy_stats_publish_address", allow_empty=False)
    requests = s.get("haproxy_rate_limit_requests")
    if not _is_int(requests) or requests < 0:
        errors.append("haproxy_rate_limit_requests: %r must be a whole number, 0 to turn the limit off" % (requests,))
    errors += time_errors(s.get("haproxy_rate_limit_period"), "haproxy_rate_limit_period")
    errors += network_errors(s.get("haproxy_rate_limit_exempt_networks"), "haproxy_rate_limit_exempt_networks")
    timeouts = s.get("haproxy_timeouts") or {}
    for key, value in timeouts.items():
        if key not in TIMEOUT_NAMES:
            errors.append("haproxy_timeouts.%s: unknown timeout; known ones are %s" % (key, ", ".join(TIMEOUT_NAMES)))
        else:
            errors += time_errors(value, "haproxy_timeouts.%s" % key)
    for key in ("connect", "client", "server"):
        if key not in timeouts:
            errors.append("haproxy_timeouts.%s: required (HAProxy warns about proxies without it)" % key)
    errors += time_errors(s.get("haproxy_hard_stop_after"), "haproxy_hard_stop_after")
    hsts = s.get("haproxy_hsts_max_age")
    if not _is_int(hsts) or hsts < 0:
        errors.append("haproxy_hsts_max_age: %r must be a whole number of seconds, 0 to send no HSTS header" % (hsts,))
    for name, value in (s.get("haproxy_security_headers") or {}).items():
        if not HEADER_NAME_RE.match(str(name)):
            errors.append("haproxy_security_headers: %r is not a valid header name" % (name,))
        elif not isinstance(value, str) or not value or re.search(r"[\r\n\"]", value):
            errors.append("haproxy_security_headers.%s: the value must be a non-empty string without quotes or line breaks" % name)
    for index, name in enumerate(s.get("haproxy_hidden_headers") or []):
        if not HEADER_NAME_RE.match(str(name)):
            errors.append("haproxy_hidden_headers[%d]: %r is not a valid header name" % (index, name))
    maxconn = s.get("haproxy_maxconn")
    if not _is_int(maxconn) or maxconn < 1:
        errors.append("haproxy_maxconn: %r must be a whole number of at least 1" % (maxconn,))
    days = s.get("haproxy_default_cert_days")
    if not _is_int(days) or days < 1:
        errors.append("haproxy_default_cert_days: %r must be a whole number of at least 1" % (days,))
    for name in ("haproxy_global_extra", "haproxy_frontend_extra"):
        errors += line_errors(s.get(name, []), name)
    errors += backend_errors(s.get("haproxy_backends", []), "haproxy_backends",
                             reserved=list(reserved or []))
    return errors


class FilterModule:
    """rotor.vps haproxy input rules."""

    def filters(self):
        return {"haproxy_input_errors": haproxy_input_errors}
