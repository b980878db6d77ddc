#!/usr/bin/python
# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbouncer_tenant
short_description: Add, change or remove one tenant's database entry and SCRAM verifier in PgBouncer
version_added: 0.1.0
description:
  - Manages one tenant of the shared PgBouncer of the P(rotor.vps.pgbouncer#role) role, or of any PgBouncer
    whose files are on this host, the database entry in the C([databases]) section of O(config) and the
    user's SCRAM-SHA-256 verifier in O(userlist).
  - Only the tenant's own lines change; every other byte of both files is kept, comments and spacing
    included. A file that PgBouncer could not read the way we do is refused with its line number, never
    repaired.
  - The userlist holds SCRAM-SHA-256 verifiers only. For clients to log in through PgBouncer, the verifier
    must be the one PostgreSQL stores for the role (same salt and iterations). With a PostgreSQL connection
    (O(login_unix_socket) or O(login_host)) the module reads the stored verifier and reuses it when
    O(password) matches it; otherwise it makes a new one and, with O(set_role_password), sets the role's
    password in PostgreSQL to that same verifier. An unchanged password changes nothing.
  - Writes take an exclusive lock (C(<config>.lock)), so concurrent runs for different tenants apply one
    after the other. Each file is replaced atomically (temp file in the same directory, fsync, rename)
    keeping its mode and owner; the previous versions are kept in C(backup/) next to O(config), the newest
    O(backup_keep) of each.
  - After writing, PgBouncer is reloaded through its admin console and SHOW DATABASES and SHOW USERS must
    show the entry as written. When the reload fails or the entry is not live, the previous files are put
    back, PgBouncer is reloaded with them, and the module fails with the reason.
  - A change that would let the sum of pools and reserves of all databases in O(config) exceed
    PostgreSQL's C(max_connections) minus O(connection_reserve) is refused, and nothing is changed.
  - Removing a tenant (O(state=absent)) removes its entry and its user line. Its PostgreSQL database
    and role are left alone (community.postgresql manages those), so no data is lost.
author: rotor.vps maintainers (@rotor-vps)
extends_documentation_fragment:
  - rotor.vps.docker
attributes:
  check_mode:
    support: full
    description: Reads both files and PostgreSQL, returns the planned actions and changes nothing.
  diff_mode:
    support: full
    description: Shows the tenant's database entry and userlist line before and after; verifiers are masked.
options:
  name:
    description:
      - Tenant name, the database name clients connect to through PgBouncer.
      - A lowercase letter, then lowercase letters, digits and C(_); at most 63 characters; not one of the
        reserved names C(admin), C(pgbouncer), C(postgres), C(rotor), C(template0), C(template1).
    type: str
    required: true
  state:
    description: V(present) adds or updates the tenant; V(absent) removes its entry and user line.
    type: str
    choices: [present, absent]
    default: present
  database:
    description: The PostgreSQL database the entry points to. Same rules as O(name). Defaults to O(name).
    type: str
  user:
    description: The tenant's role, listed in the userlist. Same rules as O(name). Defaults to O(name).
    type: str
  password:
    description:
      - The tenant role's password. Only its SCRAM-SHA-256 verifier is written, never the password.
      - One of O(password) and O(verifier) is required with O(state=present).
    type: str
  verifier:
    description:
      - A ready SCRAM-SHA-256 verifier (C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)), for
        example read from another PostgreSQL. Used as given.
    type: str
  host:
    description:
      - PostgreSQL as PgBouncer reaches it.
      - The directory of PostgreSQL's unix socket inside PgBouncer's container (a path starting with C(/)); the
        default is where the C(rotor.vps.pgbouncer) role mounts the postgres role's socket, so pooled
        connections take no network hop.
      - Or a host name or address, such as C(rotor-postgres) on the data network.
    type: str
    default: /var/run/postgresql
  port:
    description: Port of PostgreSQL as PgBouncer reaches it.
    type: int
    default: 5432
  pool_size:
    description: Server connections PgBouncer keeps for this tenant.
    type: int
    default: 5
  reserve_pool:
    description: Extra server connections allowed when clients wait longer than PgBouncer's C(reserve_pool_timeout).
    type: int
    default: 0
  max_db_connections:
    description: Cap on all server connections to this database; V(0) means no cap.
    type: int
    default: 0
  pool_mode:
    description: Pool mode of this database; PgBouncer's own C(pool_mode) when not set.
    type: str
    choices: [session, transaction, statement]
  options:
    description:
      - Further connection settings of the entry (for example C(application_name), C(connect_query),
        C(client_encoding)), written quoted as needed. PgBouncer decides which it knows; one it rejects
        makes the reload fail and the change is rolled back.
      - Settings this module manages itself, and C(user), C(password) and the C(auth_*) settings, are refused.
    type: dict
    default: {}
  config:
    description: The file holding the C([databases]) section (pgbouncer.ini, or a file it C(%include)s).
    type: path
    default: /etc/rotor/pgbouncer/databases.ini
  userlist:
    description: PgBouncer's C(auth_file).
    type: path
    default: /etc/rotor/pgbouncer/userlist.txt
  backup_keep:
    description: How many previous versions of each file to keep in C(backup/) next to O(config); V(0) keeps none.
    type: int
    default: 5
  reload:
    description: Reload PgBouncer after a change and check that the change is live (rolled back when it is not).
    type: bool
    default: true
  admin_host:
    description: Host of PgBouncer's admin console, or the directory of its Unix socket.
    type: str
    default: /var/lib/rotor/pgbouncer/run
  admin_port:
    description: Port of PgBouncer's admin console (also names its Unix socket).
    type: int
    default: 6432
  admin_user:
    description: A user listed in PgBouncer's C(admin_users).
    type: str
    default: pgbouncer_admin
  admin_password:
    description: Password of O(admin_user).
    type: str
  log_container:
    description:
      - PgBouncer's Docker container. PgBouncer answers RELOAD with success even when the new configuration
        fails to load (it only logs it), so after each reload its log is read and a failed load is rolled back
        with PgBouncer's own error message.
      - Set it to an empty string for a PgBouncer that does not run in a container; SHOW DATABASES and SHOW
        USERS are still checked, but a rejected change to an existing entry may then go unnoticed.
    type: str
    default: rotor-pgbouncer
  login_unix_socket:
    description:
      - Directory of PostgreSQL's Unix socket. With it or O(login_host), the module reads the role's stored
        verifier and PostgreSQL's C(max_connections), and can set the role's password.
    type: str
  login_host:
    description: Host of PostgreSQL for the module's own connection (see O(login_unix_socket)).
    type: str
  login_port:
    description: Port of PostgreSQL for the module's own connection.
    type: int
    default: 5432
  login_user:
    description: A PostgreSQL superuser (reading C(pg_authid) needs one).
    type: str
    default: postgres
  login_password:
    description: Password of O(login_user).
    type: str
  login_db:
    description: Database the module's own PostgreSQL connection opens.
    type: str
    default: postgres
  set_role_password:
    description:
      - When PostgreSQL stores another verifier for O(user), set the role's password to the userlist's verifier
        (ALTER ROLE ... PASSWORD with the verifier, so PostgreSQL never sees the password).
      - Needs a PostgreSQL connection. The role itself must exist (create it with community.postgresql).
    type: bool
    default: true
  max_connections:
    description: PostgreSQL's C(max_connections) for the budget check; read from PostgreSQL when not given.
    type: int
  connection_reserve:
    description: Connections of C(max_connections) kept out of the tenants' budget (superusers, exporters, admin).
    type: int
    default: 10
  default_pool_size:
    description: PgBouncer's C(default_pool_size), counted for entries in O(config) that set no C(pool_size).
    type: int
    default: 20
  lock_timeout:
    description: Seconds to wait for another run holding the lock on the tenant files.
    type: int
    default: 60
requirements:
  - psycopg 3 (python3-psycopg), for the admin console and PostgreSQL
notes:
  - The budget check counts the entries of O(config) only; the budget is checked when C(max_connections) is
    known (given, or read from PostgreSQL), else the result says so.
  - PgBouncer keeps a user it once loaded in SHOW USERS after the user's line is removed, but without a
    verifier nobody can log in as that user.
seealso:
  - name: PgBouncer configuration
    description: The C([databases]) section and the authentication file.
    link: https://www.pgbouncer.org/config.html
"""

EXAMPLES = r"""
- name: Tenant acme, with the password PostgreSQL already stores for role acme
  rotor.vps.pgbouncer_tenant:
    name: acme
    password: "{{ vault_acme_password }}"
    pool_size: 5
    reserve_pool: 2
    pool_mode: transaction
    admin_password: "{{ pgbouncer_admin_password }}"
    login_unix_socket: /var/lib/rotor/postgres/run
    login_password: "{{ postgres_superuser_password }}"

- name: Tenant with a verifier copied from elsewhere, without touching PostgreSQL
  rotor.vps.pgbouncer_tenant:
    name: billing
    verifier: "{{ vault_billing_verifier }}"
    max_connections: 110
    admin_password: "{{ pgbouncer_admin_password }}"

- name: Remove tenant acme from PgBouncer (its database stays in PostgreSQL)
  rotor.vps.pgbouncer_tenant:
    name: acme
    state: absent
    admin_password: "{{ pgbouncer_admin_password }}"
"""

RETURN = r"""
tenant:
  description: The tenant as applied (or as it would be, in check mode). Never holds a password or verifier.
  returned: always
  type: dict
  sample:
    name: acme
    state: present
    database: acme
    user: acme
    entry: acme = host=/var/run/postgresql port=5432 dbname=acme pool_size=5 reserve_pool=2 pool_mode=transaction
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["add database acme in /etc/rotor/pgbouncer/databases.ini: host=/var/run/postgresql ...",
           "reload PgBouncer and check that it serves the change"]
budget:
  description: >-
    Server connections of all databases in the config after the change (C(used), C(tenants)) and, when
    max_connections is known, C(max_connections), C(reserve) and C(limit).
  returned: always
  type: dict
  sample: {used: 42, tenants: 6, max_connections: 110, reserve: 10, limit: 100}
backups:
  description: The backup written for each file that changed, by file name.
  returned: when changed
  type: dict
  sample: {databases.ini: /etc/rotor/pgbouncer/backup/databases.ini.20261122T103000.000000Z}
reloaded:
  description: Whether PgBouncer was reloaded.
  returned: always
  type: bool
verified:
  description: Whether SHOW DATABASES and SHOW USERS showed the change after the reload.
  returned: always
  type: bool
role_password_set:
  description: Whether the PostgreSQL role's password was set to the userlist's verifier.
  returned: always
  type: bool
lock_waited:
  description: Seconds this run waited for another run holding the lock on the tenant files.
  returned: when not in check mode
  type: float
"""

import importlib.util

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rotor.vps.plugins.module_utils._host_lock import LockTimeout
from ansible_collections.rotor.vps.plugins.module_utils._module_run import add_diff, plan_and_apply, refuse_bad_input
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_admin import (
    HAS_PSYCOPG,
    AdminConsole,
    ConsoleError,
    PostgresServer,
    ReloadLog,
)
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import IniError, render_connstring
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_tenant import (
    BudgetError,
    Observed,
    Settings,
    Tenant,
    TenantError,
    diff,
    input_errors,
    make_plan,
)

HAS_DOCKER = importlib.util.find_spec("docker") is not None

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    database=dict(type="str"),
    user=dict(type="str"),
    password=dict(type="str", no_log=True),
    verifier=dict(type="str", no_log=True),
    host=dict(type="str", default="/var/run/postgresql"),
    port=dict(type="int", default=5432),
    pool_size=dict(type="int", default=5),
    reserve_pool=dict(type="int", default=0),
    max_db_connections=dict(type="int", default=0),
    pool_mode=dict(type="str", choices=["session", "transaction", "statement"]),
    options=dict(type="dict", default={}),
    config=dict(type="path", default="/etc/rotor/pgbouncer/databases.ini"),
    userlist=dict(type="path", default="/etc/rotor/pgbouncer/userlist.txt"),
    backup_keep=dict(type="int", default=5),
    reload=dict(type="bool", default=True),
    admin_host=dict(type="str", default="/var/lib/rotor/pgbouncer/run"),
    admin_port=dict(type="int", default=6432),
    admin_user=dict(type="str", default="pgbouncer_admin"),
    admin_password=dict(type="str", no_log=True),
    log_container=dict(type="str", default="rotor-pgbouncer"),
    docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
    login_unix_socket=dict(type="str"),
    login_host=dict(type="str"),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str", default="postgres"),
    login_password=dict(type="str", no_log=True),
    login_db=dict(type="str", default="postgres"),
    # Not a secret (a yes/no switch); said explicitly, since its name looks like one to Ansible.
    set_role_password=dict(type="bool", default=True, no_log=False),
    max_connections=dict(type="int"),
    connection_reserve=dict(type="int", default=10),
    default_pool_size=dict(type="int", default=20),
    lock_timeout=dict(type="int", default=60),
)


def settings_from(params: dict) -> Settings:
    """The validated input as Settings (database and user default to the tenant name)."""
    return Settings(
        name=params["name"], state=params["state"], database=params["database"] or params["name"],
        user=params["user"] or params["name"], password=params["password"], verifier=params["verifier"],
        host=params["host"], port=params["port"], pool_size=params["pool_size"],
        reserve_pool=params["reserve_pool"], max_db_connections=params["max_db_connections"],
        pool_mode=params["pool_mode"], options=dict(params["options"] or {}), config=params["config"],
        userlist=params["userlist"], backup_keep=params["backup_keep"], reload=params["reload"],
        set_role_password=params["set_role_password"], max_connections=params["max_connections"],
        connection_reserve=params["connection_reserve"], default_pool_size=params["default_pool_size"],
        lock_timeout=params["lock_timeout"],
    )


def build(module: AnsibleModule, settings: Settings) -> Tenant:
    """The tenant with its clients: the admin console when reloading, PostgreSQL when a connection is given."""
    params = module.params
    admin = log = None
    if settings.reload:
        admin = AdminConsole(host=params["admin_host"], port=params["admin_port"], user=params["admin_user"],
                             password=params["admin_password"])
        if params["log_container"]:
            log = ReloadLog(docker_host=params["docker_host"], container=params["log_container"])
    postgres = None
    login_host = params["login_unix_socket"] or params["login_host"]
    if login_host:
        postgres = PostgresServer(host=login_host, port=params["login_port"], user=params["login_user"],
                                  password=params["login_password"], dbname=params["login_db"])
    return Tenant(settings, admin=admin, postgres=postgres, log=log)


def planned(settings: Settings, observed: Observed) -> tuple:
    """What is there, and the plan for it (the pair the tenant's apply takes)."""
    return observed, make_plan(settings, observed)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[("password", "verifier"), ("login_unix_socket", "login_host")])
    refuse_bad_input(module, input_errors(module.params))
    settings = settings_from(module.params)
    if not HAS_PSYCOPG and (settings.reload or module.params["login_unix_socket"] or module.params["login_host"]):
        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"))
    if not HAS_DOCKER and settings.reload and module.params["log_container"]:
        module.fail_json(msg=missing_required_lib("docker (python3-docker)"))
    tenant = build(module, settings)
    what = "pgbouncer_tenant %s" % settings.name
    result = dict(changed=False, actions=[], reloaded=False, verified=False, role_password_set=False, backups={},
                  tenant=dict(name=settings.name, state=settings.state, database=settings.database,
                              user=settings.user))
    if settings.state == "present":
        result["tenant"]["entry"] = "%s = %s" % (settings.name, render_connstring(settings.entry()))
    try:
        outcome = plan_and_apply(module, lock=tenant.lock, plan=lambda: planned(settings, tenant.observe()),
                                 apply=lambda both: tenant.apply(*both))
        observed, plan = outcome.plan
        result.update(outcome.applied or {})
        if outcome.lock_waited is not None:
            result["lock_waited"] = outcome.lock_waited
    except (IniError, BudgetError) as exc:
        module.fail_json(msg="%s: %s; nothing was changed" % (what, exc))
    except TenantError as exc:
        module.fail_json(msg="%s: %s" % (what, exc), step=exc.step, restored=exc.restored,
                         changed=not exc.restored)
    except (ConsoleError, LockTimeout, OSError) as exc:
        module.fail_json(msg="%s: %s; nothing was changed" % (what, exc))
    for warning in plan.warnings:
        module.warn(warning)
    result.update(changed=plan.changes(observed), actions=plan.actions, budget=plan.budget)
    add_diff(module, result, lambda: diff(settings, observed, plan))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
