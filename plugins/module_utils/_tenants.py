# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenants role's tenants: their rules, their sizes, and which of them a converge must touch.

A tenant of ``rotor_tenants`` is a database and its roles, a PgBouncer entry and a PostgREST
container; its keys are the postgrest_spawn options under the role's names (``hosts`` for
``routes``, ``schemas`` for ``db_schemas``) plus the PgBouncer pool and where it lives (``vps``).

Many tenants stay fast: the role keeps, on the host, a digest of what it last applied to each
tenant (``applied``) and touches only tenants whose digest differs or whose container is not
running (``tenant_jobs``); ``tenants_full_check`` touches every one.
"""

from __future__ import annotations

import hashlib
import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import tenant_name_errors
from ansible_collections.rotor.vps.plugins.module_utils._haproxy_runtime import stat_servers
from ansible_collections.rotor.vps.plugins.module_utils._postgrest import (
    TENANT_BACKEND_PREFIX,
    TENANT_MAX,
    POSTGREST_SPEC,
    postgrest_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate import claim_errors, whole_number_errors

STATES = ("present", "absent")
# The role's keys that are not postgrest_spawn options, and the options the role names otherwise.
OWN_KEYS = ("name", "state", "purge", "vps", "pool_size", "reserve_pool")
RENAMED = {"hosts": "routes", "schemas": "db_schemas"}
# postgrest_spawn options the role sets itself, from other variables.
ROLE_SET = ("tenant", "state", "image", "pull", "database", "authenticator", "db_anon_role", "pgbouncer_host",
            "pgbouncer_port", "config_dir", "networks", "user", "server_port", "admin_port")
TENANT_KEYS = set(OWN_KEYS) | set(RENAMED) | (set(POSTGREST_SPEC) - set(ROLE_SET) - set(RENAMED.values()))


def roles_of(tenant: str) -> dict:
    """The tenant's PostgreSQL roles: the authenticator PostgREST logs in as (through PgBouncer), and
    the roles it switches to, which cannot log in: anonymous requests and requests with a JWT."""
    return {"authenticator": "%s_authenticator" % tenant, "anon": "%s_anon" % tenant,
            "authenticated": "%s_authenticated" % tenant}


def effective(tenant: dict, defaults: dict) -> dict:
    """The tenant with the role's defaults filled in."""
    return dict(defaults, **tenant)


def spawn_options(tenant: dict) -> dict:
    """The postgrest_spawn options of an effective tenant (the role adds image, paths and ports)."""
    options = {RENAMED.get(key, key): value for key, value in tenant.items() if key not in OWN_KEYS}
    roles = roles_of(tenant["name"])
    options.update(tenant=tenant["name"], state=tenant.get("state", "present"), authenticator=roles["authenticator"],
                   db_anon_role=roles["anon"])
    return options


def _tenant_errors(tenant: dict, item: str) -> list[str]:
    errors = tenant_name_errors(tenant.get("name"), item + ".name")
    if errors:
        return errors
    if len(tenant["name"]) > TENANT_MAX:
        return ["%s.name: %r is longer than %d characters (its role names must fit PostgreSQL's 63)"
                % (item, tenant["name"], TENANT_MAX)]
    unknown = sorted(str(key) for key in tenant if key not in TENANT_KEYS)
    if unknown:
        errors.append("%s: unknown key(s) %s (a tenant takes %s)" % (item, ", ".join(unknown), ", ".join(sorted(TENANT_KEYS))))
        tenant = {key: value for key, value in tenant.items() if key in TENANT_KEYS}
    if tenant.get("state", "present") not in STATES:
        errors.append("%s.state: %r must be one of %s" % (item, tenant.get("state"), ", ".join(STATES)))
        return errors
    if not isinstance(tenant.get("purge", False), bool):
        errors.append("%s.purge: must be true or false" % item)
    if tenant.get("state", "present") == "absent":
        return errors
    errors += whole_number_errors(tenant.get("pool_size"), item + ".pool_size", 1)
    errors += whole_number_errors(tenant.get("reserve_pool", 0), item + ".reserve_pool", 0)
    options = spawn_options(tenant)
    result = ArgumentSpecValidator(POSTGREST_SPEC).validate(options)
    if result.error_messages:
        names = {"'%s'" % new: "'%s'" % old for old, new in RENAMED.items()}
        for message in result.error_messages:
            for new, old in names.items():
                message = message.replace(new, old)
            errors.append("%s: %s" % (item, message))
        return errors
    problems = postgrest_errors(result.validated_parameters, item + ".")
    for new_name, old_name in ((v, k) for k, v in RENAMED.items()):
        problems = [p.replace("%s.%s" % (item, new_name), "%s.%s" % (item, old_name)) for p in problems]
    return errors + problems


def here(tenants: list, host: str) -> list:
    """The tenants of ``host``: those assigned to it (``vps``) and those assigned to none."""
    return [t for t in tenants if isinstance(t, dict) and t.get("vps") in (None, "", host)]


def tenants_input_errors(s: dict, host: str = "", rotation_hosts: list | None = None) -> list[str]:
    """The tenants role's variables: every tenant, names and host names once, and sizes that add up.

    Sizes are checked for the tenants of ``host`` before anything changes: their PgBouncer pools
    must fit PostgreSQL's tenant budget, and PgBouncer's max_client_conn must cover every PostgREST
    pool ``tenants_client_headroom`` times (during a replacement, old and new containers overlap).
    """
    where = "rotor_tenants"  # what inventories set (tenants_list is it by default)
    tenants = s.get("tenants_list")
    if not isinstance(tenants, list):
        return ["%s: must be a list of tenants" % where]
    defaults = s.get("tenants_defaults") or {}
    if not isinstance(defaults, dict):
        return ["tenants_defaults: must be a mapping of tenant keys"]
    unknown = sorted(str(key) for key in defaults if key not in TENANT_KEYS or key in ("name", "vps"))
    errors = ["tenants_defaults: unknown or per-tenant key(s) %s" % ", ".join(unknown)] if unknown else []
    valid = []
    for index, tenant in enumerate(tenants):
        item = "%s[%d]" % (where, index)
        if not isinstance(tenant, dict):
            errors.append("%s: must be a mapping with at least a name" % item)
            continue
        problems = _tenant_errors(effective(tenant, defaults), item)
        errors += problems
        if not problems:
            valid.append(effective(tenant, defaults))
    errors += claim_errors(valid, lambda t: [t["name"]], "name", where, "tenant")
    present = [t for t in valid if t.get("state", "present") == "present"]
    errors += claim_errors(present, lambda t: t.get("hosts") or [], "host name", where, "tenant")
    taken = set(rotation_hosts or [])
    for index, tenant in enumerate(valid):
        for name in tenant.get("hosts") or []:
            if name in taken:
                errors.append("%s[name=%s].hosts: %r is already a rotated service's host name (rotation_services)"
                              % (where, tenant["name"], name))
    return errors + size_errors(s, here(present, host))


def size_errors(s: dict, tenants: list) -> list[str]:
    """The tenants' pools against PostgreSQL's budget and PgBouncer's client limit."""
    errors = []
    budget = s.get("postgres_tenant_connection_budget")
    pools = sum(int(t["pool_size"]) + int(t.get("reserve_pool", 0)) for t in tenants)
    if isinstance(budget, int) and pools > budget:
        errors.append("rotor_tenants: the tenants' PgBouncer pools (pool_size + reserve_pool) need %d server "
                      "connections, over postgres_tenant_connection_budget (%d); lower the pools or raise the budget"
                      % (pools, budget))
    clients, headroom = s.get("pgbouncer_max_client_conn"), s.get("tenants_client_headroom", 2)
    needed = sum(int(t["db_pool"]) for t in tenants) * int(headroom)
    if isinstance(clients, int) and needed > clients:
        errors.append("rotor_tenants: the tenants' PostgREST pools (db_pool) times tenants_client_headroom (%s) "
                      "need %d PgBouncer client connections, over pgbouncer_max_client_conn (%d)"
                      % (headroom, needed, clients))
    return errors


def digest(tenant: dict) -> str:
    """What the role applied to a tenant (its effective keys, secrets included: the file is root-only)."""
    return hashlib.sha256(json.dumps(tenant, sort_keys=True, default=str).encode()).hexdigest()


def merge_record(applied: dict, changes: dict) -> dict:
    """The record after a converge: ``changes["set"]`` (tenant -> digest) added, ``changes["drop"]`` removed.

    The role merges the same way on the host (tasks/main.yml), where a run that did not read the
    record (tenants_full_check) still keeps the other tenants' entries.
    """
    return {name: value for name, value in dict(applied, **changes["set"]).items() if name not in changes["drop"]}


def serving_tenants(stat: str) -> list:
    """The tenants whose backend has a server that is not DOWN, from HAProxy's answer to ``show stat``
    (a server rising again, or one an operator drains or keeps in maintenance, is the operator's or
    HAProxy's business: the same rule as haproxy_rotate's)."""
    return sorted(backend[len(TENANT_BACKEND_PREFIX):] for backend, servers in stat_servers(stat).items()
                  if backend.startswith(TENANT_BACKEND_PREFIX) and any(s.status != "DOWN" for s in servers.values()))


def tenant_jobs(tenants: list, defaults: dict, host: str, applied: dict, running: list, *, full: bool = False,
                serving: list | None = None) -> dict:
    """Which tenants of ``host`` this converge changes, and what it records as applied afterwards.

    ``applied``: tenant -> digest of the last converge; ``running``: tenants with a running
    container; ``serving``: tenants HAProxy has a server UP for (None: not known). A present tenant
    is a job when its digest differs, nothing of it runs, or it runs but serves nothing (a container
    restarted at another address than its server's); an absent one when the last converge applied it
    or something of it runs.
    """
    jobs, changes = [], {"set": {}, "drop": []}  # tenants not listed this time keep their record
    for tenant in here(tenants, host):
        t = effective(tenant, defaults)
        state = t.get("state", "present")
        if state == "present":
            changes["set"][t["name"]] = digest(t)
            if full or applied.get(t["name"]) != changes["set"][t["name"]] or t["name"] not in running or (
                    serving is not None and t["name"] not in serving):
                jobs.append(dict(t, roles=roles_of(t["name"])))
        else:
            if full or t["name"] in applied or t["name"] in running:
                jobs.append(dict(t, roles=roles_of(t["name"])))
            changes["drop"].append(t["name"])
    record = merge_record(applied, changes)
    present = [job for job in jobs if job.get("state", "present") == "present"]
    # What the role's loops go over, without secrets (so only the tasks that need a password hide their output).
    return {
        "jobs": jobs, "applied": record, "changes": changes,
        "nologin_roles": [job["roles"][kind] for job in present for kind in ("anon", "authenticated")],
        "connect": [{"database": job["name"], "role": role, "state": state} for job in present
                    for role, state in (("PUBLIC", "absent"), (job["roles"]["authenticator"], "present"))],
        "schemas": [{"database": job["name"], "schema": schema,
                     "roles": [job["roles"]["anon"], job["roles"]["authenticated"]]}
                    for job in present for schema in job.get("schemas") or []],
    }
