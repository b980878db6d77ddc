# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One tenant in PgBouncer: its ``[databases]`` entry and its userlist.txt verifier, planned then applied.

read (both files, PostgreSQL's stored verifier and max_connections) -> compare -> plan -> apply.
The plan is pure (make_plan); apply writes both files atomically under one lock, reloads PgBouncer
through its admin console and checks that PgBouncer now serves exactly the planned entry. When it
does not, the previous files are put back and PgBouncer reloaded again: a failure leaves PgBouncer
configured as it was.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Protocol

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState, atomic_write
from ansible_collections.rotor.vps.plugins.module_utils._host_lock import HostLock
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import (
    databases,
    parse_ini,
    remove_database,
    remove_user,
    render_connstring,
    set_database,
    set_user,
    tenant_name_errors,
    userlist_entries,
)
from ansible_collections.rotor.vps.plugins.module_utils._scram import is_verifier, make_verifier, verifier_matches
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    address_errors,
    docker_name_errors,
    host_path_errors,
    hostname_errors,
    no_nul_errors,
    pg_name_errors,
    port_errors,
    setting_name_errors,
    socket_dir_errors,
    text_errors,
    whole_number_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import (
    docker_host_errors,
)

POOL_MODES = ("session", "transaction", "statement")
# Keys the module writes itself; O(options) may not set them (or a password, which would be plaintext).
MANAGED_KEYS = frozenset(("host", "port", "dbname", "pool_size", "reserve_pool", "reserve_pool_size",
                          "max_db_connections", "pool_mode"))
FORBIDDEN_OPTION_KEYS = frozenset(("password", "user", "auth_user", "auth_query", "auth_dbname"))
BACKUP_DIR = "backup"
MASK = "********"


class TenantError(Exception):
    """A step failed; ``restored`` tells whether the previous files were put back."""

    def __init__(self, message: str, *, step: str, restored: bool = False):
        super().__init__(message)
        self.step = step
        self.restored = restored


class BudgetError(Exception):
    """The change would give PgBouncer more server connections than PostgreSQL accepts."""


@dataclass(frozen=True)
class Settings:
    """The module's input, validated (see input_errors)."""

    name: str
    state: str
    database: str
    user: str
    password: Optional[str]
    verifier: Optional[str]
    host: str
    port: int
    pool_size: int
    reserve_pool: int
    max_db_connections: int
    pool_mode: Optional[str]
    options: dict
    config: str
    userlist: str
    backup_keep: int
    reload: bool
    set_role_password: bool
    max_connections: Optional[int]
    connection_reserve: int
    default_pool_size: int
    lock_timeout: float

    def entry(self) -> dict[str, Any]:
        """The connection settings of the ``[databases]`` entry, in the order they are written."""
        value: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": self.database,
                                 "pool_size": self.pool_size, "reserve_pool": self.reserve_pool}
        if self.max_db_connections:
            value["max_db_connections"] = self.max_db_connections
        if self.pool_mode:
            value["pool_mode"] = self.pool_mode
        value.update(sorted(self.options.items()))
        return value


def _int_errors(params: dict, key: str, minimum: int) -> list[str]:
    value = params.get(key)
    return [] if value is None else whole_number_errors(value, key, minimum)


def _host_errors(host: object, where: str = "host", whose: str = "PostgreSQL's") -> list[str]:
    """A host name, or (starting with /) the directory of a unix socket (PostgreSQL's, PgBouncer's)."""
    if isinstance(host, str) and host.startswith("/"):
        if socket_dir_errors(host, where):
            return ["%s: %r must be a host name, or the absolute path of %s socket directory "
                    "(letters, digits, '.', '_', '-'; no '.' or '..' components)" % (where, host, whose)]
        return []
    return hostname_errors(host, where)


def _connection_errors(params: dict) -> list[str]:
    """How the module reaches PgBouncer's admin console, its log and PostgreSQL: plain names and addresses.

    Only the options ``params`` has are checked (the module has them all)."""
    def given(key: str) -> bool:
        return params.get(key) is not None

    errors = _host_errors(params["admin_host"], "admin_host", "PgBouncer's") if given("admin_host") else []
    for key in ("admin_user", "login_user", "login_db"):
        if given(key):
            errors += pg_name_errors(params[key], key)
    if params.get("log_container"):
        errors += docker_name_errors(params["log_container"], "log_container")
    if given("docker_host"):
        errors += docker_host_errors(params["docker_host"], "docker_host")
    if given("login_unix_socket"):
        errors += socket_dir_errors(params["login_unix_socket"], "login_unix_socket")
    if given("login_host"):
        errors += address_errors(params["login_host"], "login_host")
    for key in ("password", "admin_password", "login_password"):
        errors += no_nul_errors(params.get(key), key)
    return errors


def input_errors(params: dict) -> list[str]:
    """Everything wrong with the input, each naming the option and the rule; empty when it is valid."""
    errors = tenant_name_errors(params.get("name"), "name")
    for key in ("database", "user"):
        if params.get(key) is not None:
            errors += tenant_name_errors(params[key], key)
    errors += _int_errors(params, "pool_size", 1)
    for key in ("reserve_pool", "max_db_connections", "backup_keep", "connection_reserve"):
        errors += _int_errors(params, key, 0)
    errors += _int_errors(params, "max_connections", 1)
    errors += _int_errors(params, "default_pool_size", 1)
    errors += port_errors(params.get("port"), "port")
    errors += _host_errors(params.get("host"))
    errors += _option_errors(params.get("options") or {})
    if params.get("state", "present") == "present":
        if params.get("password") is None and params.get("verifier") is None:
            errors.append("password or verifier: one is required with state=present")
        if params.get("password") is not None and params.get("password") == "":
            errors.append("password: must not be empty")
        if params.get("verifier") is not None and not is_verifier(params["verifier"]):
            # Never echoed: it may be a plaintext password given by mistake.
            errors.append("verifier: must be a SCRAM-SHA-256 verifier "
                          "('SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>'), as PostgreSQL stores it")
    for key in ("config", "userlist"):
        errors += host_path_errors(params.get(key), key)
    if params.get("config") and params.get("config") == params.get("userlist"):
        errors.append("config and userlist: must be two different files")
    return errors + _connection_errors(params)


def _option_errors(options: object) -> list[str]:
    if not isinstance(options, dict):
        return ["options: must be a dict of connection settings, got %s" % type(options).__name__]
    errors = []
    for key, value in options.items():
        problems = setting_name_errors(key, "options")
        if problems:
            errors += problems
        elif key in MANAGED_KEYS:
            errors.append("options: %r is set by its own option of this module, not through options" % key)
        elif key in FORBIDDEN_OPTION_KEYS:
            errors.append("options: %r is not allowed: clients log in as themselves with the userlist's "
                          "verifier, and a password here would be plaintext on disk" % key)
        elif isinstance(value, bool) or not isinstance(value, (str, int)):
            errors.append("options: the value of %r must be a string or a whole number" % key)
        else:
            errors += text_errors(value, "options.%s" % key)
    return errors


@dataclass(frozen=True)
class Observed:
    """What is there before the change."""

    config_text: str
    userlist_text: str
    # PostgreSQL's side, when a connection to it was given: the role's stored verifier (None when the
    # role has no password or does not exist) and the server's max_connections.
    postgres_checked: bool = False
    role_exists: bool = False
    stored_verifier: Optional[str] = None
    max_connections: Optional[int] = None


@dataclass
class Plan:
    config_text: str
    userlist_text: str
    verifier: Optional[str]
    set_postgres_verifier: Optional[str]
    actions: list[str] = field(default_factory=list)
    budget: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def files_change(self, observed: Observed) -> bool:
        """Whether either file changes."""
        return self.config_text != observed.config_text or self.userlist_text != observed.userlist_text

    def changes(self, observed: Observed) -> bool:
        """Whether anything changes: a file or PostgreSQL's stored verifier."""
        return self.files_change(observed) or self.set_postgres_verifier is not None


def entry_connections(value: dict[str, str], default_pool_size: int) -> int:
    """How many server connections one ``[databases]`` entry may open: its pool plus reserve, capped.

    A tenant has one user, so one pool; max_db_connections (when set) caps pool + reserve.
    """
    def number(key: str, default: int) -> int:
        text = value.get(key)
        return int(text) if text is not None and text.isdigit() else default

    total = number("pool_size", default_pool_size) + number("reserve_pool", number("reserve_pool_size", 0))
    cap = number("max_db_connections", 0)
    return min(total, cap) if cap else total


def budget(config_text: str, default_pool_size: int) -> dict[str, int]:
    """Server connections per ``[databases]`` entry (the wildcard ``*`` counts once)."""
    return {name: entry_connections(value, default_pool_size) for name, value in databases(config_text).items()}


def choose_verifier(settings: Settings, observed: Observed,
                    new_verifier: Callable[[str], str] = make_verifier) -> tuple[str, Optional[str]]:
    """The verifier to write to the userlist, and the one to set in PostgreSQL (None: leave it).

    An unchanged password keeps its verifier: PostgreSQL's stored one first (so clients log in
    through PgBouncer), then the userlist's. Only a password neither holds gets a fresh salt.
    """
    current = userlist_entries(observed.userlist_text).get(settings.user)
    stored = observed.stored_verifier
    if settings.verifier is not None:
        chosen = settings.verifier
    elif stored and verifier_matches(settings.password or "", stored):
        chosen = stored
    elif current and verifier_matches(settings.password or "", current):
        chosen = current
    else:
        chosen = new_verifier(settings.password or "")
    to_postgres = None
    if observed.postgres_checked and observed.role_exists and stored != chosen and settings.set_role_password:
        to_postgres = chosen
    return chosen, to_postgres


def make_plan(settings: Settings, observed: Observed,
              new_verifier: Callable[[str], str] = make_verifier) -> Plan:
    """Compare what is there with what is wanted. Raises IniError for a file we refuse to edit and
    BudgetError for a change over the connection budget."""
    # Both files are parsed first: a corrupt file is refused before anything is planned.
    parse_ini(observed.config_text)
    current_users = userlist_entries(observed.userlist_text)
    current_entry = databases(observed.config_text).get(settings.name)
    if settings.state == "absent":
        config_text = remove_database(observed.config_text, settings.name)
        userlist_text = remove_user(observed.userlist_text, settings.user)
        plan = Plan(config_text, userlist_text, None, None)
        if current_entry is not None:
            plan.actions.append("remove database %s from %s" % (settings.name, settings.config))
        if settings.user in current_users:
            plan.actions.append("remove user %s from %s" % (settings.user, settings.userlist))
    else:
        chosen, to_postgres = choose_verifier(settings, observed, new_verifier)
        config_text = set_database(observed.config_text, settings.name, settings.entry())
        userlist_text = set_user(observed.userlist_text, settings.user, chosen)
        plan = Plan(config_text, userlist_text, chosen, to_postgres)
        if config_text != observed.config_text:
            plan.actions.append("%s database %s in %s: %s" % (
                "update" if current_entry is not None else "add", settings.name, settings.config,
                render_connstring(settings.entry())))
        if userlist_text != observed.userlist_text:
            plan.actions.append("%s the SCRAM verifier of user %s in %s" % (
                "replace" if settings.user in current_users else "add", settings.user, settings.userlist))
        if to_postgres is not None:
            plan.actions.append("set the password of PostgreSQL role %s to the same verifier" % settings.user)
        if observed.postgres_checked and not observed.role_exists:
            plan.warnings.append("PostgreSQL has no role %s yet: clients cannot log in until it exists with this "
                                 "password" % settings.user)
        elif observed.postgres_checked and observed.stored_verifier != chosen and not settings.set_role_password:
            plan.warnings.append("PostgreSQL stores another verifier for role %s and set_role_password is false: "
                                 "logins through PgBouncer fail until both match" % settings.user)
    plan.budget = check_budget(settings, observed, config_text)
    if plan.files_change(observed) and settings.reload:
        plan.actions.append("reload PgBouncer and check that it serves the change")
    return plan


def check_budget(settings: Settings, observed: Observed, config_text: str) -> dict:
    """The connection budget after the change; raises BudgetError when a change would exceed it.

    A change that does not raise the total is always allowed, so removing or shrinking a tenant
    works even on a host that is already over its budget.
    """
    max_connections = settings.max_connections or observed.max_connections
    after = budget(config_text, settings.default_pool_size)
    used = sum(after.values())
    result = {"used": used, "tenants": len(after)}
    if max_connections is None:
        return result
    limit = max_connections - settings.connection_reserve
    result.update(max_connections=max_connections, reserve=settings.connection_reserve, limit=limit)
    before = sum(budget(observed.config_text, settings.default_pool_size).values())
    if used > limit and used > before:
        raise BudgetError(
            "connection budget exceeded: the databases in %s would use %d server connections (pool_size + "
            "reserve_pool per database, capped by max_db_connections) but PostgreSQL's max_connections %d minus "
            "connection_reserve %d leaves %d; lower pool_size or reserve_pool, or raise the budget"
            % (settings.config, used, max_connections, settings.connection_reserve, limit))
    return result


def files_lock(config: str, timeout: float) -> HostLock:
    """The one lock over PgBouncer's database list and userlist (``<config>.lock``).

    Every writer of either file holds it: tenants (pgbouncer_tenant) and the admin user's line
    (pgbouncer_user), so concurrent runs apply one after the other and none loses another's line.
    """
    return HostLock(config + ".lock", timeout, "PgBouncer's tenant files (%s)" % config)


def masked_userlist_line(user: str, verifier: Optional[str]) -> str:
    """A userlist line for diffs and results: the verifier's method only, never the secret."""
    return "" if verifier is None else '"%s" "SCRAM-SHA-256$%s"\n' % (user, MASK)


def diff(settings: Settings, observed: Observed, plan: Plan) -> list[dict]:
    """Before/after of the tenant's two lines; verifiers masked (a changed one says so)."""
    before_entry = databases(observed.config_text).get(settings.name)
    after_entry = databases(plan.config_text).get(settings.name)
    before_verifier = userlist_entries(observed.userlist_text).get(settings.user)
    after_verifier = userlist_entries(plan.userlist_text).get(settings.user)
    after_user = masked_userlist_line(settings.user, after_verifier)
    if after_verifier is not None and before_verifier is not None and after_verifier != before_verifier:
        after_user = after_user.replace(MASK, MASK + " (new verifier)")
    return [
        dict(before_header=settings.config, after_header=settings.config,
             before="" if before_entry is None else "%s = %s\n" % (settings.name, render_connstring(before_entry)),
             after="" if after_entry is None else "%s = %s\n" % (settings.name, render_connstring(after_entry))),
        dict(before_header=settings.userlist, after_header=settings.userlist,
             before=masked_userlist_line(settings.user, before_verifier), after=after_user),
    ]


class Admin(Protocol):
    """PgBouncer's admin console (see _pgbouncer_admin.AdminConsole)."""

    def reload(self) -> None: ...

    def databases(self) -> dict[str, dict[str, Any]]: ...

    def users(self) -> set[str]: ...


class ReloadVerdict(Protocol):
    """PgBouncer's log verdict on the last RELOAD (see _pgbouncer_admin.ReloadLog)."""

    def failure(self, since: float) -> Optional[str]: ...


class Postgres(Protocol):
    """The PostgreSQL server (see _pgbouncer_admin.PostgresServer)."""

    def role_verifier(self, role: str) -> tuple[bool, Optional[str]]: ...

    def max_connections(self) -> int: ...

    def set_role_verifier(self, role: str, verifier: str) -> None: ...


def live_mismatch(settings: Settings, live: dict[str, dict[str, Any]], users: set[str]) -> Optional[str]:
    """Why PgBouncer's SHOW DATABASES / SHOW USERS do not show the applied entry; None when they do."""
    row = live.get(settings.name)
    if settings.state == "absent":
        return None if row is None else "SHOW DATABASES still lists %s" % settings.name
    if row is None:
        return "SHOW DATABASES does not list %s after RELOAD (PgBouncer's log says why)" % settings.name
    wanted = {"host": settings.host, "port": settings.port, "database": settings.database,
              "pool_size": settings.pool_size, "reserve_pool_size": settings.reserve_pool,
              "max_connections": settings.max_db_connections, "pool_mode": settings.pool_mode or None}
    for key, value in wanted.items():
        seen = row.get(key)
        if key == "pool_mode" and value is None:
            continue
        if str(seen) != str(value):
            return "SHOW DATABASES shows %s %s=%s, not %s (PgBouncer's log says why)" % (settings.name, key, seen, value)
    if settings.user not in users:
        return "SHOW USERS does not list %s after RELOAD" % settings.user
    return None


def backup(state: FileState, keep: int, stamp: str) -> Optional[str]:
    """Copy the file's current text to ``backup/<name>.<stamp>`` (0600) and prune to the newest ``keep``."""
    if keep <= 0 or state.text is None:
        return None
    directory = os.path.join(os.path.dirname(state.path), BACKUP_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    base = os.path.basename(state.path)
    path = os.path.join(directory, "%s.%s" % (base, stamp))
    atomic_write(path, state.text, mode=0o600, uid=0, gid=0)
    pattern = re.compile(re.escape(base) + r"\.\d{8}T\d{6}\.\d{6}Z")
    # The stamp sorts by time, so the newest come last.
    ours = sorted(name for name in os.listdir(directory) if pattern.fullmatch(name))
    for old in ours[:-keep]:
        os.unlink(os.path.join(directory, old))
    return path


def backup_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


class Tenant:
    """Reads, plans and applies one tenant; clients are built by the caller (real or test doubles)."""

    def __init__(self, settings: Settings, *, admin: Optional[Admin], postgres: Optional[Postgres],
                 log: Optional[ReloadVerdict] = None):
        self.settings = settings
        self.admin = admin
        self.log = log
        self.postgres = postgres
        self.config = FileState(settings.config, None)
        self.userlist = FileState(settings.userlist, None)

    def lock(self) -> HostLock:
        return files_lock(self.settings.config, self.settings.lock_timeout)

    def observe(self) -> Observed:
        for path in (self.settings.config, self.settings.userlist):
            if not os.path.isdir(os.path.dirname(path)):
                raise TenantError("the directory of %s does not exist (is the pgbouncer role applied?)" % path,
                                  step="read")
        self.config = FileState.read(self.settings.config)
        self.userlist = FileState.read(self.settings.userlist)
        observed = Observed(self.config.text or "", self.userlist.text or "")
        if self.postgres is None:
            return observed
        exists, stored = self.postgres.role_verifier(self.settings.user)
        return Observed(observed.config_text, observed.userlist_text, postgres_checked=True, role_exists=exists,
                        stored_verifier=stored, max_connections=self.postgres.max_connections())

    def apply(self, observed: Observed, plan: Plan) -> dict:
        """Write, reload, verify; on failure restore both files and reload again. Returns what happened."""
        result: dict[str, Any] = {"backups": {}, "reloaded": False, "verified": False, "role_password_set": False}
        if plan.files_change(observed):
            stamp = backup_stamp()
            for state in (self.config, self.userlist):
                try:
                    saved = backup(state, self.settings.backup_keep, stamp)
                except OSError as exc:  # a full disk, say: the files are untouched
                    raise TenantError("could not back up %s to %s: %s; nothing was changed" % (
                        state.path, os.path.join(os.path.dirname(state.path), BACKUP_DIR), exc),
                        step="backup", restored=True) from None
                if saved:
                    result["backups"][os.path.basename(state.path)] = saved
            self._write_files(plan)
            if self.settings.reload and self.admin is not None:
                self._reload_and_verify()
                result.update(reloaded=True, verified=True)
        if plan.set_postgres_verifier is not None and self.postgres is not None:
            try:
                self.postgres.set_role_verifier(self.settings.user, plan.set_postgres_verifier)
            except Exception as exc:  # pylint: disable=broad-except
                restored, undone = (self._rollback_after_failure() if plan.files_change(observed)
                                    else (True, "the previous files were restored and PgBouncer reloaded with them"))
                raise TenantError("could not set the password of PostgreSQL role %s: %s; %s" % (
                    self.settings.user, exc, undone), step="postgres", restored=restored) from None
            result["role_password_set"] = True
        return result

    def _write_files(self, plan: Plan) -> None:
        """Both files, each atomically; when one cannot be written, the one written before it is put back."""
        written: Optional[FileState] = None
        for state, text in ((self.userlist, plan.userlist_text), (self.config, plan.config_text)):
            try:
                state.write(text)
            except OSError as exc:
                if written is None:
                    raise TenantError("could not write %s: %s; nothing was changed" % (state.path, exc),
                                      step="write", restored=True) from None
                try:
                    written.restore()
                except OSError as again:
                    raise TenantError("could not write %s: %s; putting the previous %s back failed too (%s): compare "
                                      "it with its copy in backup/" % (state.path, exc, written.path, again),
                                      step="write") from None
                raise TenantError("could not write %s: %s; the previous %s was put back" % (state.path, exc, written.path),
                                  step="write", restored=True) from None
            written = state

    def _reload_and_verify(self) -> None:
        if self.admin is None:
            return
        try:
            since = time.time() - 0.01
            self.admin.reload()
            problem = self.log.failure(since) if self.log is not None else None
            if problem is not None:
                problem = "PgBouncer could not load the new configuration: %s" % problem
            else:
                problem = self._live_problem()
        except Exception as exc:  # pylint: disable=broad-except
            problem = "RELOAD through the admin console failed: %s" % exc
        if problem is None:
            return
        restored, undone = self._rollback_after_failure()
        raise TenantError("PgBouncer did not take the change: %s; %s" % (problem, undone), step="reload", restored=restored)

    def _unserved_note(self) -> str:
        """After a rollback, the databases of the previous list that PgBouncer still does not serve (its own
        pgbouncer.ini no longer includes the list, say), as a note for the error; "" when it serves them all."""
        if self.admin is None:
            return ""
        try:
            missing = sorted(set(databases(self.config.text or "")) - set(self.admin.databases()))
        except Exception:  # pylint: disable=broad-except
            return ""  # it cannot be asked: the error says enough
        if not missing:
            return ""
        return ("; yet PgBouncer does not serve %s, listed there, even so: its own configuration does not load %s "
                "(pgbouncer.ini damaged?); converge the pgbouncer role to repair it" % (", ".join(missing), self.settings.config))

    def _live_problem(self) -> Optional[str]:
        if self.admin is None:
            return None
        live = self.admin.databases()
        problem = live_mismatch(self.settings, live, self.admin.users() if self.settings.state == "present" else set())
        if problem and self.settings.state == "absent" and live.get(self.settings.name, {}).get("current_client_connections"):
            # PgBouncer keeps a removed database while clients are connected to it, and drops it after.
            return None
        return problem

    def _restore(self) -> None:
        self.config.restore()
        self.userlist.restore()

    def _rollback_after_failure(self) -> tuple[bool, str]:
        """Put the previous files back and reload PgBouncer with them: (files put back, what the error says of it)."""
        try:
            self._restore()
        except OSError as exc:
            return False, "restoring the previous files failed too (%s): check them against their copies in backup/" % exc
        if not self.settings.reload or self.admin is None:
            return True, "the previous files were restored"
        try:
            self.admin.reload()
        except Exception:  # pylint: disable=broad-except
            # PgBouncer down (killed, restarting): the files are right, and it reads them when it starts.
            return True, ("the previous files were restored, but PgBouncer could not be reloaded with them (its admin "
                          "console did not answer): it loads them when it is next reloaded or started")
        return True, "the previous files were restored and PgBouncer reloaded with them" + self._unserved_note()
