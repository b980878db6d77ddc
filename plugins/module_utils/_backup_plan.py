# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backups' rules, pure: file names and retention, the input's rules, the metrics, and the restore's names
and statements (the backup role's script, ``_backup.py``, runs them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._audit import textfile_text
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    calendar_errors,
    host_path_errors,
    one_line_errors,
    whole_number_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._validate_container import (
    docker_host_errors,
)

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_SUFFIX = ".dump"
GLOBALS = "globals"
GLOBALS_SUFFIX = ".sql.gz"
# A database name the files and the restore's statements carry unquoted (the tenants' rule, and "postgres").
DATABASE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FILE_RE = re.compile(r"^([a-z_][a-z0-9_]{0,62})\.([0-9]{8}T[0-9]{6}Z)(%s|%s)$"
                      % (re.escape(DUMP_SUFFIX), re.escape(GLOBALS_SUFFIX)))
# The restore's own databases: the restored copy until it is swapped in, and the one it replaced.
RESTORING = "_restoring_"
REPLACED = "_replaced_"
# Longest tenant name whose restore names (<tenant>_restoring_<stamp>) still fit PostgreSQL's 63 characters.
RESTORE_NAME_MAX = 63 - len(RESTORING) - len("20261201T180000Z")

BACKUP_METRICS = {
    "rotor_backup_last_run_timestamp_seconds": ("gauge", "When the last backup run ended."),
    "rotor_backup_last_success_timestamp_seconds": ("gauge", "When a backup run last succeeded (every database and "
                                                             "the globals dumped)."),
    "rotor_backup_last_duration_seconds": ("gauge", "How long the last backup run took."),
    "rotor_backup_last_size_bytes": ("gauge", "Bytes the last successful backup run wrote (every file)."),
    "rotor_backup_databases": ("gauge", "Databases the last backup run dumped."),
    "rotor_backup_runs_total": ("counter", "Backup runs that succeeded."),
    "rotor_backup_failures_total": ("counter", "Backup runs that failed (a dump, the listing or the off-site copy)."),
    "rotor_backup_offsite_last_success_timestamp_seconds": ("gauge", "When the off-site copy of a run last succeeded."),
    "rotor_backup_offsite_failures_total": ("counter", "Off-site copies that failed."),
}
DATABASE_METRICS = {
    "rotor_backup_database_size_bytes": ("gauge", "Size of the database's dump in the last backup run."),
}
SCHEDULE_METRICS = {
    "rotor_backup_interval_seconds": ("gauge", "Longest time between two runs of the backup timer."),
}


class BackupError(Exception):
    """A step of a backup or a restore failed; the message says which, on what, and why."""


# An age recipient: an X25519 public key (age1 and 58 bech32 characters) or an SSH public key.
AGE_RECIPIENT_RE = re.compile(r"^(age1[02-9ac-hj-np-z]{58}|(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?)$")


def backup_input_errors(s: dict) -> list[str]:
    """The backup role's variables, by name."""
    errors: list[str] = []
    if not isinstance(s.get("backup_enabled"), bool):
        errors.append("backup_enabled: must be true or false")
    if not s.get("backup_enabled", True):
        return errors
    password = s.get("backup_postgres_superuser_password")
    if not isinstance(password, str) or not password:
        errors.append("backup_postgres_superuser_password: required (keep it in the vault; by default the postgres "
                      "role's postgres_superuser_password): pg_dump logs in as the superuser")
    elif "\n" in password or "\r" in password:
        errors.append("backup_postgres_superuser_password: must be one line (a libpq password file holds it)")
    for name in ("backup_dir", "backup_metrics_dir", "backup_collections_path"):
        errors += host_path_errors(s.get(name), name)
    if s.get("backup_dir") in ("/", "/var", "/var/backups", "/root", "/etc"):
        errors.append("backup_dir: %r is shared with other files; give the backups a directory of their own (e.g. "
                      "/var/backups/rotor): retention removes old backup files in it" % (s.get("backup_dir"),))
    errors += calendar_errors(s.get("backup_on_calendar"), "backup_on_calendar")
    errors += whole_number_errors(s.get("backup_retention_days"), "backup_retention_days", 1)
    errors += whole_number_errors(s.get("backup_run_timeout"), "backup_run_timeout", 60, hint=" (seconds)")
    errors += whole_number_errors(s.get("backup_offsite_timeout"), "backup_offsite_timeout", 10, hint=" (seconds)")
    errors += docker_host_errors(s.get("backup_docker_host"), "backup_docker_host")
    container = s.get("backup_postgres_container")
    if not isinstance(container, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", container):
        errors.append("backup_postgres_container: %r must be a container name" % (container,))
    exclude = s.get("backup_exclude_databases")
    if not isinstance(exclude, list):
        errors.append("backup_exclude_databases: must be a list of database names")
    else:
        errors += ["backup_exclude_databases[%d]: %r is not a database name (lower-case letters, digits and _)"
                   % (index, name) for index, name in enumerate(exclude)
                   if not isinstance(name, str) or not DATABASE_RE.fullmatch(name)]
    command = s.get("backup_offsite_command")
    recipients = s.get("backup_offsite_recipients")
    if not isinstance(command, str):
        errors.append("backup_offsite_command: must be a shell command, or empty for no off-site copy")
    else:
        errors += one_line_errors(command, "backup_offsite_command")
    if not isinstance(recipients, list):
        errors.append("backup_offsite_recipients: must be a list of age recipients (age1... or ssh-ed25519 keys)")
        recipients = []
    errors += ["backup_offsite_recipients[%d]: %r is not an age recipient: an age public key (age1...) or an SSH "
               "public key (ssh-ed25519 ... or ssh-rsa ...)" % (index, value) for index, value in enumerate(recipients)
               if not isinstance(value, str) or not AGE_RECIPIENT_RE.fullmatch(value.strip())]
    if command and not recipients:
        errors.append("backup_offsite_command: the off-site copy leaves the host encrypted only: give "
                      "backup_offsite_recipients (age public keys) too")
    return errors


# ---------------------------------------------------------------------------------------------------------------
# Names, retention, metrics: pure


def stamp_of(when: datetime) -> str:
    """The UTC time stamp in file and database names (sorts as the time does)."""
    return when.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def dump_name(database: str, when: datetime) -> str:
    """``<database>.<stamp>.dump``: one database, pg_dump's custom format (compressed)."""
    return "%s.%s%s" % (database, stamp_of(when), DUMP_SUFFIX)


def globals_name(when: datetime) -> str:
    """``globals.<stamp>.sql.gz``: roles (with their password verifiers) and tablespaces."""
    return "%s.%s%s" % (GLOBALS, stamp_of(when), GLOBALS_SUFFIX)


@dataclass(frozen=True)
class BackupFile:
    name: str
    # The database, or "globals" for a globals file (kind tells them apart: a database may be called globals).
    database: str
    kind: str  # "dump" or "globals"
    when: datetime


def parse_name(name: str) -> Optional[BackupFile]:
    """The BackupFile a name stands for; None for any other file (temporary files, the operator's)."""
    match = _FILE_RE.fullmatch(name)
    if not match:
        return None
    when = datetime.strptime(match.group(2), STAMP_FORMAT).replace(tzinfo=timezone.utc)
    return BackupFile(name, match.group(1), "dump" if match.group(3) == DUMP_SUFFIX else "globals", when)


def _series(names: list[str]) -> dict[tuple[str, str], list[BackupFile]]:
    """The backup files among ``names`` by (kind, database), oldest first."""
    series: dict[tuple[str, str], list[BackupFile]] = {}
    for name in names:
        found = parse_name(name)
        if found:
            series.setdefault((found.kind, found.database), []).append(found)
    for files in series.values():
        files.sort(key=lambda f: f.when)
    return series


def to_prune(names: list[str], now: datetime, retention_days: int) -> list[str]:
    """The backup files older than ``retention_days``, but never the newest of a database or of the globals:
    backups that fail for longer than the retention still leave the last good one."""
    cutoff = now - timedelta(days=retention_days)
    pruned = []
    for files in _series(names).values():
        pruned += [f.name for f in files[:-1] if f.when < cutoff]
    return sorted(pruned)


def latest(names: list[str], database: str) -> Optional[str]:
    """The newest dump of ``database`` among ``names``, or None."""
    files = _series(names).get(("dump", database))
    return files[-1].name if files else None


def pgpass_line(password: str, user: str = "postgres") -> str:
    """A libpq password file's line for ``user`` on any host, port and database (``:`` and ``\\`` escaped)."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:")

    if "\n" in password or "\r" in password:
        raise BackupError("the superuser's password has a line break, which a libpq password file cannot hold")
    return "*:*:*:%s:%s\n" % (escape(user), escape(password))


def databases_to_dump(found: list[str], exclude: list[str]) -> list[str]:
    """The databases a run dumps: those PostgreSQL lists, less the excluded ones and a restore's copy in
    progress; names the files cannot carry are refused, not skipped."""
    chosen = []
    for name in found:
        if name in exclude or RESTORING in name:
            continue
        if not DATABASE_RE.fullmatch(name):
            raise BackupError("database %r: its name is not lower-case letters, digits and _, which backup file names "
                              "carry; exclude it (backup_exclude_databases) or rename it" % name)
        chosen.append(name)
    return chosen


@dataclass
class RunResult:
    """What one run did, for the metrics."""

    ok: bool
    started: float
    ended: float
    sizes: dict = field(default_factory=dict)  # file name -> bytes, the files this run wrote
    databases: dict = field(default_factory=dict)  # database -> bytes of its dump
    offsite: Optional[bool] = None  # None: no off-site copy configured
    errors: list = field(default_factory=list)


def metrics_samples(result: RunResult, previous: dict) -> list[tuple[dict, dict]]:
    """The textfile's samples after a run: the run's figures, the counters carried on from ``previous``."""
    values = dict.fromkeys(BACKUP_METRICS, 0.0)
    values.update({k: v for k, v in previous.items() if k in BACKUP_METRICS})
    values["rotor_backup_last_run_timestamp_seconds"] = round(result.ended, 3)
    values["rotor_backup_last_duration_seconds"] = round(result.ended - result.started, 3)
    if result.ok:
        values["rotor_backup_last_success_timestamp_seconds"] = round(result.ended, 3)
        values["rotor_backup_last_size_bytes"] = float(sum(result.sizes.values()))
        values["rotor_backup_databases"] = float(len(result.databases))
        values["rotor_backup_runs_total"] += 1
    else:
        values["rotor_backup_failures_total"] += 1
    if result.offsite is True:
        values["rotor_backup_offsite_last_success_timestamp_seconds"] = round(result.ended, 3)
    elif result.offsite is False:
        values["rotor_backup_offsite_failures_total"] += 1
    return [({}, values)] + [({"database": name}, {"rotor_backup_database_size_bytes": float(size)})
                             for name, size in sorted(result.databases.items())]


def schedule_text(interval_seconds: Optional[float]) -> str:
    """The textfile of the timer's schedule (the role writes it): BackupStale compares the last success with it."""
    samples = [({}, {"rotor_backup_interval_seconds": interval_seconds})] if interval_seconds else []
    return textfile_text(SCHEDULE_METRICS, samples)


# ---------------------------------------------------------------------------------------------------------------
# The restore's names and statements: pure


def restore_names(tenant: str, when: datetime) -> dict:
    """The restored copy's name until it is swapped in, and the name the replaced database keeps."""
    if not DATABASE_RE.fullmatch(tenant) or len(tenant) > RESTORE_NAME_MAX:
        raise BackupError("tenant %r: must be a tenant name (lower-case letters, digits and _, a letter first) of at "
                          "most %d characters" % (tenant, RESTORE_NAME_MAX))
    stamp = stamp_of(when).lower()  # database names stay lower-case: unquoted everywhere
    return {"restoring": tenant + RESTORING + stamp, "aside": tenant + REPLACED + stamp}


# What pg_restore --create writes for the database itself: its creation (encoding, locale), owner,
# settings, grants and comment. The tenant's database gets them under the restored copy's name.
_DATABASE_STATEMENT_RE = r"^(CREATE DATABASE {db} WITH |ALTER DATABASE {db} (OWNER TO|SET|RESET) |" \
                         r"(GRANT|REVOKE) .* ON DATABASE {db} (TO|FROM) |COMMENT ON DATABASE {db} IS ).*;$"


def database_statements(sql: str, database: str, new: str) -> list[str]:
    """The statements of ``pg_restore --create --schema-only`` output that make and shape the database itself
    (not its contents), for ``new`` instead of ``database``; the CREATE DATABASE first."""
    for name in (database, new):
        if not DATABASE_RE.fullmatch(name):
            raise BackupError("database %r: not a plain lower-case name" % name)
    pattern = re.compile(_DATABASE_STATEMENT_RE.format(db=re.escape(database)))
    here = re.compile(r"DATABASE %s\b" % re.escape(database))
    found = [here.sub("DATABASE %s" % new, line, count=1) for line in sql.splitlines() if pattern.match(line)]
    if not found or not found[0].startswith("CREATE DATABASE "):
        raise BackupError("the backup holds no CREATE DATABASE for %s: not a pg_dump archive of that database" % database)
    return found


def swap_statements(tenant: str, restored: str, aside: str, *, current_exists: bool) -> list[str]:
    """One transaction: the current database renamed aside (kept), the restored one renamed into its place.
    Any other session on either is ended first (PgBouncer's are gone after PAUSE; a rename needs none)."""
    for name in (tenant, restored, aside):
        if not DATABASE_RE.fullmatch(name):
            raise BackupError("database %r: not a plain lower-case name" % name)
    names = [restored] + ([tenant] if current_exists else [])
    terminate = ("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                 "WHERE datname IN (%s) AND pid <> pg_catalog.pg_backend_pid();"
                 % ", ".join("'%s'" % name for name in names))
    renames = (["ALTER DATABASE %s RENAME TO %s;" % (tenant, aside)] if current_exists else [])
    return [terminate, "BEGIN;"] + renames + ["ALTER DATABASE %s RENAME TO %s;" % (restored, tenant), "COMMIT;"]
