"""The postgres and pgbouncer roles on one lab VPS (data_vps): isolation, SCRAM, reloads, bad input.

The tests share one VPS and run in file order; each says what it changes.
"""

from __future__ import annotations

import json
import shlex

import pytest

TENANT = "h1_tenant"
TENANT_PASSWORD = "tenant-pass-1"


def _inspect(vps, name: str) -> dict:
    proc = vps.sh("docker inspect %s" % name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def _ok(proc) -> str:
    assert proc.returncode == 0, "rc=%d\n%s%s" % (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout.strip()


def test_second_run_changes_nothing(data_vps):
    run = data_vps.converge()
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(data_vps.name)["changed"] == 0, run.output[-3000:]


@pytest.mark.parametrize("name", ["rotor-postgres", "rotor-pgbouncer"])
def test_data_network_only_no_published_ports(data_vps, name):
    info = _inspect(data_vps, name)
    assert set(info["NetworkSettings"]["Networks"]) == {"data"}
    assert not info["HostConfig"]["PortBindings"]
    assert not any(info["NetworkSettings"]["Ports"].get(port) for port in info["NetworkSettings"]["Ports"] or {})
    assert info["State"]["Health"]["Status"] == "healthy"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"]
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["HostConfig"]["Memory"] > 0 and info["HostConfig"]["PidsLimit"] > 0


def test_pgbouncer_reaches_postgres_through_its_socket_read_only(data_vps):
    mounts = {m["Destination"]: m for m in _inspect(data_vps, "rotor-pgbouncer")["Mounts"]}
    socket = mounts["/var/run/postgresql"]
    assert socket["Source"] == data_vps.variables.get("postgres_run_dir", "/var/lib/rotor/postgres/run")
    assert socket["RW"] is False
    assert mounts["/etc/pgbouncer"]["RW"] is False
    # uid 70 can reach PostgreSQL's socket: the one path the tenants' database lines take by default.
    _ok(data_vps.sh("docker exec rotor-pgbouncer test -S /var/run/postgresql/.s.PGSQL.5432"))


def test_connection_budget_and_scram_settings(data_vps):
    shown = _ok(data_vps.psql("SELECT current_setting('max_connections'), current_setting('password_encryption')",
                              via="postgres"))
    budget = data_vps.variables.get("postgres_tenant_connection_budget", 100)
    reserve = data_vps.variables.get("postgres_connection_reserve", 10)
    assert shown == "%d|scram-sha-256" % (budget + reserve)
    assert _ok(data_vps.psql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'",
                             via="postgres")) == "t"


def test_scram_right_password_works_wrong_fails_through_both(data_vps):
    _ok(data_vps.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (TENANT, TENANT_PASSWORD), via="postgres"))
    _ok(data_vps.psql("CREATE DATABASE %s OWNER %s" % (TENANT, TENANT), via="postgres"))
    assert _ok(data_vps.psql("SELECT current_user", user=TENANT, password=TENANT_PASSWORD, dbname=TENANT,
                             via="postgres")) == TENANT
    wrong = data_vps.psql("SELECT 1", user=TENANT, password="wrong", dbname=TENANT, via="postgres")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr
    # What the pgbouncer_tenant module does: the verifier PostgreSQL stores goes into userlist.txt
    # (PgBouncer needs the very same salt and iterations), a database line, RELOAD.
    verifier = _ok(data_vps.psql("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'" % TENANT, via="postgres"))
    config = data_vps.variables["pgbouncer_config_dir"]
    _ok(data_vps.sh("printf '%%s\\n' %s >> %s/userlist.txt" % (shlex.quote('"%s" "%s"' % (TENANT, verifier)), config)))
    _ok(data_vps.sh("printf '%s = host=/var/run/postgresql port=5432 dbname=%s\\n' >> %s/databases.ini"
                    % (TENANT, TENANT, config)))
    _ok(data_vps.admin("RELOAD"))
    assert _ok(data_vps.psql("SELECT current_user", user=TENANT, password=TENANT_PASSWORD, dbname=TENANT)) == TENANT
    wrong = data_vps.psql("SELECT 1", user=TENANT, password="wrong", dbname=TENANT)
    # PgBouncer answers the SCRAM exchange itself, with its own message.
    assert wrong.returncode != 0 and "SASL authentication failed" in wrong.stderr, wrong.stderr
    assert TENANT_PASSWORD not in data_vps.sh("cat %s/userlist.txt" % config).stdout
    admin_line = data_vps.sh("grep '^\"pgbouncer_admin\" ' %s/userlist.txt" % config).stdout
    assert '"SCRAM-SHA-256$4096:' in admin_line and data_vps.variables["pgbouncer_admin_password"] not in admin_line


def test_pg_hba_rejects_sources_outside_the_data_network(data_vps):
    rules = _ok(data_vps.psql("SELECT type, address, auth_method FROM pg_hba_file_rules ORDER BY line_number",
                              via="postgres")).splitlines()
    assert rules == ["local||scram-sha-256", "host|10.232.2.0|scram-sha-256", "host|0.0.0.0|reject", "host|::|reject"]
    # 127.0.0.1 inside the container is no data network address: refused even with the right password.
    proc = data_vps.sh("docker exec -e PGPASSWORD=%s rotor-postgres psql -X -h 127.0.0.1 -U postgres -c 'SELECT 1'"
                       % shlex.quote(data_vps.variables["postgres_superuser_password"]))
    assert proc.returncode != 0 and "pg_hba.conf rejects connection" in proc.stderr, proc.stderr


def test_replaced_postgres_keeps_data_and_pgbouncer_setting_applied_by_reload(data_vps):
    _ok(data_vps.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')",
                      user=TENANT, password=TENANT_PASSWORD, dbname=TENANT, via="postgres"))
    pgbouncer_started = data_vps.started_at("rotor-pgbouncer")
    _ok(data_vps.sh("docker rm -f rotor-postgres"))

    run = data_vps.converge("--skip-tags", "platform", pgbouncer_settings={"server_idle_timeout": 123})
    assert run.rc == 0, run.output[-3000:]
    assert "RUNNING HANDLER [rotor.vps.pgbouncer : Reload pgbouncer]" in run.output
    assert _ok(data_vps.psql("SELECT v FROM kept", user=TENANT, password=TENANT_PASSWORD, dbname=TENANT,
                             via="postgres")) == "still here"
    assert data_vps.started_at("rotor-pgbouncer") == pgbouncer_started, "PgBouncer was restarted, not reloaded"
    config = dict(line.split("\t")[:2] for line in _ok(data_vps.admin("SHOW CONFIG")).splitlines())
    assert config["server_idle_timeout"] == "123"
    assert config["admin_users"] == "pgbouncer_admin"
    # Through PgBouncer to the new container.
    assert _ok(data_vps.psql("SELECT v FROM kept", user=TENANT, password=TENANT_PASSWORD, dbname=TENANT)) == "still here"


def test_bad_pgbouncer_setting_refused_before_going_live(data_vps):
    config = data_vps.variables["pgbouncer_config_dir"] + "/pgbouncer.ini"
    before = data_vps.sh("sha256sum %s" % config).stdout
    started = data_vps.started_at("rotor-pgbouncer")
    run = data_vps.converge("--skip-tags", "platform",
                            pgbouncer_settings={"server_idle_timeout": 123, "server_lifetime": "soon"})
    assert run.rc != 0
    assert 'invalid value "soon" for parameter server_lifetime' in run.output, run.output[-3000:]
    assert data_vps.sh("sha256sum %s" % config).stdout == before
    assert data_vps.started_at("rotor-pgbouncer") == started
    # Still serving, admin console included.
    assert _ok(data_vps.psql("SELECT 1", user=TENANT, password=TENANT_PASSWORD, dbname=TENANT)) == "1"
    assert "admin_users\tpgbouncer_admin" in _ok(data_vps.admin("SHOW CONFIG"))


def test_missing_passwords_fail_in_validate(data_vps):
    run = data_vps.converge(postgres_superuser_password="", pgbouncer_admin_password="")
    assert run.rc != 0
    assert "postgres_superuser_password: required" in run.output, run.output[-3000:]
    assert "PLAY [Docker engine]" not in run.output
    assert run.recap(data_vps.name)["changed"] == 0
    run = data_vps.converge(pgbouncer_admin_password="")
    assert run.rc != 0
    assert "pgbouncer_admin_password: required" in run.output, run.output[-3000:]
    assert "PLAY [Docker engine]" not in run.output
