#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_rotate
short_description: Keep the web containers behind an HAProxy backend fresh, with zero failed requests
version_added: 0.1.0
description:
  - Manages the containers of one service behind one HAProxy backend of the P(rotor.vps.haproxy#role) role,
    and the host names routed to that backend.
  - A replacement starts a fresh container (random name, fresh tmpfs, new address), waits until it answers its
    health path, adds it to the backend through the runtime API with health checks on (and C(UP) at once, as
    it has just answered; HAProxy's own checks take it down after O(check_fall) failures), waits until HAProxy
    itself reports it C(UP), drains the old server until its sessions end (at most O(drain_timeout)), deletes
    it from HAProxy and stops and removes the old container. Containers are replaced one at a time.
  - The backend's file in C(conf.d/) always lists the servers that serve, so a reload or restart of HAProxy
    at any moment loses none of them.
  - A failure before the switch removes the new container and leaves the old ones serving; the error names
    the step that failed.
  - A run that changed anything ends with a check of the whole service, every replica running and C(UP) in
    HAProxy at its container's address; a replica that died or went C(DOWN) during the run is replaced then
    (the reason starts with C(end-of-run check:)), at most twice, and one still missing fails the run
    (C(step=check)).
  - Two runs for one backend never overlap; the second waits for the first (at most O(lock_timeout)).
  - Every replacement appends a JSON line to O(audit_log) and updates Prometheus textfile metrics in
    O(metrics_dir).
author: rotor.vps maintainers (@rotor-vps)
extends_documentation_fragment:
  - rotor.vps.docker
  - rotor.vps.haproxy
  - rotor.vps.replacement
attributes:
  check_mode:
    support: full
    description: Returns the plan (which containers would be replaced and why) and changes nothing.
  diff_mode:
    support: full
    description: Shows the backend's server list before and after.
options:
  service:
    description:
      - Name of the service; its containers are named C(<service>-<random>) and labelled with it.
      - A lowercase letter, then lowercase letters, digits and C(-); at most 31 characters.
    type: str
    required: true
  backend:
    description:
      - The HAProxy backend serving the service. It must exist in the running HAProxy (declared in
        C(haproxy_backends) of the P(rotor.vps.haproxy#role) role).
    type: str
    required: true
  state:
    description:
      - V(present) ensures O(replicas) containers of the current spec serve, replacing any whose spec or image
        differs, that are older than O(max_age), that HAProxy does not know, or that HAProxy reports C(DOWN)
        (a server an operator put in C(MAINT) or C(DRAIN) is left alone).
      - V(rotated) replaces every container, one at a time.
      - V(absent) drains and removes every container of the service and its routes.
    type: str
    choices: [present, rotated, absent]
    default: present
  image:
    description: Image of the containers. Required unless O(state=absent).
    type: str
  pull:
    description: Pull the image when it is not on the host. The tag is not re-pulled when present.
    type: bool
    default: true
  replicas:
    description: Number of containers serving (at least 1).
    type: int
    default: 2
  max_age:
    description:
      - With O(state=present), replace containers older than this (V(90s), V(30m), V(6h), V(1d)), so a schedule
        can call the module often and only old containers are replaced.
    type: str
  port:
    description: Port the containers listen on.
    type: int
    default: 8080
  health_path:
    description: HTTP path that answers 2xx or 3xx once a container is ready.
    type: str
    default: /healthz
  env:
    description:
      - Environment variables of the containers. Treated as secret (kept out of logs and results), as
        they often carry credentials.
    type: dict
    default: {}
  networks:
    description:
      - Docker networks the containers join; HAProxy reaches them on the first, which it must share.
    type: list
    elements: str
    default: [app]
  tmpfs:
    description: tmpfs mounts of each container, fresh and empty in every new container.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute mount point.
        type: str
        required: true
      size:
        description: Size cap (V(16m), V(1g)).
        type: str
        required: true
      mode:
        description: Octal mode of the mount's root, as a string.
        type: str
      uid:
        description: Owner of the mount's root.
        type: int
      gid:
        description: Group of the mount's root.
        type: int
      noexec:
        description: Mount C(noexec).
        type: bool
        default: true
      nosuid:
        description: Mount C(nosuid).
        type: bool
        default: true
      nodev:
        description: Mount C(nodev).
        type: bool
        default: true
  memory:
    description: Memory limit (V(128m), V(1g)).
    type: str
    default: 256m
  cpus:
    description: CPU limit, in CPUs (V(0.5)); at most the host's number of CPUs.
    type: float
    default: 1.0
  pids_limit:
    description: Maximum number of processes in a container.
    type: int
    default: 256
  read_only:
    description: Mount the container's root file system read-only.
    type: bool
    default: true
  cap_drop:
    description: Capabilities to drop.
    type: list
    elements: str
    default: [ALL]
  cap_add:
    description: Capabilities to add back.
    type: list
    elements: str
    default: []
  user:
    description: User (and group) the container runs as, e.g. V(1000:1000); the image's default when unset.
    type: str
  labels:
    description: Extra labels on the containers.
    type: dict
    default: {}
  routes:
    description:
      - Host names routed to O(backend) through HAProxy's host map (runtime API and file together, no reload).
      - When given, the backend's routes become exactly these; when omitted, routes are left alone.
      - A host already routed to another backend is an error.
    type: list
    elements: str
  healthy_timeout:
    description: Seconds a new container has to answer its health path.
    type: int
    default: 60
  metrics_dir:
    description: Directory of Prometheus textfile metrics (C(rotation_<service>.prom)).
    type: path
    default: /var/lib/rotor/metrics
notes:
  - The containers are started with C(no-new-privileges), restart policy C(unless-stopped) and the labels
    C(org.rotor.vps.service), C(org.rotor.vps.generation), C(org.rotor.vps.created) and C(org.rotor.vps.spec-hash).
  - A container whose address no longer matches its server (for example after a reboot) is replaced by O(state=present).
seealso:
  - name: HAProxy runtime API
    description: The commands this module uses (add server, set server, del server, add map).
    link: https://docs.haproxy.org/3.0/management.html#9.3
"""

EXAMPLES = r"""
- name: Two fresh demo containers behind backend "web", reachable as web.example.com
  rotor.vps.haproxy_rotate:
    service: web
    backend: web
    image: registry.example.com/demo-web:1
    replicas: 2
    port: 8080
    health_path: /healthz
    tmpfs:
      - {path: /tmp, size: 16m, uid: 1000}
      - {path: /scratch, size: 16m, uid: 1000}
    memory: 128m
    pids_limit: 64
    routes: [web.example.com]

- name: From a schedule - replace only containers older than 6 hours
  rotor.vps.haproxy_rotate:
    service: web
    backend: web
    image: registry.example.com/demo-web:1
    max_age: 6h

- name: Replace every container now
  rotor.vps.haproxy_rotate:
    service: web
    backend: web
    image: registry.example.com/demo-web:1
    state: rotated
  register: rotation

- name: Take the service down
  rotor.vps.haproxy_rotate:
    service: web
    backend: web
    state: absent
"""

RETURN = r"""
actions:
  description: The plan, one line per change; in check mode what would be done.
  returned: always
  type: list
  elements: str
  sample: ["replace web-3f2a9c1e (older than max_age (21655s))", "route web.example.com to backend"]
replacements:
  description:
    - One entry per container started, replaced or removed, with the time each phase took (seconds).
    - C(duration) runs from the start of the new container until the old one is out of HAProxy and has been
      sent its stop signal; it then shuts down while the next replacement starts, and is removed before the
      module returns (C(durations.stop), from the signal until it is removed).
    - C(start_to_healthy) is the new container's own time from start to its first healthy answer.
  returned: always
  type: list
  elements: dict
  sample:
    - action: replace
      old: web-3f2a9c1e
      new: web-a81c04d2
      reason: rotation requested
      result: ok
      duration: 0.88
      start_to_healthy: 0.71
      sessions_cut: 0
      durations: {start: 0.52, healthy: 0.19, up: 0.13, drain: 0.01, deregister: 0.01, stop: 0.31}
servers:
  description: The backend's servers after the run (planned names in check mode).
  returned: always
  type: list
  elements: str
  sample: [web-a81c04d2, web-b7710e3f]
"""

import importlib.util

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rotor.vps.plugins.module_utils._audit import default_actor
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import ConfigFileError
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import (
    Rotation,
    RotationError,
    Settings,
)
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import LockTimeout
from ansible_collections.rotor.vps.plugins.module_utils._module_run import add_diff, plan_and_apply, refuse_bad_input
from ansible_collections.rotor.vps.plugins.module_utils._validate import duration_seconds
from ansible_collections.rotor.vps.plugins.module_utils._web_container import ContainerError, Docker, WebSpec
from ansible_collections.rotor.vps.plugins.module_utils._web_service import (
    HOST_SPEC,
    SERVICE_SPEC,
    host_errors,
    server_options,
    service_errors,
)

# Checked without importing it, so a missing SDK is reported before anything else happens.
HAS_DOCKER = importlib.util.find_spec("docker") is not None

ARGUMENT_SPEC = dict(SERVICE_SPEC, **HOST_SPEC, metrics_dir=dict(type="path", default="/var/lib/rotor/metrics"))


def build(module: AnsibleModule) -> Rotation:
    p = module.params
    settings = Settings(
        service=p["service"], backend=p["backend"], state=p["state"], replicas=p["replicas"],
        max_age=duration_seconds(p["max_age"]) if p["max_age"] else None, routes=p["routes"],
        socket=p["haproxy_socket"], config_dir=p["haproxy_config_dir"], config_mount=p["haproxy_config_mount"],
        server_options=server_options(p),
        healthy_timeout=p["healthy_timeout"], up_timeout=p["up_timeout"], drain_timeout=p["drain_timeout"],
        stop_timeout=p["stop_timeout"], lock_timeout=p["lock_timeout"], lock_dir=p["lock_dir"],
        audit_log=p["audit_log"], metrics_dir=p["metrics_dir"], actor=p["actor"] or default_actor(),
    )
    spec = None
    if p["state"] != "absent":
        spec = WebSpec(
            service=p["service"], image=p["image"], port=p["port"], health_path=p["health_path"],
            networks=tuple(p["networks"]), env=p["env"], tmpfs=tuple(p["tmpfs"]), memory=p["memory"],
            cpus=p["cpus"], pids_limit=p["pids_limit"], read_only=p["read_only"], cap_drop=tuple(p["cap_drop"]),
            cap_add=tuple(p["cap_add"]), user=p["user"], labels=p["labels"],
        )
    return Rotation(settings, spec, Docker(p["docker_host"]), HaproxyRuntime(p["haproxy_socket"]),
                    check_mode=module.check_mode)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker (python3-docker)"))
    refuse_bad_input(module, service_errors(module.params) + host_errors(module.params))
    try:
        rotation = build(module)
    except ContainerError as exc:
        module.fail_json(msg="haproxy_rotate %s: %s; nothing was changed" % (module.params["service"], exc))
    result = dict(changed=False, actions=[], replacements=[], servers=[])
    try:
        rotation.preflight()
        outcome = plan_and_apply(module, lock=rotation.lock, plan=rotation.plan, apply=rotation.apply)
        plan = outcome.plan
        result.update(changed=plan.changes or bool(outcome.applied), actions=plan.actions(),
                      replacements=outcome.applied or [],
                      servers=plan.servers_after if module.check_mode else sorted(
                          rotation.runtime.servers(rotation.settings.backend)))
        add_diff(module, result, lambda: dict(before={"servers": plan.servers_before},
                                              after={"servers": result["servers"]}))
    except RotationError as exc:
        module.fail_json(msg="haproxy_rotate %s: %s" % (module.params["service"], exc), step=exc.step,
                         replacements=exc.records, changed=bool(exc.records))
    except (HaproxyError, ContainerError, ConfigFileError, LockTimeout) as exc:
        module.fail_json(msg="haproxy_rotate %s: %s; nothing was changed" % (module.params["service"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
