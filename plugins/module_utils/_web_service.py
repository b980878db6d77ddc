# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rotated web service's options, their defaults and their rules, once.

The ``haproxy_rotate`` module takes these options; the rotation role's ``rotation_services`` are
the same options under two other names (``name`` for ``service``, ``hosts`` for ``routes``). The
role's up-front check runs the module's own argument spec and rules on each service, so a service
the module would refuse stops ``site.yml`` before any host is touched.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    SOCKET_PATH_MAX,
    backend_name_errors,
    calendar_errors,
    claim_errors,
    docker_name_errors,
    duplicate_errors,
    duration_errors,
    env_errors,
    haproxy_time_errors,
    health_path_errors,
    host_path_errors,
    hostname_errors,
    port_errors,
    service_name_errors,
    text_errors,
    tmpfs_mount_errors,
    whole_number_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import (
    capability_errors,
    container_limit_errors,
    container_user_errors,
    docker_host_errors,
    image_errors,
    label_errors,
)

TMPFS_SPEC = dict(
    path=dict(type="str", required=True), size=dict(type="str", required=True), mode=dict(type="str"),
    uid=dict(type="int"), gid=dict(type="int"), noexec=dict(type="bool", default=True),
    nosuid=dict(type="bool", default=True), nodev=dict(type="bool", default=True),
)

# How a new container is checked and switched in, and an old one drained and stopped: every module
# that replaces containers behind HAProxy (doc fragment rotor.vps.replacement, lock_timeout in rotor.vps.haproxy).
SWITCH_SPEC = dict(
    check_interval=dict(type="str", default="2s"),
    check_fast_interval=dict(type="str", default="50ms"),
    check_rise=dict(type="int", default=2),
    check_fall=dict(type="int", default=2),
    up_timeout=dict(type="int", default=30),
    drain_timeout=dict(type="int", default=30),
    stop_timeout=dict(type="int", default=10),
    lock_timeout=dict(type="int", default=300),
)


def switch_errors(p: dict, at) -> list[str]:
    """The rules of SWITCH_SPEC's options and ``healthy_timeout``; ``at(key)`` names an option."""
    errors = []
    for key in ("check_interval", "check_fast_interval"):
        errors += haproxy_time_errors(p[key], at(key))
    for key in ("check_rise", "check_fall", "healthy_timeout", "up_timeout", "stop_timeout", "lock_timeout"):
        errors += whole_number_errors(p[key], at(key), 1)
    return errors + whole_number_errors(p["drain_timeout"], at("drain_timeout"), 0)


# The options that describe a service (the module adds where HAProxy and the audit files live).
SERVICE_SPEC = dict(
    service=dict(type="str", required=True),
    backend=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "rotated", "absent"]),
    image=dict(type="str"),
    pull=dict(type="bool", default=True),
    replicas=dict(type="int", default=2),
    max_age=dict(type="str"),
    port=dict(type="int", default=8080),
    health_path=dict(type="str", default="/healthz"),
    env=dict(type="dict", default={}, no_log=True),
    networks=dict(type="list", elements="str", default=["app"]),
    tmpfs=dict(type="list", elements="dict", default=[], options=TMPFS_SPEC),
    memory=dict(type="str", default="256m"),
    cpus=dict(type="float", default=1.0),
    pids_limit=dict(type="int", default=256),
    read_only=dict(type="bool", default=True),
    cap_drop=dict(type="list", elements="str", default=["ALL"]),
    cap_add=dict(type="list", elements="str", default=[]),
    user=dict(type="str"),
    labels=dict(type="dict", default={}),
    routes=dict(type="list", elements="str"),
    healthy_timeout=dict(type="int", default=60),
    **SWITCH_SPEC,
)

DEFAULT_HEALTH_PATH = SERVICE_SPEC["health_path"]["default"]

# Where the host keeps what every module that puts containers behind HAProxy uses (doc fragments
# rotor.vps.haproxy and rotor.vps.docker, and the modules' audit options).
HOST_SPEC = dict(
    lock_dir=dict(type="path", default="/run/lock/rotor"),
    audit_log=dict(type="path", default="/var/log/rotor/rotation.jsonl"),
    actor=dict(type="str"),
    haproxy_socket=dict(type="path", default="/var/lib/rotor/haproxy/run/admin.sock"),
    haproxy_config_dir=dict(type="path", default="/etc/rotor/haproxy"),
    haproxy_config_mount=dict(type="path", default="/usr/local/etc/haproxy"),
    docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
)


def server_options(p: dict, port: int | None = None) -> str:
    """The options of a server HAProxy health-checks (on ``port`` when it is not the server's own)."""
    return "check%s inter %s fastinter %s downinter %s rise %d fall %d" % (
        " port %d" % port if port else "", p["check_interval"], p["check_fast_interval"], p["check_fast_interval"],
        p["check_rise"], p["check_fall"])


def service_errors(p: dict, where: str = "", names: dict | None = None) -> list[str]:
    """Every rule the (type-checked) options break, each naming the option; empty when valid.

    ``where`` prefixes each option's name (``rotation_services[0].``); ``names`` renames options
    for the caller (``{"service": "name", "routes": "hosts"}``).
    """
    names = names or {}

    def at(key: str) -> str:
        return where + names.get(key, key)

    errors = service_name_errors(p["service"], at("service")) + backend_name_errors(p["backend"], at("backend"))
    if p["state"] != "absent" and not (p["image"] or "").strip():
        errors.append("%s: required unless state is absent" % at("image"))
    elif p["image"] is not None:
        errors += image_errors(p["image"], at("image"))
    errors += whole_number_errors(p["replicas"], at("replicas"), 1, hint=" (use state=absent to remove the service)")
    errors += port_errors(p["port"], at("port"))
    errors += health_path_errors(p["health_path"], at("health_path"))
    if p["max_age"] is not None:
        errors += duration_errors(p["max_age"], at("max_age"))
    if not p["networks"]:
        errors.append("%s: at least one network is required (HAProxy reaches the containers on the first)"
                      % at("networks"))
    errors += container_limit_errors(p, at)
    errors += tmpfs_mount_errors(p["tmpfs"], at("tmpfs"))
    errors += env_errors(p["env"], at("env"))
    errors += capability_errors(p["cap_drop"], at("cap_drop")) + capability_errors(p["cap_add"], at("cap_add"))
    if p["user"] is not None:
        errors += container_user_errors(p["user"], at("user"))
    errors += label_errors(p["labels"], at("labels"))
    for index, host in enumerate(p["routes"] or []):
        errors += hostname_errors(host, "%s[%d]" % (at("routes"), index))
    return errors + switch_errors(p, at)


# HOST_SPEC's paths (and a module's metrics directory): where the files live on the host, and HAProxy's
# view of its configuration directory, which goes into its runtime commands as it is.
HOST_PATHS = ("lock_dir", "audit_log", "haproxy_config_dir", "haproxy_config_mount", "metrics_dir")
SOCKET_PATHS = ("haproxy_socket", "haproxy_master_socket")
ACTOR_MAX = 200


def host_errors(p: dict) -> list[str]:
    """The rules of HOST_SPEC's options (and of ``metrics_dir``, ``haproxy_master_socket`` and
    ``haproxy_container`` when the module has them): plain absolute paths, an engine address, a one-line actor."""
    errors = []
    for key in HOST_PATHS:
        if key in p and not (key == "metrics_dir" and p[key] == ""):  # an empty metrics_dir: no metrics
            errors += host_path_errors(p[key], key)
    for key in SOCKET_PATHS:
        if key in p:
            errors += host_path_errors(p[key], key, max_length=SOCKET_PATH_MAX)
    if p.get("actor") is not None:
        errors += text_errors(p["actor"], "actor", max_length=ACTOR_MAX)
    if "haproxy_container" in p:
        errors += docker_name_errors(p["haproxy_container"], "haproxy_container")
    return errors + docker_host_errors(p["docker_host"], "docker_host")


def checked_service_errors(options: dict, where: str = "", names: dict | None = None) -> list[str]:
    """The module's argument spec, then its rules, on options given as a task would give them."""
    result = ArgumentSpecValidator(SERVICE_SPEC).validate(options)
    if result.error_messages:
        renamed = {"'%s'" % key: "'%s'" % value for key, value in (names or {}).items()}
        messages = []
        for message in result.error_messages:
            for old, new in renamed.items():
                message = message.replace(old, new)
            messages.append("%s: %s" % (where.rstrip(".") or "options", message))
        return messages
    return service_errors(result.validated_parameters, where, names)


ROLE_STATES = ("present", "absent")
# Keys of a service that are the role's own (its schedule); the rest are haproxy_rotate's options.
SCHEDULE_KEYS = ("interval", "jitter")
# The module's options under the names the role's services use.
ROLE_NAMES = {"service": "name", "routes": "hosts"}


def module_options(service: dict) -> dict:
    """A service of ``rotation_services`` as the options the role gives haproxy_rotate."""
    options = {key: value for key, value in service.items() if key not in SCHEDULE_KEYS + ("name", "hosts")}
    options.update(service=service.get("name"), backend=service.get("backend") or service.get("name"))
    if "hosts" in service:
        options["routes"] = service["hosts"]
    if service.get("state", "present") == "absent":
        options["state"] = "absent"
    return options


def _role_service_errors(service: dict, item: str) -> list[str]:
    if not isinstance(service.get("name"), str) or not service["name"]:
        return service_name_errors(service.get("name"), item + ".name")
    errors = []
    state = service.get("state", "present")
    if state not in ROLE_STATES:
        errors.append("%s.state: %r must be one of %s" % (item, state, ", ".join(ROLE_STATES)))
        service = dict(service, state="present")
    unknown = sorted(str(key) for key in service if key in ROLE_NAMES
                     or key not in SERVICE_SPEC and key not in SCHEDULE_KEYS and key not in ROLE_NAMES.values())
    if unknown:
        errors.append("%s: unknown option(s) %s" % (item, ", ".join(unknown)))
        service = {key: value for key, value in service.items() if str(key) not in unknown}
    if service.get("interval") is not None:
        errors += calendar_errors(service["interval"], item + ".interval")
    if service.get("jitter") is not None:
        errors += duration_errors(service["jitter"], item + ".jitter", allow_zero=True)
    return errors + checked_service_errors(module_options(service), item + ".", ROLE_NAMES)


def rotation_service_errors(services: object, where: str = "rotation_services") -> list[str]:
    """Check the services the rotation role manages; one message per problem, naming the input and the rule."""
    if not isinstance(services, list):
        return ["%s: must be a list of services" % where]
    errors = []
    valid = []
    for index, service in enumerate(services):
        item = "%s[%d]" % (where, index)
        if not isinstance(service, dict):
            errors.append("%s: must be a mapping with at least name and image" % item)
            continue
        errors += _role_service_errors(service, item)
        valid.append(service)
    errors += duplicate_errors(valid, "name", where)
    errors += claim_errors(valid, lambda s: [s.get("backend") or s.get("name")], "backend", where, "service")
    errors += claim_errors(valid, lambda s: s.get("hosts") or [], "host name", where, "service")
    return errors
