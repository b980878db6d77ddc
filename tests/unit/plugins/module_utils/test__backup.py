from __future__ import annotations

import gzip
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils import _backup, _backup_plan
from ansible_collections.rotor.vps.plugins.module_utils._audit import read_textfile
from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import atomic_output
from ansible_collections.rotor.vps.plugins.module_utils._backup_plan import (
    BackupError,
    RunResult,
    backup_input_errors,
    database_statements,
    databases_to_dump,
    dump_name,
    globals_name,
    latest,
    metrics_samples,
    parse_name,
    pgpass_line,
    restore_names,
    schedule_text,
    swap_statements,
    to_prune,
)

ROLE = Path(__file__).resolve().parents[4] / "roles" / "backup"
NOW = datetime(2026, 12, 1, 18, 0, 0, tzinfo=timezone.utc)
AGE_KEY = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, 0, 0, tzinfo=timezone.utc)


def test_names_sort_as_time_and_parse_back():
    assert dump_name("acme", NOW) == "acme.20261201T180000Z.dump"
    assert globals_name(NOW) == "globals.20261201T180000Z.sql.gz"
    assert parse_name("acme.20261201T180000Z.dump") == _backup_plan.BackupFile("acme.20261201T180000Z.dump", "acme", "dump", NOW)
    # A database called globals is a dump, not the globals.
    assert parse_name("globals.20261201T180000Z.dump").kind == "dump"
    assert parse_name(globals_name(NOW)).kind == "globals"
    assert sorted([dump_name("a", at(2)), dump_name("a", at(1, 23))]) == [dump_name("a", at(1, 23)), dump_name("a", at(2))]


@pytest.mark.parametrize("name", [".acme.20261201T180000Z.dump.x1y2.partial", "acme.dump", "acme.20261201T180000Z.sql",
                                  "Acme.20261201T180000Z.dump", "acme.2026-12-01.dump", "notes.txt", ".offsite"])
def test_other_files_are_not_backups(name):
    assert parse_name(name) is None


@pytest.mark.parametrize(
    "files,retention,pruned",
    [
        # Older than 7 days goes; 7 days exactly stays.
        ([dump_name("a", at(1)), dump_name("a", at(24)), dump_name("a", at(30))], 7, [dump_name("a", at(1))]),
        # The newest of a database stays whatever its age (its backups have failed since, or it is gone).
        ([dump_name("gone", at(1)), dump_name("gone", at(2))], 7, [dump_name("gone", at(1))]),
        # The globals too, on their own; a database called globals is another series.
        ([globals_name(at(1)), globals_name(at(2)), dump_name("globals", at(1)), dump_name("globals", at(30))], 7,
         [dump_name("globals", at(1)), globals_name(at(1))]),
        # Other files are never touched.
        (["notes.txt", ".x.partial", dump_name("a", at(1)), dump_name("a", at(30))], 1, [dump_name("a", at(1))]),
        ([], 7, []),
    ],
)
def test_retention(files, retention, pruned):
    assert to_prune(files, at(31), retention) == sorted(pruned)


def test_latest_is_the_newest_dump_of_the_database():
    files = [dump_name("a", at(2)), dump_name("a", at(3)), dump_name("ab", at(4)), globals_name(at(5)), "notes"]
    assert latest(files, "a") == dump_name("a", at(3))
    assert latest(files, "b") is None


@pytest.mark.parametrize("password,line", [
    ("plain", "*:*:*:postgres:plain\n"),
    ("a:b\\c", "*:*:*:postgres:a\\:b\\\\c\n"),
    ("sp ace'\"$", "*:*:*:postgres:sp ace'\"$\n"),
])
def test_pgpass_line_escapes(password, line):
    assert pgpass_line(password) == line


def test_pgpass_line_refuses_a_line_break():
    with pytest.raises(BackupError, match="line break"):
        pgpass_line("two\nlines")


def test_databases_to_dump():
    found = ["acme", "keep_restoring_20261201t180000z", "postgres", "zeta"]
    assert databases_to_dump(found, ["postgres"]) == ["acme", "zeta"]
    with pytest.raises(BackupError, match="'Mixed Case'"):
        databases_to_dump(["Mixed Case"], [])
    assert databases_to_dump(["Mixed Case"], ["Mixed Case"]) == []


def test_metrics_after_a_success_and_a_failure():
    ok = RunResult(ok=True, started=100.0, ended=112.5, sizes={"a": 10, "b": 20}, databases={"acme": 10}, offsite=True)
    samples = metrics_samples(ok, {"rotor_backup_runs_total": 4.0, "rotor_backup_failures_total": 2.0, "other": 1.0})
    values = samples[0][1]
    assert samples[0][0] == {} and samples[1] == ({"database": "acme"}, {"rotor_backup_database_size_bytes": 10.0})
    assert values["rotor_backup_last_success_timestamp_seconds"] == values["rotor_backup_last_run_timestamp_seconds"] == 112.5
    assert values["rotor_backup_last_duration_seconds"] == 12.5 and values["rotor_backup_last_size_bytes"] == 30
    assert values["rotor_backup_runs_total"] == 5 and values["rotor_backup_failures_total"] == 2
    assert values["rotor_backup_offsite_last_success_timestamp_seconds"] == 112.5 and "other" not in values
    failed = RunResult(ok=False, started=200.0, ended=201.0, offsite=False)
    after = metrics_samples(failed, values)[0][1]
    # The last success and its size stay those of the last good run.
    assert after["rotor_backup_last_success_timestamp_seconds"] == 112.5 and after["rotor_backup_last_size_bytes"] == 30
    assert after["rotor_backup_last_run_timestamp_seconds"] == 201.0 and after["rotor_backup_failures_total"] == 3
    assert after["rotor_backup_offsite_failures_total"] == 1 and after["rotor_backup_runs_total"] == 5


def test_metrics_file_round_trip(tmp_path):
    path = str(tmp_path / "backup.prom")
    _backup.write_metrics(path, RunResult(ok=True, started=1.0, ended=2.0, sizes={"x": 5}, databases={"x": 5}))
    _backup.write_metrics(path, RunResult(ok=False, started=3.0, ended=4.0))
    values = read_textfile(path, {})
    assert values["rotor_backup_runs_total"] == 1 and values["rotor_backup_failures_total"] == 1
    assert values["rotor_backup_last_success_timestamp_seconds"] == 2.0
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_schedule_text():
    assert "rotor_backup_interval_seconds{} 21600\n" in schedule_text(21600.0)
    assert "rotor_backup_interval_seconds{}" not in schedule_text(None)


def test_restore_names_fit_postgres():
    assert restore_names("acme", NOW) == {"restoring": "acme_restoring_20261201t180000z",
                                          "aside": "acme_replaced_20261201t180000z"}
    longest = "a" * _backup_plan.RESTORE_NAME_MAX
    assert max(len(n) for n in restore_names(longest, NOW).values()) <= 63
    for bad in ("a" * (_backup_plan.RESTORE_NAME_MAX + 1), "Acme", "acme; drop", ""):
        with pytest.raises(BackupError, match="must be a tenant name"):
            restore_names(bad, NOW)


# What pg_restore --create --schema-only writes for a tenant's database (PostgreSQL 17), shortened.
SCHEMA_SQL = """\\restrict abc
SET statement_timeout = 0;
CREATE DATABASE acme WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';
ALTER DATABASE acme OWNER TO postgres;
\\connect acme
ALTER DATABASE acme SET work_mem TO '8MB';
CREATE SCHEMA api;
ALTER SCHEMA api OWNER TO postgres;
CREATE TABLE api.items (
    id integer
);
GRANT SELECT ON TABLE api.items TO acme_anon;
COMMENT ON DATABASE acme IS 'the acme tenant';
REVOKE CONNECT,TEMPORARY ON DATABASE acme FROM PUBLIC;
GRANT TEMPORARY ON DATABASE acme TO PUBLIC;
GRANT CONNECT ON DATABASE acme TO acme_authenticator;
GRANT CONNECT ON DATABASE acme_other TO acme_authenticator;
"""


def test_database_statements_for_the_new_name():
    assert database_statements(SCHEMA_SQL, "acme", "acme_restoring_x") == [
        "CREATE DATABASE acme_restoring_x WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc "
        "LOCALE = 'C.UTF-8';",
        "ALTER DATABASE acme_restoring_x OWNER TO postgres;",
        "ALTER DATABASE acme_restoring_x SET work_mem TO '8MB';",
        "COMMENT ON DATABASE acme_restoring_x IS 'the acme tenant';",
        "REVOKE CONNECT,TEMPORARY ON DATABASE acme_restoring_x FROM PUBLIC;",
        "GRANT TEMPORARY ON DATABASE acme_restoring_x TO PUBLIC;",
        "GRANT CONNECT ON DATABASE acme_restoring_x TO acme_authenticator;",
    ]


def test_database_statements_need_the_database_itself():
    with pytest.raises(BackupError, match="no CREATE DATABASE for beta"):
        database_statements(SCHEMA_SQL, "beta", "beta_restoring_x")
    with pytest.raises(BackupError, match="not a plain lower-case name"):
        database_statements(SCHEMA_SQL, "acme", 'x"; DROP')


def test_swap_is_one_transaction():
    assert swap_statements("acme", "acme_restoring_x", "acme_replaced_x", current_exists=True) == [
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname IN "
        "('acme_restoring_x', 'acme') AND pid <> pg_catalog.pg_backend_pid();",
        "BEGIN;",
        "ALTER DATABASE acme RENAME TO acme_replaced_x;",
        "ALTER DATABASE acme_restoring_x RENAME TO acme;",
        "COMMIT;",
    ]
    gone = swap_statements("acme", "acme_restoring_x", "acme_replaced_x", current_exists=False)
    assert "ALTER DATABASE acme RENAME TO acme_replaced_x;" not in gone and gone[-2:] == [
        "ALTER DATABASE acme_restoring_x RENAME TO acme;", "COMMIT;"]


def test_atomic_output_never_leaves_a_partial_file(tmp_path):
    final = tmp_path / "acme.20261201T180000Z.dump"
    with pytest.raises(BackupError):
        with atomic_output(str(final), mode=0o600, suffix=".partial") as sink:
            sink.write(b"half a dump")
            raise BackupError("pg_dump failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(str(final), mode=0o600, suffix=".partial") as sink:
        sink.write(b"PGDMP whole")
    assert final.read_bytes() == b"PGDMP whole" and oct(final.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


class FakeDocker:
    """subprocess.run for `docker exec` into PostgreSQL's container: records the commands and what went in."""

    def __init__(self, fail: str = ""):
        self.calls: list[list[str]] = []
        self.inputs: list[bytes] = []
        self.fail = fail

    def __call__(self, argv, *, input=None, stdin=None, stdout=None, stderr=None, **_kw):  # noqa: A002  # pylint: disable=redefined-builtin
        self.calls.append(argv)
        self.inputs.append(input or b"")
        tool = argv[argv.index("rotor-postgres") + 1]
        failed = self.fail and self.fail in " ".join(argv)
        if failed and stderr is not None and hasattr(stderr, "write"):
            stderr.write(b"pg_dump: error: connection failed")
        if not failed and stdout is not None and hasattr(stdout, "write"):
            stdout.write(b"PGDMP data" if tool == "pg_dump" else b"CREATE ROLE x;\n")
        out = b"acme\npostgres\n" if tool == "psql" else b""
        return subprocess.CompletedProcess(argv, 1 if failed else 0, out, b"pg_dump: error" if failed else b"")


def engine(monkeypatch, fake: FakeDocker) -> None:
    """The script's PostgreSQL client, talking to the fake."""
    def postgres(self):
        return _backup.Postgres(docker_host=self.docker_host, container=self.container, password=self.password(),
                                runner=fake)

    monkeypatch.setattr(_backup.Config, "postgres", postgres)


def config(tmp_path: Path) -> _backup.Config:
    (tmp_path / "pw").write_text("s3:cret\n")
    (tmp_path / "backups").mkdir()
    return _backup.Config(directory=str(tmp_path / "backups"), retention_days=7, docker_host="unix:///x.sock",
                          container="rotor-postgres", password_file=str(tmp_path / "pw"),
                          metrics_file=str(tmp_path / "metrics" / "backup.prom"))


def test_a_run_with_a_fake_engine(tmp_path, monkeypatch):
    fake = FakeDocker()
    engine(monkeypatch, fake)
    result = _backup.run_backup(config(tmp_path), now=NOW.timestamp, log=lambda *_: None)
    assert result.ok and sorted(os.listdir(tmp_path / "backups")) == [
        "acme.20261201T180000Z.dump", "globals.20261201T180000Z.sql.gz", "postgres.20261201T180000Z.dump"]
    assert gzip.decompress((tmp_path / "backups" / "globals.20261201T180000Z.sql.gz").read_bytes()) == b"CREATE ROLE x;\n"
    # The password went in on stdin, escaped for libpq's password file; never into an argument.
    assert fake.inputs[0] == b"*:*:*:postgres:s3\\:cret\n"
    assert not [argv for argv in fake.calls if any("s3" in a for a in argv)]
    assert fake.calls[-1][-3:-1] == ["rm", "-f"]


def test_a_failed_dump_keeps_the_others_and_counts_a_failure(tmp_path, monkeypatch):
    fake = FakeDocker(fail="-d acme")
    engine(monkeypatch, fake)
    cfg = config(tmp_path)
    (Path(cfg.directory) / "acme.20261130T000000Z.dump").write_bytes(b"PGDMP yesterday")
    result = _backup.run_backup(cfg, now=NOW.timestamp, log=lambda *_: None)
    assert not result.ok and "pg_dump of database acme failed: pg_dump: error: connection failed" in result.errors[0]
    assert sorted(os.listdir(cfg.directory)) == [
        "acme.20261130T000000Z.dump", "globals.20261201T180000Z.sql.gz", "postgres.20261201T180000Z.dump"]
    values = read_textfile(cfg.metrics_file, {})
    assert values["rotor_backup_failures_total"] == 1 and values["rotor_backup_last_success_timestamp_seconds"] == 0


def test_offsite_command_gets_the_encrypted_file(tmp_path):
    cfg = config(tmp_path)
    cfg.offsite_command, cfg.recipients_file = 'cat > /dev/null', str(tmp_path / "r.txt")
    source = Path(cfg.directory) / "acme.20261201T180000Z.dump"
    source.write_bytes(b"PGDMP")
    seen = []

    def runner(argv, *, stdin=None, **_kw):
        if argv[0] == "age":
            Path(argv[argv.index("-o") + 1]).write_bytes(b"age-encryption.org/v1 ...")
            return subprocess.CompletedProcess(argv, 0, b"", b"")
        seen.append((argv[-2:], stdin.read()))
        return subprocess.CompletedProcess(argv, 3, b"", b"remote full")

    with pytest.raises(BackupError, match="failed on acme.20261201T180000Z.dump.age with exit 3: remote full"):
        _backup.offsite_copy(cfg, str(source), runner=runner)
    spool = os.path.join(cfg.directory, ".offsite")
    assert seen == [([os.path.join(spool, "acme.20261201T180000Z.dump.age"), "acme.20261201T180000Z.dump.age"],
                     b"age-encryption.org/v1 ...")]
    assert os.listdir(spool) == [], "the encrypted copy stays behind"


# ---------------------------------------------------------------------------------------------------------------
# The role's input rules


@pytest.fixture
def settings() -> dict:
    """The role's defaults with the password set: valid as they are."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(backup_postgres_superuser_password="s3cret", backup_metrics_dir="/var/lib/rotor/metrics",
                  backup_collections_path="/usr/local/share/rotor/collections", backup_postgres_container="rotor-postgres")
    return values


def test_defaults_are_valid(settings):
    assert backup_input_errors(settings) == []


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"backup_postgres_superuser_password": ""}, "backup_postgres_superuser_password: required"),
        ({"backup_dir": "relative/dir"}, "backup_dir: 'relative/dir' must be an absolute path"),
        ({"backup_dir": "/var/backups"}, "backup_dir: '/var/backups' is shared with other files"),
        ({"backup_on_calendar": "every day; rm"}, "backup_on_calendar: 'every day; rm' must be a systemd OnCalendar"),
        ({"backup_retention_days": 0}, "backup_retention_days"),
        ({"backup_exclude_databases": ["Bad Name"]}, "backup_exclude_databases[0]: 'Bad Name' is not a database name"),
        ({"backup_offsite_command": "cp \"$1\" /mnt"}, "backup_offsite_command: the off-site copy leaves the host encrypted"),
        ({"backup_offsite_command": "a\nb", "backup_offsite_recipients": [AGE_KEY]}, "backup_offsite_command: must be one line"),
        ({"backup_offsite_recipients": ["age1short"]}, "backup_offsite_recipients[0]: 'age1short' is not an age recipient"),
        ({"backup_enabled": "yes"}, "backup_enabled: must be true or false"),
        ({"backup_docker_host": "docker.sock"}, "backup_docker_host"),
    ],
)
def test_bad_settings(settings, overrides, expected):
    errors = backup_input_errors(dict(settings, **overrides))
    assert any(expected in error for error in errors), errors


def test_good_recipients_and_switched_off(settings):
    recipients = [AGE_KEY, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk7 backup@host"]
    assert backup_input_errors(dict(settings, backup_offsite_command='cp "$1" /mnt/x/', backup_offsite_recipients=recipients)) == []
    # Switched off, nothing else is required.
    assert backup_input_errors(dict(settings, backup_enabled=False, backup_postgres_superuser_password="")) == []
