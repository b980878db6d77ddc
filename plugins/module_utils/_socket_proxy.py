# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker API broker (the socket_proxy role): which requests it lets through, and its input rules.

The broker is HAProxy in front of the Docker socket. It lets through GET and HEAD requests of the
endpoints listed here and nothing else. Each endpoint is a path (a container or network named by a
strict character class, an optional ``/v1.NN`` version prefix) and the query parameters it takes.
``endpoint_rules`` gives the anchored regular expressions the role's template writes as HAProxy
ACLs; ``allows`` applies the same expressions and the broker's other rules in Python, so the unit
tests hold them against tables of requests that must and must not pass, and the integration test
sends those requests to the real broker.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    docker_name_errors,
    haproxy_time_errors,
    memory_errors,
    port_errors,
    positive_number_errors,
    whole_number_errors,
)

# An optional API version prefix, as Docker clients send it (/v1.24/info, /v1.41/containers/json).
VERSION_PREFIX = r"(/v1\.[0-9]{1,2})?"
# A container or network as a path segment: an id or a name (Docker's own name rule), no dots first.
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
# A query value as Go's url.Values.Encode writes it (everything else percent-encoded).
QUERY_VALUE = r"[A-Za-z0-9%._~+-]*"
# Each endpoint: its path ("{name}" for a container or network) and the query parameters it takes.
ENDPOINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ping": ("/_ping", ()),
    "version": ("/version", ()),
    "info": ("/info", ()),
    "events": ("/events", ("since", "until", "filters")),
    "containers": ("/containers/json", ("all", "limit", "size", "filters")),
    "container": ("/containers/{name}/json", ("size",)),
    "container_logs": ("/containers/{name}/logs",
                       ("follow", "stdout", "stderr", "since", "until", "timestamps", "tail", "details")),
    "networks": ("/networks", ("filters",)),
    "network": ("/networks/{name}", ("verbose", "scope")),
}
# What the token clients get by default: the log shipper (containers, their logs, events) and any
# Prometheus-style docker discovery (containers and networks).
DEFAULT_ENDPOINTS = ("ping", "version", "info", "events", "containers", "container", "container_logs",
                     "networks", "network")
# cAdvisor (0.38) asks for these only: it cannot send a token, so its frontend is this list alone.
CADVISOR_ENDPOINTS = ("ping", "version", "info", "container")
METHODS = ("GET", "HEAD")
# Substrings refused anywhere in the path, whatever the endpoint: traversal, empty segments,
# encodings Docker would decode after the broker matched, and backslashes.
FORBIDDEN_IN_PATH = ("..", "//", "%", "\\")
# A bearer token (RFC 6750's b64token), long enough not to be guessed: e.g. `openssl rand -hex 32`.
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/-]{32,512}=*$")


def path_regex(endpoint: str) -> str:
    """The anchored regular expression of an endpoint's path (HAProxy's ``path -m reg`` and Python's ``re``)."""
    path = ENDPOINTS[endpoint][0]
    return "^%s%s$" % (VERSION_PREFIX, re.escape(path).replace(re.escape("{name}"), NAME))


def query_regex(endpoint: str) -> Optional[str]:
    """The anchored regular expression of the query strings an endpoint takes; None when it takes none."""
    params = ENDPOINTS[endpoint][1]
    if not params:
        return None
    pair = "(%s)=%s" % ("|".join(params), QUERY_VALUE)
    return "^%s(&%s)*$" % (pair, pair)


def endpoint_rules(endpoints: "Iterable[str] | str") -> list[dict]:
    """One dict per endpoint for the template: ``name``, ``path`` and ``query`` (None: no query string).

    ``endpoints`` is a list of names, or ``"cadvisor"`` for cAdvisor's own (CADVISOR_ENDPOINTS).
    """
    names = CADVISOR_ENDPOINTS if endpoints == "cadvisor" else endpoints
    return [{"name": name, "path": path_regex(name), "query": query_regex(name)} for name in names]


def allows(endpoints: Iterable[str], method: str, target: str) -> bool:
    """Whether the broker lets ``method target`` through to an endpoint of ``endpoints``.

    The Python model of the broker's rules (the token and headers aside): a read-only method, no
    forbidden substring or control character in the path, then a path and query of one endpoint.
    """
    if method not in METHODS:
        return False
    path, mark, query = target.partition("?")
    if any(bad in path for bad in FORBIDDEN_IN_PATH) or any(ord(char) < 0x21 or ord(char) > 0x7e for char in target):
        return False
    for rule in endpoint_rules(endpoints):
        if re.search(rule["path"], path):
            if not mark:
                return True
            return rule["query"] is not None and re.search(rule["query"], query) is not None
    return False


def endpoint_list_errors(value: object, where: str) -> list[str]:
    """A non-empty list of known endpoint names, each once."""
    if not isinstance(value, list) or not value:
        return ["%s: must be a non-empty list of endpoints (of %s)" % (where, ", ".join(ENDPOINTS))]
    errors = ["%s[%d]: %r is not an endpoint the broker knows (%s)" % (where, index, name, ", ".join(ENDPOINTS))
              for index, name in enumerate(value) if name not in ENDPOINTS]
    repeated = sorted({name for name in value if isinstance(name, str) and value.count(name) > 1})
    if repeated:
        errors.append("%s: %s listed more than once" % (where, ", ".join(repeated)))
    return errors


def socket_proxy_input_errors(s: dict) -> list[str]:
    """The socket_proxy role's variables, by name."""
    errors: list[str] = []
    token = s.get("socket_proxy_token")
    if not isinstance(token, str) or not token:
        errors.append("socket_proxy_token: required (keep it in the vault); the broker's clients send it as "
                      "'Authorization: Bearer <token>'")
    elif not TOKEN_RE.fullmatch(token):
        # The message never repeats the token.
        errors.append("socket_proxy_token: must be at least 32 letters, digits or '.', '_', '~', '+', '/', '-' "
                      "(optionally ending in '='), e.g. from `openssl rand -hex 32`")
    if not str(s.get("socket_proxy_docker_host", "")).startswith("unix:///"):
        errors.append("socket_proxy_docker_host: %r must be the engine's unix socket (unix:///var/run/docker.sock): "
                      "the broker mounts it" % (s.get("socket_proxy_docker_host"),))
    for name in ("socket_proxy_container_name", "socket_proxy_network", "socket_proxy_cadvisor_network"):
        errors += docker_name_errors(s.get(name), name)
    if s.get("socket_proxy_network") == s.get("socket_proxy_cadvisor_network"):
        errors.append("socket_proxy_cadvisor_network: %r is already socket_proxy_network; cAdvisor's network must "
                      "be its own (its frontend trusts the network's addresses)" % (s.get("socket_proxy_network"),))
    if not s.get("socket_proxy_image"):
        errors.append("socket_proxy_image: required")
    ports = [s.get("socket_proxy_port"), s.get("socket_proxy_cadvisor_port"), s.get("socket_proxy_health_port")]
    for name, port in zip(("socket_proxy_port", "socket_proxy_cadvisor_port", "socket_proxy_health_port"), ports):
        errors += port_errors(port, name, minimum=1024)
    if len(set(str(port) for port in ports)) != len(ports):
        errors.append("socket_proxy_port, socket_proxy_cadvisor_port, socket_proxy_health_port: %r must differ"
                      % (ports,))
    errors += endpoint_list_errors(s.get("socket_proxy_endpoints"), "socket_proxy_endpoints")
    if not isinstance(s.get("socket_proxy_cadvisor_enabled"), bool):
        errors.append("socket_proxy_cadvisor_enabled: must be true or false")
    errors += haproxy_time_errors(s.get("socket_proxy_stream_timeout"), "socket_proxy_stream_timeout")
    errors += whole_number_errors(s.get("socket_proxy_maxconn"), "socket_proxy_maxconn", 1)
    errors += memory_errors(s.get("socket_proxy_memory"), "socket_proxy_memory")
    errors += positive_number_errors(s.get("socket_proxy_cpus"), "socket_proxy_cpus")
    errors += whole_number_errors(s.get("socket_proxy_pids_limit"), "socket_proxy_pids_limit", 8)
    return errors
