"""The backup role and playbooks/restore.yml on the whole platform (data_vps): real PostgreSQL, PgBouncer,
systemd and age.

The module continues on the stack test_observability.py converged (full_stack(): every role, the backups
with an off-site copy to a local directory, encrypted to an SSH key of this machine), or converges it the
same way when it runs alone. The tenant's database gets rows and the timer's service runs once. Then: the
files, their modes and the metrics; the off-site copies decrypt to the same bytes; the tenant's database
dropped and restored gives the same rows; a restore over the live database, with a client loop through
PgBouncer during it, loses no query and keeps the replaced database aside; bad input changes nothing.
A second converge of the role changing nothing is checked by test_credentials.py (the backup and postgres
roles again after the secrets changed) and by molecule's idempotence step.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from batch import run_cases
from test_observability import OFFSITE_DIR, OFFSITE_KEY, full_stack

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "backup.yml"
RESTORE = ROOT / "playbooks" / "restore.yml"
# After test_observability.py, on the stack it converged; test_credentials.py continues on it after this one.
RUN_LAST_IN_TIER = 2
CONTINUES_ON = "full_stack"
BACKUP_DIR = "/var/backups/rotor"
METRICS = "/var/lib/rotor/metrics/backup.prom"
SCHEDULE = "/var/lib/rotor/metrics/backup_schedule.prom"
CLIENTS = "/root/backup_clients.py"
ROWS_SQL = "SELECT id, name FROM api.items ORDER BY id"
# Rows in the tenant's API schema, which its authenticator reads (test_credentials.py adds to the same table).
ROWS = ["CREATE TABLE IF NOT EXISTS api.items (id serial PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO api.items (name) SELECT 'row ' || n FROM generate_series(1, 500) AS n",
        "GRANT USAGE ON SCHEMA api TO {tenant}_authenticator", "GRANT SELECT ON api.items TO {tenant}_authenticator"]
# A client of the tenant on the VPS host, through PgBouncer's socket: one query every 20 ms on a kept
# connection, a new connection every tenth query, until a stop file appears (at most 120 s).
CLIENT_LOOP = r'''
import json, os, sys, time
import psycopg
socket_dir, tenant, password, stop, out = sys.argv[1:6]
deadline, ok, failed, errors, slowest, count, conn = time.monotonic() + 120, 0, 0, [], 0.0, 0, None
while time.monotonic() < deadline and not os.path.exists(stop):
    started = time.monotonic()
    try:
        if conn is None or count % 10 == 0:
            if conn is not None:
                conn.close()
            conn = psycopg.connect(host=socket_dir, port=6432, user=tenant + "_authenticator", password=password,
                                   dbname=tenant, connect_timeout=60, autocommit=True, prepare_threshold=None)
        conn.execute("SELECT count(*) FROM api.items").fetchone()
        ok += 1
    except psycopg.Error as exc:
        failed, conn = failed + 1, None
        errors.append(str(exc).strip()[:200])
    slowest, count = max(slowest, time.monotonic() - started), count + 1
    time.sleep(0.02)
with open(out, "w") as handle:
    json.dump({"ok": ok, "failed": failed, "errors": errors[:5], "slowest": slowest}, handle)
'''


class Backups:
    def __init__(self, vps, tmp: Path, settings_file: Path):
        self.vps = vps
        self.tmp = tmp
        self.settings_file = settings_file
        tenant = yaml.safe_load(settings_file.read_text())["rotor_tenants"][0]
        self.tenant, self.password = tenant["name"], tenant["authenticator_password"]
        self.authenticator = self.tenant + "_authenticator"

    def sh(self, command: str) -> str:
        proc = self.vps.sh(command)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        return proc.stdout

    def sql(self, sql: str, dbname: str = "postgres") -> str:
        proc = self.vps.psql(sql, dbname=dbname, via="postgres")
        assert proc.returncode == 0, (sql, proc.stderr)
        return proc.stdout

    def rows(self) -> str:
        """The tenant's rows as its own client reads them: through PgBouncer, as its authenticator."""
        proc = self.vps.psql(ROWS_SQL, user=self.authenticator, password=self.password, dbname=self.tenant)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def databases(self) -> list[str]:
        return self.sql("SELECT datname FROM pg_database ORDER BY 1").split()

    def converge(self, **overrides):
        path = self.tmp / ("backup-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump(overrides))
        return self.vps.playbook(str(PLAYBOOK), "-e", "@%s" % self.vps.vars_file, "-e", "@%s" % self.settings_file,
                                 "-e", "@%s" % path)

    def restore(self, *args: str):
        return self.vps.playbook(str(RESTORE), "-e", "@%s" % self.vps.vars_file, "-e", "@%s" % self.settings_file,
                                 "-e", "restore_tenant=%s" % self.tenant, *args)

    def run_service(self) -> None:
        """The timer's service, once, to its end (a oneshot: systemctl start waits for it)."""
        proc = self.vps.sh("systemctl start rotor-backup.service")
        assert proc.returncode == 0, self.sh("journalctl -u rotor-backup.service --no-pager | tail -20")

    def files(self) -> list[str]:
        return sorted(self.sh("ls -A %s" % BACKUP_DIR).split())

    def metrics(self, path: str = METRICS) -> dict:
        values = {}
        for line in self.sh("cat %s" % path).splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values


@pytest.fixture(scope="module")
def backups(data_vps, collection_snapshot, tmp_path_factory):
    started = time.monotonic()
    b = Backups(data_vps, tmp_path_factory.mktemp("backup"), full_stack(data_vps))
    print("the full stack (converged here unless test_observability.py did): %.1f s" % (time.monotonic() - started))
    for sql in ROWS:
        b.sql(sql.format(tenant=b.tenant), b.tenant)
    (b.tmp / "clients.py").write_text(CLIENT_LOOP)
    subprocess.run(["docker", "cp", str(b.tmp / "clients.py"), "%s:%s" % (data_vps.name, CLIENTS)], check=True)
    b.before = b.rows()
    # The role started a first backup when it installed the timer (it ends with its metrics); its files go,
    # so that the service's run below is the only one the tests look at.
    deadline = time.monotonic() + 120
    while data_vps.sh("systemctl is-active rotor-backup.service").stdout.strip() == "activating":
        assert time.monotonic() < deadline, "the first backup did not end"
        time.sleep(0.5)
    first = b.metrics()
    assert first["rotor_backup_runs_total{}"] == 1 and first["rotor_backup_failures_total{}"] == 0, first
    b.sh("rm -rf %s/* %s/* %s" % (BACKUP_DIR, OFFSITE_DIR, METRICS))
    started = time.monotonic()
    b.run_service()
    print("one backup run (the service): %.1f s" % (time.monotonic() - started))
    yield b
    # The stack as the tenants role left it for the next module: no database kept aside by a restore.
    for name in b.databases():
        if name.startswith(b.tenant + "_re"):
            b.sql("DROP DATABASE %s WITH (FORCE)" % name)
    b.sh("rm -f %s /root/backup-clients.*" % CLIENTS)


def test_files_modes_and_metrics(backups):
    files = backups.files()
    names = [f for f in files if not f.startswith(".")]
    assert len(names) == 3 and not [f for f in files if f.endswith(".partial")], files
    stamp = names[0].split(".")[1]
    assert names == sorted(["globals.%s.sql.gz" % stamp, "%s.%s.dump" % (backups.tenant, stamp), "postgres.%s.dump" % stamp])
    modes = backups.sh("stat -c '%%n %%a %%U' %s %s/* /etc/rotor/backup /etc/rotor/backup/*"
                       % (BACKUP_DIR, BACKUP_DIR)).splitlines()
    assert modes[0] == "%s 700 root" % BACKUP_DIR, modes
    assert all(line.endswith(" 600 root") or line.endswith(" 700 root") for line in modes), modes
    # Compressed custom format that pg_restore reads; the globals hold the roles with their verifiers.
    assert backups.sh("head -c 5 %s/%s.%s.dump" % (BACKUP_DIR, backups.tenant, stamp)) == "PGDMP"
    globals_sql = backups.sh("zcat %s/globals.%s.sql.gz" % (BACKUP_DIR, stamp))
    assert "CREATE ROLE %s;" % backups.authenticator in globals_sql and "SCRAM-SHA-256$" in globals_sql
    metrics = backups.metrics()
    assert metrics["rotor_backup_last_success_timestamp_seconds{}"] == metrics["rotor_backup_last_run_timestamp_seconds{}"]
    assert metrics["rotor_backup_last_success_timestamp_seconds{}"] > time.time() - 600
    assert metrics["rotor_backup_last_size_bytes{}"] == sum(
        int(s) for s in backups.sh("stat -c %%s %s/*.%s.*" % (BACKUP_DIR, stamp)).split())
    assert metrics["rotor_backup_databases{}"] == 2 and metrics["rotor_backup_failures_total{}"] == 0
    assert metrics["rotor_backup_offsite_failures_total{}"] == 0
    assert metrics['rotor_backup_database_size_bytes{database="%s"}' % backups.tenant] > 0
    assert backups.metrics(SCHEDULE) == {"rotor_backup_interval_seconds{}": 21600.0}
    assert backups.sh("systemctl is-active rotor-backup.timer").strip() == "active"
    # The password file libpq read in PostgreSQL's container lived for the run only.
    assert "rotor-backup" not in backups.sh("docker exec rotor-postgres ls -A /tmp")


def test_offsite_copies_decrypt_to_the_backups(backups):
    names = [f for f in backups.files() if not f.startswith(".")]
    copies = sorted(backups.sh("ls -A %s" % OFFSITE_DIR).split())
    assert copies == sorted(name + ".age" for name in names)
    for name in names:
        plain = backups.sh("sha256sum < %s/%s" % (BACKUP_DIR, name))
        assert backups.sh("age --decrypt -i %s %s/%s.age | sha256sum" % (OFFSITE_KEY, OFFSITE_DIR, name)) == plain, name
        assert backups.sh("head -c 21 %s/%s.age" % (OFFSITE_DIR, name)) == "age-encryption.org/v1"
    assert backups.sh("ls -A %s/.offsite" % BACKUP_DIR).split() == [], "encrypted copies left in the spool"


def test_dropped_database_restored_with_identical_rows(backups):
    tenant = backups.tenant
    backups.sql("DROP DATABASE %s WITH (FORCE)" % tenant)
    assert tenant not in backups.databases()
    started = time.monotonic()
    run = backups.restore()
    assert run.rc == 0, run.output[-4000:]
    print("restore of a dropped database: %.1f s" % (time.monotonic() - started))
    # The tenant's PostgREST kept trying meanwhile: PgBouncer may answer with the server's cached error ("database
    # does not exist") until its next login to the server, server_login_retry (15 s) after the last failed one.
    started, deadline = time.monotonic(), time.monotonic() + 30
    while backups.vps.psql("SELECT 1", user=backups.authenticator, password=backups.password,
                           dbname=tenant).returncode != 0:
        assert time.monotonic() < deadline, "the tenant's login through PgBouncer did not come back within 30 s"
        time.sleep(1)
    print("the tenant's first login through PgBouncer after it: %.1f s" % (time.monotonic() - started))
    assert backups.rows() == backups.before
    # The database as the tenant's roles expect it: only its authenticator connects.
    assert backups.sql("SELECT has_database_privilege('public', '%s', 'CONNECT'), has_database_privilege('%s', '%s', "
                       "'CONNECT')" % (tenant, backups.authenticator, tenant)).strip() == "f|t"
    assert [d for d in backups.databases() if d.startswith(tenant)] == [tenant]


def test_restore_over_the_live_database_loses_no_query(backups):
    backups.sql("INSERT INTO api.items (name) VALUES ('after the backup')", backups.tenant)
    changed = backups.rows()
    assert changed != backups.before
    out, stop = "/root/backup-clients.json", "/root/backup-clients.stop"
    subprocess.Popen(["docker", "exec", backups.vps.name, "sh", "-c", "rm -f %s %s; python3 %s %s %s %s %s %s" % (
        out, stop, CLIENTS, backups.vps.variables["pgbouncer_run_dir"], backups.tenant, shlex.quote(backups.password),
        stop, out)])
    time.sleep(1)
    started = time.monotonic()
    run = backups.restore()
    took = time.monotonic() - started
    time.sleep(1)
    backups.sh("touch %s" % stop)
    deadline = time.monotonic() + 30
    while backups.vps.sh("test -s %s" % out).returncode != 0:
        assert time.monotonic() < deadline, "the client loop did not end"
        time.sleep(0.2)
    clients = json.loads(backups.sh("cat %s" % out))
    assert run.rc == 0, run.output[-4000:]
    print("restore over the live database: %.1f s; clients: %s" % (took, clients))
    assert clients["failed"] == 0, clients
    assert clients["ok"] > 50, clients
    assert backups.rows() == backups.before
    aside = [d for d in backups.databases() if d.startswith(backups.tenant + "_replaced_")]
    assert len(aside) == 1, backups.databases()
    assert backups.sql(ROWS_SQL, aside[0]) == changed, "the replaced database was not kept as it was"
    assert "the database it replaced is kept as %s" % aside[0] in " ".join(run.output.split()), run.output[-3000:]


def test_bad_input_changes_nothing(backups):
    tenant = backups.tenant
    before = (backups.databases(), backups.files(), backups.rows())
    stamp = [f for f in backups.files() if f.startswith("postgres.")][0]
    results = run_cases(backups.vps, RESTORE, {
        "no_tenant": {},
        "unknown_tenant": {"restore_tenant": "nobody"},
        "bad_name": {"restore_tenant": "%s; DROP DATABASE %s" % (tenant, tenant)},
        "other_tenants_file": {"restore_tenant": tenant, "restore_file": stamp},
        "missing_file": {"restore_tenant": tenant, "restore_file": "%s.20200101T000000Z.dump" % tenant},
    }, backups.tmp, "-e", "@%s" % backups.vps.vars_file, "-e", "@%s" % backups.settings_file)
    expected = {
        "no_tenant": "restore_tenant is required",
        "unknown_tenant": "Could not restore tenant nobody: no backup of tenant nobody in /var/backups/rotor",
        "bad_name": "must be a tenant name (lower-case letters, digits and _, a letter first)",
        "other_tenants_file": "%s is not a backup of tenant %s" % (stamp, tenant),
        "missing_file": "no backup file /var/backups/rotor/%s.20200101T000000Z.dump" % tenant,
    }
    for case, message in expected.items():
        assert results[case].failed and message in results[case].message, (case, results[case].message)
        assert results[case].changed == 0, case
    assert (backups.databases(), backups.files(), backups.rows()) == before
    # The role refuses an off-site command without encryption, before anything changes.
    config = backups.sh("sha256sum /etc/rotor/backup/*")
    run = backups.converge(backup_offsite_recipients=[])
    assert run.rc != 0 and "backup_offsite_command: the off-site copy leaves the host encrypted only" in run.output
    assert backups.sh("sha256sum /etc/rotor/backup/*") == config
