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
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Callable, Optional

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import atomic_output
from ansible_collections.rotor.vps.plugins.module_utils._audit import read_textfile, write_textfile_samples
from ansible_collections.rotor.vps.plugins.module_utils._backup_plan import (
    BACKUP_METRICS,
    DATABASE_METRICS,
    DATABASE_RE,
    RESTORING,
    BackupError,
    RunResult,
    database_statements,
    databases_to_dump,
    dump_name,
    globals_name,
    latest,
    metrics_samples,
    parse_name,
    pgpass_line,
    restore_names,
    swap_statements,
    to_prune,
)

DEFAULT_CONFIG = "/etc/rotor/backup/backup.json"
# How much of a failed tool's stderr an error quotes.
STDERR_TAIL = 2000
# A backup file while it is written: renamed to its final name once whole (remove_partials clears a killed run's).
PARTIAL = ".partial"

# ---------------------------------------------------------------------------------------------------------------
# Files


def remove_partials(directory: str) -> list[str]:
    """Temporary files a killed run left behind (never a final name)."""
    removed = []
    for name in os.listdir(directory):
        if name.startswith(".") and name.endswith(PARTIAL):
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
                    with atomic_output(path, mode=0o600, suffix=PARTIAL) as sink:
                        postgres.dump(database, sink)
                except BackupError as exc:
                    result.errors.append(str(exc))
                    continue
                result.sizes[os.path.basename(path)] = result.databases[database] = os.path.getsize(path)
            path = os.path.join(config.directory, globals_name(when))
            try:
                with atomic_output(path, mode=0o600, suffix=PARTIAL) as sink:
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
