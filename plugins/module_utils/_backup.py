# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of every database and of the cluster's globals, and one tenant's restore (the backup role's script).

Run on the VPS by the backup role's systemd timer (``rotor-backup.service``)::

    python3 -m ansible_collections.rotor.vps.plugins.module_utils._backup backup --config /etc/rotor/backup/backup.json

A run lists the databases PostgreSQL has (every one that takes connections and is no template, but
those excluded), dumps each with ``pg_dump -Fc`` (compressed) and the roles and tablespaces with
``pg_dumpall --globals-only`` (gzip), each into a temporary file in the backup directory that is
renamed to its final name only once the dump succeeded: a file under a final name is always whole.
Files older than the retention go, but never the newest of a database. With an off-site command,
each new file is encrypted with age to the configured recipients and handed to that command. The
textfile metrics say when the last run succeeded, how big it was, how long it took, and how many
runs failed.

PostgreSQL's own tools of the running server's image do the work, through ``docker exec`` into its
container and its unix socket, so versions always match. The password reaches libpq through a
password file in the container's private /tmp (written from stdin, removed at the end), never a
command line or an environment variable.

``restore`` and ``swap`` are ``playbooks/restore.yml``'s steps: a tenant's backup restored into a new
database, then, while PgBouncer holds the tenant's clients (PAUSE), the current database renamed
aside (kept) and the restored one renamed into its place, in one transaction.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Callable, Iterator, Optional

from ansible_collections.rotor.vps.plugins.module_utils._audit import read_textfile, textfile_text, write_textfile_samples
from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    calendar_errors,
    docker_host_errors,
    host_path_errors,
    one_line_errors,
    whole_number_errors,
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
DEFAULT_CONFIG = "/etc/rotor/backup/backup.json"
# How much of a failed tool's stderr an error quotes.
STDERR_TAIL = 2000

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


# ---------------------------------------------------------------------------------------------------------------
# Files


@contextmanager
def atomic_output(path: str, *, mode: int = 0o600) -> Iterator[IO[bytes]]:
    """A binary file that appears under ``path`` only when the block ends without an error: a temporary
    file in the same directory (``mode`` from the start), fsync, rename, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".partial", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_partials(directory: str) -> list[str]:
    """Temporary files a killed run left behind (never a final name)."""
    removed = []
    for name in os.listdir(directory):
        if name.startswith(".") and name.endswith(".partial"):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL, through its container


def _tail(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[-STDERR_TAIL:]


class Postgres:
    """PostgreSQL's own tools in its running container (``docker exec``), over its unix socket, as the superuser.

    Use as a context manager: the password file exists in the container's /tmp (a tmpfs) for the block only.
    """

    def __init__(self, *, docker_host: str, container: str, password: str, socket_dir: str = "/var/run/postgresql",
                 runner: Callable = subprocess.run):
        self.docker_host = docker_host
        self.container = container
        self.password = password
        self.socket_dir = socket_dir
        self.run = runner
        self.passfile = "/tmp/.rotor-backup-%d.pgpass" % os.getpid()

    def _exec(self, *argv: str, interactive: bool = False) -> list[str]:
        return (["docker", "-H", self.docker_host, "exec"] + (["-i"] if interactive else [])
                + ["-e", "PGPASSFILE=%s" % self.passfile, "-e", "PGHOST=%s" % self.socket_dir, "-e", "PGUSER=postgres",
                   self.container] + list(argv))

    def __enter__(self) -> "Postgres":
        line = pgpass_line(self.password)
        proc = self.run(self._exec("sh", "-c", 'umask 077 && cat > "$PGPASSFILE"', interactive=True),
                        input=line.encode(), capture_output=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise BackupError("could not reach PostgreSQL's container %s (docker exec): %s"
                              % (self.container, _tail(proc.stderr) or "exit %d" % proc.returncode))
        return self

    def __exit__(self, *exc) -> None:
        self.run(self._exec("rm", "-f", self.passfile), capture_output=True, timeout=60, check=False)

    def query(self, sql: str, *, what: str, dbname: str = "postgres") -> str:
        """psql's unaligned output of ``sql`` (statements one after the other, the first error stops it)."""
        proc = self.run(self._exec("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname, interactive=True),
                        input=sql.encode(), capture_output=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise BackupError("%s: PostgreSQL said: %s" % (what, _tail(proc.stderr) or "exit %d" % proc.returncode))
        return proc.stdout.decode()

    def databases(self) -> list[str]:
        """Every database that takes connections and is no template."""
        out = self.query("SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate "
                         "ORDER BY 1;", what="listing the databases")
        return [line for line in out.splitlines() if line]

    def exists(self, database: str) -> bool:
        out = self.query("SELECT 1 FROM pg_catalog.pg_database WHERE datname = '%s';" % database,
                         what="looking for database %s" % database)
        return out.strip() == "1"

    def _stream(self, argv: list[str], sink: IO[bytes], *, what: str, source: Optional[IO[bytes]] = None) -> None:
        with tempfile.TemporaryFile() as errors:
            proc = self.run(self._exec(*argv, interactive=source is not None), stdin=source, stdout=sink,
                            stderr=errors, timeout=6 * 3600, check=False)
            errors.seek(0)
            if proc.returncode != 0:
                raise BackupError("%s: %s" % (what, _tail(errors.read()) or "exit %d" % proc.returncode))

    def dump(self, database: str, sink: IO[bytes]) -> None:
        """pg_dump's custom format (compressed) of ``database`` into ``sink``."""
        self._stream(["pg_dump", "-Fc", "-d", database], sink, what="pg_dump of database %s failed" % database)

    def dump_globals(self, sink: IO[bytes]) -> None:
        """pg_dumpall --globals-only (roles with their password verifiers, tablespaces), gzipped into ``sink``."""
        with tempfile.TemporaryFile() as plain:
            self._stream(["pg_dumpall", "--globals-only"], plain, what="pg_dumpall --globals-only failed")
            plain.seek(0)
            with gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) as packed:
                shutil.copyfileobj(plain, packed)

    def schema_sql(self, path: str) -> str:
        """``pg_restore --create --schema-only`` of a dump file, as SQL text."""
        with open(path, "rb") as source, tempfile.TemporaryFile() as out:
            self._stream(["pg_restore", "--create", "--schema-only", "-f", "-"], out, source=source,
                         what="pg_restore could not read %s" % path)
            out.seek(0)
            return out.read().decode("utf-8", "replace")

    def restore(self, path: str, database: str) -> None:
        """The dump's contents into the existing ``database``, in one transaction (all or nothing)."""
        with open(path, "rb") as source, tempfile.TemporaryFile() as out:
            self._stream(["pg_restore", "--exit-on-error", "--single-transaction", "-d", database], out, source=source,
                         what="pg_restore of %s into database %s failed" % (path, database))


# ---------------------------------------------------------------------------------------------------------------
# A backup run


@dataclass
class Config:
    directory: str
    retention_days: int
    docker_host: str
    container: str
    password_file: str
    metrics_file: str
    exclude: list = field(default_factory=list)
    offsite_command: str = ""
    recipients_file: str = ""
    offsite_timeout: int = 3600

    @classmethod
    def load(cls, path: str) -> "Config":
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise BackupError("could not read the configuration %s: %s (the backup role writes it)" % (path, exc)) from None

    def password(self) -> str:
        try:
            with open(self.password_file, encoding="utf-8") as handle:
                return handle.read().rstrip("\n")
        except OSError as exc:
            raise BackupError("could not read the superuser's password file %s: %s" % (self.password_file, exc)) from None

    def postgres(self) -> Postgres:
        return Postgres(docker_host=self.docker_host, container=self.container, password=self.password())


def offsite_copy(config: Config, path: str, *, runner: Callable = subprocess.run) -> None:
    """Encrypt ``path`` with age to the recipients, then hand it to the off-site command: ``/bin/sh -c <command>``
    with the encrypted file's path as $1, its name as $2, and its bytes on stdin. The encrypted copy is removed."""
    spool = os.path.join(config.directory, ".offsite")
    os.makedirs(spool, mode=0o700, exist_ok=True)
    encrypted = os.path.join(spool, os.path.basename(path) + ".age")
    try:
        proc = runner(["age", "--encrypt", "-R", config.recipients_file, "-o", encrypted, path],
                      capture_output=True, timeout=config.offsite_timeout, check=False)
        if proc.returncode != 0:
            raise BackupError("age could not encrypt %s for the recipients in %s: %s"
                              % (path, config.recipients_file, _tail(proc.stderr)))
        with open(encrypted, "rb") as source:
            proc = runner(["/bin/sh", "-c", config.offsite_command, "rotor-backup-offsite", encrypted,
                           os.path.basename(encrypted)], stdin=source, capture_output=True,
                          timeout=config.offsite_timeout, check=False)
        if proc.returncode != 0:
            raise BackupError("the off-site command (backup_offsite_command) failed on %s with exit %d: %s"
                              % (os.path.basename(encrypted), proc.returncode, _tail(proc.stderr)))
    except subprocess.TimeoutExpired:
        raise BackupError("the off-site copy of %s took longer than %d s" % (path, config.offsite_timeout)) from None
    finally:
        try:
            os.unlink(encrypted)
        except FileNotFoundError:
            pass


def _say(message: str) -> None:
    """One line to the journal (the unit's stdout)."""
    sys.stdout.write(message + "\n")


def run_backup(config: Config, *, now: Optional[Callable[[], float]] = None, log: Callable = _say) -> RunResult:
    """One run: every database and the globals, pruning, the off-site copy; the metrics written in any case."""
    clock = now or time.time
    result = RunResult(ok=False, started=clock(), ended=0.0)
    when = datetime.fromtimestamp(result.started, timezone.utc)
    try:
        remove_partials(config.directory)
        with config.postgres() as postgres:
            databases = databases_to_dump(postgres.databases(), config.exclude)
            for database in databases:
                path = os.path.join(config.directory, dump_name(database, when))
                try:
                    with atomic_output(path) as sink:
                        postgres.dump(database, sink)
                except BackupError as exc:
                    result.errors.append(str(exc))
                    continue
                result.sizes[os.path.basename(path)] = result.databases[database] = os.path.getsize(path)
            path = os.path.join(config.directory, globals_name(when))
            try:
                with atomic_output(path) as sink:
                    postgres.dump_globals(sink)
                result.sizes[os.path.basename(path)] = os.path.getsize(path)
            except BackupError as exc:
                result.errors.append(str(exc))
        for name in to_prune(os.listdir(config.directory), when, config.retention_days):
            os.unlink(os.path.join(config.directory, name))
            log("removed %s (older than %d days)" % (name, config.retention_days))
        if config.offsite_command and result.sizes:
            result.offsite = True
            for name in sorted(result.sizes):
                try:
                    offsite_copy(config, os.path.join(config.directory, name))
                except BackupError as exc:
                    result.offsite = False
                    result.errors.append(str(exc))
    except (BackupError, OSError, subprocess.TimeoutExpired) as exc:
        result.errors.append(str(exc))
    result.ok = not result.errors
    result.ended = clock()
    write_metrics(config.metrics_file, result)
    return result


def write_metrics(path: str, result: RunResult) -> None:
    previous = read_textfile(path, {})
    write_textfile_samples(path, dict(BACKUP_METRICS, **DATABASE_METRICS), metrics_samples(result, previous))


# ---------------------------------------------------------------------------------------------------------------
# The restore's steps (playbooks/restore.yml)


def restore_into_new(config: Config, tenant: str, file_name: str = "", *, now: Optional[datetime] = None) -> dict:
    """The tenant's backup (``file_name``, or its newest) restored into a new database; the names for the swap.

    The new database is made as the dump says the tenant's was (encoding, locale, owner, settings,
    grants), then filled in one transaction. On any failure it is dropped again; the tenant's current
    database is never touched here."""
    names = restore_names(tenant, now or datetime.now(timezone.utc))
    files = os.listdir(config.directory)
    chosen = file_name or latest(files, tenant)
    if not chosen:
        raise BackupError("no backup of tenant %s in %s (files named %s.<time>.dump)" % (tenant, config.directory, tenant))
    found = parse_name(os.path.basename(chosen))
    if found is None or found.kind != "dump" or found.database != tenant:
        raise BackupError("%s is not a backup of tenant %s (its files are %s.<time>.dump in %s)"
                          % (chosen, tenant, tenant, config.directory))
    path = os.path.join(config.directory, found.name)
    if not os.path.isfile(path):
        raise BackupError("no backup file %s" % path)
    with config.postgres() as postgres:
        statements = database_statements(postgres.schema_sql(path), tenant, names["restoring"])
        postgres.query(statements[0] + "\n", what="creating database %s" % names["restoring"])
        try:
            postgres.query("\n".join(statements[1:]) + "\n", what="giving database %s the owner and grants of %s"
                           % (names["restoring"], tenant))
            postgres.restore(path, names["restoring"])
        except BackupError:
            postgres.query("DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % names["restoring"],
                           what="dropping the half-restored database %s" % names["restoring"])
            raise
        current = postgres.exists(tenant)
    return {"tenant": tenant, "file": path, "restored": names["restoring"], "aside": names["aside"],
            "current_exists": current}


def swap(config: Config, tenant: str, restored: str, aside: str) -> dict:
    """Rename the tenant's database aside (when there is one) and the restored one into its place, in one
    transaction: both or neither."""
    with config.postgres() as postgres:
        current = postgres.exists(tenant)
        postgres.query("\n".join(swap_statements(tenant, restored, aside, current_exists=current)) + "\n",
                       what="swapping database %s in for %s" % (restored, tenant))
    return {"tenant": tenant, "aside": aside if current else "", "restored": restored}


def drop(config: Config, database: str) -> dict:
    """Drop a restore's copy that was not swapped in (only a ``<tenant>_restoring_<time>`` database)."""
    if RESTORING not in database or not DATABASE_RE.fullmatch(database):
        raise BackupError("%r is not a restore's copy (<tenant>%s<time>); nothing dropped" % (database, RESTORING))
    with config.postgres() as postgres:
        postgres.query("DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % database, what="dropping database %s" % database)
    return {"dropped": database}


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Back up every database and the globals (backup), or restore one "
                                                 "tenant (restore, swap, drop; playbooks/restore.yml runs these).")
    parser.add_argument("command", choices=("backup", "restore", "swap", "drop"))
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the backup role's configuration file")
    parser.add_argument("--tenant", default="", help="restore, swap: the tenant (its database has its name)")
    parser.add_argument("--file", default="", help="restore: the backup file (default: the tenant's newest)")
    parser.add_argument("--database", default="", help="swap, drop: the restored copy")
    parser.add_argument("--aside", default="", help="swap: the name the current database keeps")
    args = parser.parse_args(argv)
    try:
        config = Config.load(args.config)
        if args.command == "backup":
            result = run_backup(config)
            _say(json.dumps({"ok": result.ok, "files": result.sizes, "errors": result.errors}, sort_keys=True))
            return 0 if result.ok else 1
        if args.command == "restore":
            outcome = restore_into_new(config, args.tenant, args.file)
        elif args.command == "swap":
            outcome = swap(config, args.tenant, args.database, args.aside)
        else:
            outcome = drop(config, args.database)
    except BackupError as exc:
        _say(json.dumps({"ok": False, "error": str(exc)}))
        sys.stderr.write(str(exc) + "\n")
        return 1
    _say(json.dumps(dict(outcome, ok=True), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
