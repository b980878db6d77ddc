# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input rules for what a module gives Docker: images, capabilities, users, labels, the engine's address and a
container's networks and limits (the general rules live in _validate.py)."""

from __future__ import annotations

import re

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    SOCKET_PATH_MAX,
    docker_name_errors,
    host_path_errors,
    memory_errors,
    positive_number_errors,
    shown,
    text_errors,
    whole_number_errors,
)

# A Docker image reference: [registry[:port]/]repository[:tag][@sha256:digest], as `docker pull` takes it.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
                      r"%s(?:/%s)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
                      % (_IMAGE_COMPONENT, _IMAGE_COMPONENT))
IMAGE_MAX = 512


def image_errors(image: object, where: str) -> list[str]:
    """Check a Docker image reference such as ``registry.example.com:5000/team/app:1.2``."""
    if isinstance(image, str) and len(image) > IMAGE_MAX:
        return ["%s: %s is longer than %d characters" % (where, shown(image), IMAGE_MAX)]
    if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
        return ["%s: %s must be a Docker image reference such as registry.example.com:5000/team/app:1.2 "
                "(lowercase repository, optional tag and @sha256 digest)" % (where, shown(image))]
    return []


# A Linux capability as Docker takes it (NET_BIND_SERVICE, CAP_NET_BIND_SERVICE, ALL).
CAPABILITY_RE = re.compile(r"^[A-Za-z][A-Za-z_]{0,39}$")


def capability_errors(names: object, where: str) -> list[str]:
    """Check a list of Linux capability names."""
    return ["%s[%d]: %s must be a capability name such as NET_BIND_SERVICE, or ALL" % (where, index, shown(name))
            for index, name in enumerate(names or []) if not isinstance(name, str) or not CAPABILITY_RE.fullmatch(name)]


# The user a container runs as: a name or uid, with an optional group or gid.
CONTAINER_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$")


def container_user_errors(user: object, where: str) -> list[str]:
    """Check a container's user, e.g. ``1000``, ``1000:1000`` or ``app:app``."""
    if not isinstance(user, str) or not CONTAINER_USER_RE.fullmatch(user):
        return ["%s: %s must be a user name or uid with an optional :group or :gid, such as 1000:1000 "
                "(letters, digits, '_', '.', '-')" % (where, shown(user))]
    return []


# Container labels: keys as Docker recommends them (reverse DNS), values one printable line.
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LABEL_VALUE_MAX = 1024


def label_errors(labels: object, where: str) -> list[str]:
    """Check container labels: plain keys (letters, digits, '.', '_', '-'), one-line printable values."""
    if not isinstance(labels, dict):
        return ["%s: must be a mapping of label names to values" % where]
    errors = []
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.fullmatch(key):
            errors.append("%s: label name %s must start with a letter or digit and contain only letters, digits, "
                          "'.', '_' and '-' (at most 128 characters)" % (where, shown(key)))
        else:
            errors += text_errors(value, "%s.%s" % (where, key), max_length=LABEL_VALUE_MAX)
    return errors


# How a module reaches the Docker engine: its unix socket, or tcp/http(s)/ssh to a host and port.
DOCKER_REMOTE_RE = re.compile(r"^(tcp|https?|ssh)://([A-Za-z0-9_.-]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?$")


def docker_host_errors(value: object, where: str) -> list[str]:
    """Check a Docker engine address: ``unix:///<path>`` or ``tcp://<host>:<port>`` (also http, https, ssh)."""
    rule = ("%s: %s must be unix:///<absolute path of the socket> or tcp://<host>:<port> (also http://, https://, "
            "ssh://[user@]<host>)" % (where, shown(value)))
    if isinstance(value, str) and value.startswith("unix://"):
        return [rule] if host_path_errors(value[len("unix://"):], where, max_length=SOCKET_PATH_MAX) else []
    if not isinstance(value, str) or not DOCKER_REMOTE_RE.fullmatch(value):
        return [rule]
    return []


def container_limit_errors(p: dict, at) -> list[str]:
    """A container's networks (names) and limits: ``memory``, ``cpus``, ``pids_limit`` (each optional)."""
    errors = []
    for index, network in enumerate(p["networks"]):
        errors += docker_name_errors(network, "%s[%d]" % (at("networks"), index))
    if p["memory"] is not None:
        errors += memory_errors(p["memory"], at("memory"))
    if p["cpus"] is not None:
        errors += positive_number_errors(p["cpus"], at("cpus"))
    if p["pids_limit"] is not None:
        errors += whole_number_errors(p["pids_limit"], at("pids_limit"), 1)
    return errors
