#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgrest_spawn
short_description: Keep one tenant's PostgREST serving behind HAProxy, through PgBouncer, with no failed request
version_added: 0.1.0
description:
  - Runs the PostgREST container of one tenant, named C(postgrest-<tenant>-<random>), behind its own HAProxy
    backend C(tenant_<tenant>), connected to the tenant's database through PgBouncer.
  - The configuration is a file, C(<config_dir>/<tenant>/postgrest.conf), mounted read-only; the connection
    string (with the authenticator's password) and the JWT secret are in files next to it that the configuration
    names (C(@file)). All three are owned by the container's user, mode 0400. No secret is in the container's
    environment, labels or command line.
  - Behind PgBouncer's transaction mode, prepared statements and the LISTEN channel are off. DDL then no longer
    refreshes PostgREST's schema cache by itself; O(state=reloaded) does (SIGUSR1).
  - A change of a setting PostgREST reloads (schemas, anonymous role, JWT secret and audience, row limit, most
    extra settings) goes live with SIGUSR2 in the same container. A change of a setting it reads only at start
    (the connection string, the pool, the ports, the image, the limits) replaces the container; the new one
    starts, answers C(/ready) on its admin port, is added to HAProxy and is C(UP) there
    before the old one is drained and removed.
  - A new tenant's backend costs one hitless reload of HAProxy (HAProxy 3.0 cannot create a backend at run
    time), and so does its removal. Host names and the rate limit change at run time (maps), with no reload.
  - Every change appends a JSON line to O(audit_log), the same log as rotation.
author: rotor.vps maintainers (@rotor-vps)
extends_documentation_fragment:
  - rotor.vps.docker
  - rotor.vps.haproxy
  - rotor.vps.replacement
attributes:
  check_mode:
    support: full
    description: Returns the plan and changes nothing.
  diff_mode:
    support: full
    description: Shows the configuration file before and after; secret files only as changed or not.
options:
  tenant:
    description:
      - The tenant. A lowercase letter, then lowercase letters, digits and C(_); at most 48 characters.
    type: str
    required: true
  state:
    description:
      - V(present) keeps the tenant's PostgREST serving as described.
      - V(restarted) also replaces its container (no failed request).
      - V(reloaded) reloads its schema cache (SIGUSR1), after DDL.
      - V(absent) removes its container, its backend, its routes, its rate limit and its files (secrets
        included).
    type: str
    choices: [present, absent, restarted, reloaded]
    default: present
  image:
    description: The PostgREST 12 image (its binary at C(/bin/postgrest), user 1000 by default).
    type: str
    default: postgrest/postgrest:v12.0.2
  pull:
    description: Pull the image when it is not on the host.
    type: bool
    default: true
  database:
    description: The tenant's database; the tenant's name by default.
    type: str
  authenticator:
    description: The role PostgREST logs in as; C(<tenant>_authenticator) by default.
    type: str
  authenticator_password:
    description: The authenticator's password. Required unless O(state=absent) or O(state=reloaded).
    type: str
  pgbouncer_host:
    description: PgBouncer's host name on the data network.
    type: str
    default: rotor-pgbouncer
  pgbouncer_port:
    description: PgBouncer's port.
    type: int
    default: 6432
  db_schemas:
    description: The schemas PostgREST serves.
    type: list
    elements: str
    default: [api]
  db_anon_role:
    description: The role of requests without a JWT; C(<tenant>_anon) by default.
    type: str
  jwt_secret:
    description:
      - The secret JWTs are signed with, at least 32 characters.
      - When omitted, a random one (64 characters) is generated once and kept in
        C(<config_dir>/<tenant>.jwt-secret), root-only 0600.
      - A changed secret goes live with SIGUSR2, and a token signed with the old one is refused at once. With
        PostgREST's JWT cache on (C(jwt-cache-max-lifetime) in O(settings)), the container is replaced instead.
    type: str
  jwt_aud:
    description: The audience a JWT must name, when it names one.
    type: str
  db_pool:
    description: PostgREST's own connection pool (to PgBouncer).
    type: int
    default: 10
  max_rows:
    description: The most rows one response returns.
    type: int
  server_port:
    description: The port PostgREST serves the API on.
    type: int
    default: 3000
  admin_port:
    description: The port of PostgREST's admin server (C(/ready), C(/live)), HAProxy's health check.
    type: int
    default: 3001
  networks:
    description:
      - The Docker networks of the container. HAProxy reaches it on the first; PgBouncer must be on another.
    type: list
    elements: str
    default: [app, data]
  memory:
    description: Memory limit of the container.
    type: str
    default: 64m
  cpus:
    description: CPU limit of the container, in CPUs; at most the host's number of CPUs.
    type: float
    default: 1.0
  pids_limit:
    description: Most processes (threads) in the container.
    type: int
    default: 64
  user:
    description: The container's numeric user, C(uid) or C(uid:gid); it owns the tenant's files.
    type: str
    default: "1000"
  settings:
    description:
      - Further PostgREST settings by name (V(openapi-mode), V(db-extra-search-path), V(app.settings.<name>)...).
      - Only settings PostgREST 12 knows, and none this module sets itself.
    type: dict
    default: {}
  routes:
    description:
      - Host names routed to the tenant's backend through HAProxy's host map. When given, they become exactly
        these; a host routed to another backend is an error.
    type: list
    elements: str
  rate_limit:
    description:
      - Requests one client address may make to this tenant per O(rate_limit_period) before getting 429;
        V(0) for none. Kept in HAProxy's C(maps/rate_limits.map), changed without a reload.
    type: int
    default: 0
  rate_limit_period:
    description: The period of O(rate_limit) (an HAProxy time).
    type: str
    default: 10s
  config_dir:
    description: Where the tenants' PostgREST files are on the host.
    type: path
    default: /etc/rotor/postgrest
  haproxy_master_socket:
    description: HAProxy's master CLI socket, for the reload a new or removed backend costs.
    type: path
    default: /var/lib/rotor/haproxy/run/master.sock
  haproxy_container:
    description: HAProxy's container, whose binary checks the configuration with a new backend.
    type: str
    default: rotor-haproxy
  healthy_timeout:
    description: Seconds a new container has to answer C(/ready), and a signalled one to answer it again.
    type: int
    default: 30
notes:
  - The container runs with a read-only root, every capability dropped, C(no-new-privileges), the numeric
    O(user), memory and pids limits, and the labels C(org.rotor.vps.tenant) and
    C(org.rotor.vps.postgrest.restart-hash) (a hash of the settings PostgREST reads only at start).
  - The tenant's database, roles and grants, and its PgBouncer entry, are not this module's
    (see M(rotor.vps.pgbouncer_tenant) and the P(rotor.vps.tenants#role) role).
seealso:
  - module: rotor.vps.pgbouncer_tenant
  - module: rotor.vps.haproxy_rotate
  - name: PostgREST configuration
    description: The settings, and which of them PostgREST reloads.
    link: https://docs.postgrest.org/en/v12/references/configuration.html
"""

EXAMPLES = r"""
- name: The PostgREST of tenant acme at acme.example.com
  rotor.vps.postgrest_spawn:
    tenant: acme
    authenticator_password: "{{ vault_acme_authenticator_password }}"
    db_schemas: [api]
    routes: [acme.example.com]
    rate_limit: 500

- name: After a migration, reload the schema cache
  rotor.vps.postgrest_spawn:
    tenant: acme
    state: reloaded

- name: Remove the tenant's API (its database stays)
  rotor.vps.postgrest_spawn:
    tenant: acme
    state: absent
"""

RETURN = r"""
actions:
  description: The plan, one line per change; in check mode what would be done.
  returned: always
  type: list
  elements: str
  sample: ["write postgrest.conf", "reload the configuration in place (SIGUSR2)"]
replacements:
  description: One entry per container started, replaced or removed (as M(rotor.vps.haproxy_rotate) returns them).
  returned: always
  type: list
  elements: dict
containers:
  description: The tenant's running containers after the run.
  returned: always
  type: list
  elements: str
  sample: [postgrest-acme-3f2a9c1e]
backend:
  description: The tenant's HAProxy backend.
  returned: always
  type: str
  sample: tenant_acme
"""

import importlib.util

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rotor.vps.plugins.module_utils._audit import default_actor
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_backend import BackendError, Backends, HaproxySite
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import ConfigFileError
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_rotate import Rotation, RotationError, Settings
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_routes import RouteMap
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import HaproxyError, HaproxyRuntime
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import LockTimeout
from ansible_collections.rotor.vps.plugins.module_utils._module_run import add_diff, plan_and_apply, refuse_bad_input
from ansible_collections.rotor.vps.plugins.module_utils._postgrest import (
    BINARY,
    CONFIG_FILE,
    CONFIG_MOUNT,
    POSTGREST_SPEC,
    TenantFiles,
    backend_lines,
    backend_name,
    config_settings,
    db_uri,
    postgrest_errors,
    render_config,
    restart_digest,
    service_name,
    user_ids,
)
from ansible_collections.rotor.vps.plugins.module_utils._postgrest_spawn import LIMITS_MAP, Spawn, SpawnError, Tenant
from ansible_collections.rotor.vps.plugins.module_utils._web_container import ContainerError, Docker, WebSpec
from ansible_collections.rotor.vps.plugins.module_utils._web_service import HOST_SPEC, host_errors, server_options

HAS_DOCKER = importlib.util.find_spec("docker") is not None

ARGUMENT_SPEC = dict(
    POSTGREST_SPEC, **HOST_SPEC,
    haproxy_master_socket=dict(type="path", default="/var/lib/rotor/haproxy/run/master.sock"),
    haproxy_container=dict(type="str", default="rotor-haproxy"),
)
LABEL_TENANT = "org.rotor.vps.tenant"
LABEL_RESTART = "org.rotor.vps.postgrest.restart-hash"


def build(module: AnsibleModule) -> Spawn:
    p = module.params
    tenant, backend = p["tenant"], backend_name(p["tenant"])
    files = TenantFiles(p["config_dir"], tenant)
    uid, gid = user_ids(p["user"])
    wanted, spec = {}, None
    settings = {}
    if p["state"] in ("present", "restarted"):
        settings = config_settings(p)
        wanted = {CONFIG_FILE: render_config(tenant, settings), "db-uri": db_uri(p),
                  "jwt-secret": p["jwt_secret"]}
        spec = WebSpec(
            service=service_name(tenant), image=p["image"], port=p["server_port"], health_path="/ready",
            health_port=p["admin_port"], networks=tuple(p["networks"]), memory=p["memory"], cpus=p["cpus"],
            pids_limit=p["pids_limit"], read_only=True, cap_drop=("ALL",), user=p["user"],
            labels={LABEL_TENANT: tenant, LABEL_RESTART: restart_digest(settings)},
            mounts=({"source": files.directory, "target": CONFIG_MOUNT, "read_only": True},),
            command=(BINARY, "%s/%s" % (CONFIG_MOUNT, CONFIG_FILE)), managed_by="rotor.vps.postgrest_spawn",
        )
    actor = p["actor"] or default_actor()
    rotation_settings = Settings(
        service=service_name(tenant), backend=backend, state="absent" if p["state"] == "absent" else "present",
        replicas=1, max_age=None, routes=p["routes"], socket=p["haproxy_socket"], config_dir=p["haproxy_config_dir"],
        config_mount=p["haproxy_config_mount"], server_options=server_options(p, p["admin_port"]),
        healthy_timeout=p["healthy_timeout"], up_timeout=p["up_timeout"], drain_timeout=p["drain_timeout"],
        stop_timeout=p["stop_timeout"], lock_timeout=p["lock_timeout"], lock_dir=p["lock_dir"],
        audit_log=p["audit_log"], metrics_dir="", actor=actor,
    )
    runtime = HaproxyRuntime(p["haproxy_socket"])
    docker = Docker(p["docker_host"])
    limits = RouteMap(p["haproxy_config_dir"], p["haproxy_config_mount"], p["lock_dir"], p["lock_timeout"], LIMITS_MAP)
    site = HaproxySite(p["haproxy_config_dir"], p["haproxy_config_mount"], p["haproxy_container"],
                       p["haproxy_master_socket"])
    return Spawn(
        Tenant(name=tenant, state=p["state"], backend=backend, files=files, uid=uid, gid=gid, wanted=wanted,
               rate_limit=p["rate_limit"], jwt_cache=bool(settings.get("jwt-cache-max-lifetime")),
               backend_lines=backend_lines(p, "%s/%s" % (p["haproxy_config_mount"], LIMITS_MAP)),
               audit_log=p["audit_log"], actor=actor, ready_timeout=p["healthy_timeout"]),
        Rotation(rotation_settings, spec, docker, runtime, check_mode=module.check_mode),
        Backends(site, runtime, docker), limits)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker (python3-docker)"))
    refuse_bad_input(module, postgrest_errors(module.params) + host_errors(module.params))
    tenant = module.params["tenant"]
    try:
        spawn = build(module)
    except ContainerError as exc:
        module.fail_json(msg="postgrest_spawn %s: %s; nothing was changed" % (tenant, exc))
    result = dict(changed=False, actions=[], replacements=[], containers=[], backend=spawn.tenant.backend)
    before = spawn.current_files()
    try:
        spawn.preflight()
        outcome = plan_and_apply(module, lock=spawn.lock, plan=spawn.plan, apply=spawn.apply)
        plan = outcome.plan
        result.update(changed=plan.changes, actions=plan.actions(), replacements=outcome.applied or [],
                      containers=sorted(c.name for c in spawn.running()))
        add_diff(module, result, lambda: _diff(before, plan))
    except (SpawnError, RotationError) as exc:
        module.fail_json(msg="postgrest_spawn %s: %s" % (tenant, exc), step=exc.step, replacements=exc.records,
                         changed=bool(exc.records))
    except (HaproxyError, ContainerError, ConfigFileError, LockTimeout, BackendError) as exc:
        module.fail_json(msg="postgrest_spawn %s: %s; nothing was changed" % (tenant, exc))
    for warning in spawn.warnings:
        module.warn(warning)
    module.exit_json(**result)


def _diff(before: dict, plan) -> dict:
    """The configuration file before and after; secret files only as a marker that they change."""
    after = dict(before)
    after.update(plan.files.writes)
    masked = {}
    for side, files in (("before", before), ("after", after)):
        masked[side] = "".join(
            (text or "") if name == CONFIG_FILE else "# %s: %s\n" % (name, "(secret)" if text is not None else "(none)")
            for name, text in sorted(files.items()) if text is not None or name == CONFIG_FILE)
    for name in plan.files.writes:
        if name != CONFIG_FILE:
            masked["after"] = masked["after"].replace("# %s: (secret)" % name, "# %s: (secret, changed)" % name)
    return masked


if __name__ == "__main__":
    main()
