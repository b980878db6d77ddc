"""PostgreSQL and PgBouncer on a converged VPS (rotor.vps.postgres, rotor.vps.pgbouncer), read from the VPS.

Expected values come from the role defaults and the lab inventory molecule applied.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
PGBOUNCER_DIR = "/etc/rotor/pgbouncer"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.fixture(scope="module")
def settings() -> dict:
    merged = {}
    for role in ("postgres", "pgbouncer"):
        merged.update(_load(ROOT / "roles" / role / "defaults" / "main.yml"))
    merged.update(_load(ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"))
    return merged


@pytest.mark.parametrize("key", ["postgres_container_name", "pgbouncer_container_name"])
def test_running_healthy_on_data_only(host, settings, key):
    info = json.loads(host.check_output("docker inspect %s" % settings[key]))[0]
    assert info["State"]["Running"] is True
    assert info["State"]["Health"]["Status"] == "healthy"
    assert set(info["NetworkSettings"]["Networks"]) == {"data"}
    assert not info["HostConfig"]["PortBindings"]
    assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"]


def test_file_modes(host, settings):
    data = host.file(settings["postgres_data_dir"])
    assert data.uid == 999 and data.mode == 0o700
    config = host.file(PGBOUNCER_DIR)
    assert config.user == "root" and config.gid == 70 and config.mode == 0o750
    for name in ("pgbouncer.ini", "databases.ini", "userlist.txt"):
        f = host.file("%s/%s" % (PGBOUNCER_DIR, name))
        assert f.user == "root" and f.gid == 70 and f.mode == 0o640, name
    assert host.file(PGBOUNCER_DIR + "/pgbouncer.ini").content_string.rstrip().endswith(
        "%include /etc/pgbouncer/databases.ini")
    userlist = host.file(PGBOUNCER_DIR + "/userlist.txt").content_string
    assert '"%s" "SCRAM-SHA-256$' % settings["pgbouncer_admin_user"] in userlist
    assert settings["pgbouncer_admin_password"] not in userlist
    run = host.file(settings["pgbouncer_run_dir"])
    assert run.uid == 70 and run.mode == 0o750


def test_admin_console_answers_root_on_the_host(host, settings):
    script = (
        "import psycopg; c = psycopg.connect(host=%r, port=%d, user=%r, dbname='pgbouncer', autocommit=True); "
        "print(dict((r[0], r[1]) for r in c.execute('SHOW CONFIG').fetchall())['pool_mode'])"
        % (settings["pgbouncer_run_dir"], settings["pgbouncer_port"], settings["pgbouncer_admin_user"]))
    out = host.check_output("PGPASSWORD=%s python3 -c \"%s\"" % (settings["pgbouncer_admin_password"], script))
    assert out.strip() == "transaction"
