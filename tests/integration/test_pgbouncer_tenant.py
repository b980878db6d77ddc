"""pgbouncer_tenant against the real PostgreSQL and PgBouncer of the postgres and pgbouncer roles, in a lab VPS.

Logins are checked the way tenants' clients make them: psql over TCP on the data network, through
PgBouncer, with the tenant's password (never a superuser shortcut).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from batch import run_module

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
CONFIG = "/etc/rotor/pgbouncer/databases.ini"
USERLIST = "/etc/rotor/pgbouncer/userlist.txt"
BACKUPS = "/etc/rotor/pgbouncer/backup"
# Budget for tests: generous enough for 20 concurrent tenants, small enough to exceed on purpose.
MAX_CONNECTIONS = 150


class Tenants:
    """Runs the module on the VPS (ad hoc, JSON output) and reads both files and PgBouncer's view."""

    def __init__(self, vps, tmp: Path):
        self.vps = vps
        self.tmp = tmp
        self.base = {
            "admin_password": vps.variables["pgbouncer_admin_password"],
            "login_unix_socket": vps.variables["postgres_run_dir"],
            "login_password": vps.variables["postgres_superuser_password"],
            "max_connections": MAX_CONNECTIONS,
        }

    def run(self, *, check: bool = False, diff: bool = False, postgres: bool = True, **args) -> dict:
        """One module run, ad hoc."""
        return self.run_many([args], check=check, diff=diff, postgres=postgres)[0]

    def run_many(self, runs: list[dict], *, check: bool = False, diff: bool = False, postgres: bool = True) -> list[dict]:
        """The module once per entry of ``runs``, all at the same time (one ansible-playbook, one fork each).

        Each run is its own inventory host that is the same VPS, so the runs really overlap on it.
        """
        params = []
        for args in runs:
            merged = dict(self.base, **args)
            if not postgres:
                merged.pop("login_unix_socket")
                merged.pop("login_password")
            params.append(merged)
        return run_module(self.vps, "rotor.vps.pgbouncer_tenant", params, self.tmp, check=check, diff=diff)

    def files(self) -> str:
        """Both files, byte for byte (as hex, so that a changed line ending shows)."""
        out = self.vps.sh("od -An -c %s; echo ---; od -An -c %s" % (CONFIG, USERLIST))
        assert out.returncode == 0, out.stderr
        return out.stdout

    def text(self, path: str) -> str:
        return self.vps.sh("cat %s" % path).stdout

    def live(self) -> dict[str, dict[str, str]]:
        """SHOW DATABASES on the admin console, name -> row (values as text)."""
        script = (
            "import json, os, psycopg\n"
            "conn = psycopg.connect(host=%r, port=6432, user=%r, dbname='pgbouncer', autocommit=True,\n"
            "                       password=os.environ['PGPASSWORD'])\n"
            "cur = conn.execute('SHOW DATABASES')\n"
            "names = [column.name for column in cur.description]\n"
            "print(json.dumps({row[0]: {k: '' if v is None else str(v) for k, v in zip(names, row)}\n"
            "                  for row in cur.fetchall()}))\n"
        ) % (self.vps.variables["pgbouncer_run_dir"], self.vps.variables["pgbouncer_admin_user"])
        out = self.vps.sh("PGPASSWORD=%s python3 -c %s" % (shlex.quote(self.base["admin_password"]),
                                                           shlex.quote(script)))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def create_role(self, name: str, password: str) -> None:
        """The tenant's role and database, as community.postgresql would make them."""
        for sql in ("CREATE ROLE %s LOGIN PASSWORD '%s'" % (name, password),
                    "CREATE DATABASE %s OWNER %s" % (name, name)):
            out = self.vps.psql(sql, via="postgres")
            assert out.returncode == 0, out.stderr

    def having(self, **tenants: dict) -> None:
        """Each tenant (name -> module options, password included) served as given, whatever earlier tests left.

        A test that needs a tenant says so with this, so that it passes on its own (``pytest -k``) as well as
        after the tests before it; when they left the tenant as wanted, it costs one module run that changes
        nothing.
        """
        names = ", ".join("'%s'" % name for name in tenants)
        roles = self.vps.psql("SELECT rolname FROM pg_roles WHERE rolname IN (%s)" % names, via="postgres")
        assert roles.returncode == 0, roles.stderr
        for name in set(tenants) - set(roles.stdout.split()):
            self.create_role(name, tenants[name]["password"])
        results = self.run_many([dict(options, name=name) for name, options in tenants.items()])
        assert all(not result.get("failed") for result in results), [result.get("msg") for result in results]

    def login(self, name: str, password: str) -> subprocess.CompletedProcess:
        return self.vps.psql("SELECT current_user || '@' || current_database()", user=name, password=password,
                             dbname=name, via="pgbouncer")


@pytest.fixture(scope="module")
def tenants(data_vps, tmp_path_factory) -> Tenants:
    return Tenants(data_vps, tmp_path_factory.mktemp("tenants"))


def test_four_steps_login_and_idempotency(tenants):
    tenants.create_role("acme", "created-by-sql")
    before = tenants.files()

    check = tenants.run(check=True, diff=True, name="acme", password="acme-secret-1", pool_size=4, reserve_pool=1,
                        pool_mode="transaction")
    assert check["changed"] is True, check
    assert any(action.startswith("add database acme") for action in check["actions"])
    assert "set the password of PostgreSQL role acme to the same verifier" in check["actions"]
    assert tenants.files() == before, "check mode changed a file"
    assert "acme" not in tenants.live()

    applied = tenants.run(diff=True, name="acme", password="acme-secret-1", pool_size=4, reserve_pool=1,
                          pool_mode="transaction")
    assert applied["changed"] is True and applied["verified"] is True and applied["role_password_set"] is True
    assert applied["tenant"]["entry"] == ("acme = host=/var/run/postgresql port=5432 dbname=acme pool_size=4 "
                                          "reserve_pool=1 pool_mode=transaction")
    assert applied["budget"]["max_connections"] == MAX_CONNECTIONS
    # The password never shows: not in the result, not in the diff, not in the file.
    assert "acme-secret-1" not in applied["_raw"] + check["_raw"]
    assert "acme-secret-1" not in tenants.text(USERLIST)
    assert re.search(r'^"acme" "SCRAM-SHA-256\$4096:[^"]+"$', tenants.text(USERLIST), re.M)
    stored = tenants.vps.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'acme'", via="postgres").stdout.strip()
    assert '"acme" "%s"' % stored in tenants.text(USERLIST), "the userlist verifier is not PostgreSQL's"

    login = tenants.login("acme", "acme-secret-1")
    assert login.returncode == 0 and login.stdout.strip() == "acme@acme", login.stderr
    wrong = tenants.login("acme", "not-the-password")
    assert wrong.returncode != 0 and "authentication failed" in wrong.stderr
    old = tenants.login("acme", "created-by-sql")
    assert old.returncode != 0, "the password set by SQL before still works"

    files = tenants.files()
    again = tenants.run(name="acme", password="acme-secret-1", pool_size=4, reserve_pool=1, pool_mode="transaction")
    assert again["changed"] is False and again["actions"] == [], again
    assert tenants.files() == files, "an unchanged password got a new salt"
    check_again = tenants.run(check=True, name="acme", password="acme-secret-1", pool_size=4, reserve_pool=1,
                              pool_mode="transaction")
    assert check_again["changed"] is False


ACME = {"password": "acme-secret-1", "pool_size": 4, "reserve_pool": 1, "pool_mode": "transaction"}
BETA = {"password": "beta-secret"}


def test_pool_size_change_is_live(tenants):
    tenants.having(acme=ACME)
    result = tenants.run(name="acme", password="acme-secret-1", pool_size=6, reserve_pool=2, pool_mode="transaction")
    assert result["changed"] is True and result["verified"] is True
    assert result["actions"][0].startswith("update database acme")
    row = tenants.live()["acme"]
    assert (row["pool_size"], row["reserve_pool_size"], row["pool_mode"]) == ("6", "2", "transaction")
    backups = tenants.vps.sh("stat -c '%%a %%n' %s/databases.ini.*" % BACKUPS).stdout.split("\n")[:-1]
    assert backups and all(line.startswith("600 ") for line in backups), backups
    assert tenants.vps.sh("stat -c %%a %s %s" % (CONFIG, USERLIST)).stdout.split() == ["640", "640"]


def test_known_password_is_reused_not_resalted(tenants):
    """A role whose password PostgreSQL already holds: its stored verifier goes to the userlist as is."""
    tenants.create_role("beta", "beta-secret")
    stored = tenants.vps.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'beta'", via="postgres").stdout.strip()
    result = tenants.run(name="beta", password="beta-secret")
    assert result["changed"] is True and result["role_password_set"] is False
    assert '"beta" "%s"' % stored in tenants.text(USERLIST)
    assert tenants.login("beta", "beta-secret").returncode == 0


def test_bad_input_changes_nothing(tenants):
    before = tenants.files()
    live = tenants.live()
    cases = [
        ({"name": 'ac"me'}, "must start with a lowercase letter"),
        ({"name": "ac me"}, "must start with a lowercase letter"),
        ({"name": "acme\nevil = host=x"}, "must start with a lowercase letter"),
        ({"name": "ac;me"}, "must start with a lowercase letter"),
        ({"name": "ac=me"}, "must start with a lowercase letter"),
        ({"name": "Acme"}, "must start with a lowercase letter"),
        ({"name": "a" * 64}, "is longer than 63 characters"),
        ({"name": "pgbouncer"}, "'pgbouncer' is reserved"),
        ({"name": "gamma", "pool_size": MAX_CONNECTIONS}, "connection budget exceeded"),
    ]

    results = tenants.run_many([dict({"password": "gamma-secret"}, **case[0]) for case in cases])
    for result, case in zip(results, cases):
        message = case[1]
        assert result.get("failed") is True, result
        assert message in result["msg"] and "nothing was changed" in result["msg"], result["msg"]
        assert "gamma-secret" not in result["_raw"]
    assert tenants.files() == before
    assert tenants.live() == live


def test_corrupt_config_is_refused_and_left_as_is(tenants):
    original = tenants.text(CONFIG)
    corrupt = original + "this line is not ini\n"
    tenants.vps.sh("cp -p %s /root/databases.ini.good && echo 'this line is not ini' >> %s" % (CONFIG, CONFIG))
    assert tenants.text(CONFIG) == corrupt
    broken = tenants.files()
    try:
        result = tenants.run(name="delta", password="delta-secret")
        assert result.get("failed") is True
        assert "line" in result["msg"] and "neither 'key = value'" in result["msg"], result["msg"]
        assert tenants.files() == broken, "the module touched a corrupt file"
    finally:
        tenants.vps.sh("cp -p /root/databases.ini.good %s" % CONFIG)
    assert tenants.text(CONFIG) == original


def test_rejected_config_is_rolled_back_and_others_keep_serving(tenants):
    tenants.having(acme=dict(ACME, pool_size=6, reserve_pool=2), beta=BETA)
    before = tenants.files()
    result = tenants.run(name="acme", password="acme-secret-1", pool_size=6, reserve_pool=2, pool_mode="transaction",
                         options={"frobnicate": "1"})
    assert result.get("failed") is True and result["restored"] is True and result["step"] == "reload", result
    assert "unrecognized connection parameter: frobnicate" in result["msg"], result["msg"]
    assert "previous files were restored" in result["msg"]
    assert tenants.files() == before
    assert tenants.live()["acme"]["pool_size"] == "6"
    assert tenants.login("acme", "acme-secret-1").returncode == 0
    assert tenants.login("beta", "beta-secret").returncode == 0
    new = tenants.run(name="epsilon", password="epsilon-secret", options={"frobnicate": "1"})
    assert new.get("failed") is True and "epsilon" not in tenants.live()
    assert tenants.files() == before


def test_twenty_concurrent_runs_lose_nothing(tenants):
    tenants.having(acme=ACME, beta=BETA)
    names = ["con%02d" % number for number in range(20)]
    results = tenants.run_many([{"name": name, "password": name + "-pw", "pool_size": 2} for name in names],
                               postgres=False)
    assert all(result.get("changed") is True for result in results), [r.get("msg") for r in results]
    waited = [result["lock_waited"] for result in results if result["lock_waited"] > 0]
    assert len(waited) >= 2, "the runs did not overlap: %s" % [result["lock_waited"] for result in results]
    config, userlist = tenants.text(CONFIG), tenants.text(USERLIST)
    entries = re.findall(r"^(\w+) = ", config, re.M)
    users = re.findall(r'^"(\w+)" ', userlist, re.M)
    assert sorted(set(entries)) == sorted(entries) and sorted(set(users)) == sorted(users), "duplicates"
    assert set(names) <= set(entries) and set(names) <= set(users)
    assert {"acme", "beta"} <= set(entries)
    assert set(names) <= set(tenants.live())
    # The files are still what PgBouncer and the module read: one more run parses them and changes nothing.
    assert tenants.run(name="con00", password="con00-pw", pool_size=2, postgres=False)["changed"] is False


def test_absent_removes_both_entries(tenants):
    tenants.having(acme=ACME, beta=BETA)
    result = tenants.run(name="beta", state="absent")
    assert result["changed"] is True and result["verified"] is True
    assert "beta" not in tenants.live()
    assert not re.search(r"^beta = ", tenants.text(CONFIG), re.M)
    assert '"beta"' not in tenants.text(USERLIST)
    assert tenants.login("beta", "beta-secret").returncode != 0
    # Its data stays in PostgreSQL.
    assert tenants.vps.psql("SELECT 1 FROM pg_database WHERE datname = 'beta'", via="postgres").stdout.strip() == "1"
    assert tenants.run(name="beta", state="absent")["changed"] is False
    assert tenants.login("acme", "acme-secret-1").returncode == 0


def test_pgbench_through_reloads_has_no_failed_transactions(tenants, tmp_path):
    """50 tenant changes, each reloading PgBouncer, while pgbench runs TPC-B-like through it."""
    vps = tenants.vps
    tenants.create_role("bench", "bench-secret")
    assert tenants.run(name="bench", password="bench-secret", pool_size=3, pool_mode="transaction")["changed"]
    init = vps.sh("docker exec -e PGPASSWORD=bench-secret rotor-postgres pgbench -i -q -s 1 -h rotor-postgres "
                  "-U bench bench 2>&1")
    assert init.returncode == 0, init.stdout
    # 25 changes of bench's own pool (the one pgbench uses) and 25 adds and removes of another tenant.
    changes = []
    for number in range(25):
        changes.append({"name": "bench", "password": "bench-secret", "pool_size": 4 + number % 2,
                        "pool_mode": "transaction"})
        changes.append({"name": "churn", "password": "churn-secret", "state": "absent" if number % 2 else "present"})
    playbook = tmp_path / "changes.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "50 tenant changes", "hosts": "vps", "gather_facts": False,
        "tasks": [{"name": "Change a tenant", "rotor.vps.pgbouncer_tenant": dict(
            {key: "{{ item.%s | default(omit) }}" % key for key in ("name", "password", "pool_size", "pool_mode",
                                                                    "state")},
            admin_password=tenants.base["admin_password"], max_connections=MAX_CONNECTIONS),
            "loop": changes, "register": "changed_tenants", "no_log": True}],
    }]))
    # pgbench runs back to back in bounded 5 s rounds (at most 60) until the changes are done, so every
    # change happens under load and every round ends with its own summary.
    rounds = subprocess.Popen(
        ["docker", "exec", vps.name, "docker", "exec", "-e", "PGPASSWORD=bench-secret", "rotor-postgres", "sh", "-c",
         "rm -f /tmp/pgbench.stop; for round in $(seq 60); do [ -e /tmp/pgbench.stop ] && break; "
         "pgbench -h rotor-pgbouncer -p 6432 -U bench -c 4 -j 2 -T 5 bench 2>&1; echo \"round-rc=$?\"; done"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_PIPELINING="1", ANSIBLE_NOCOLOR="1")
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(vps.inventory), str(playbook)], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=600, check=False)
        time.sleep(2)
    finally:
        vps.sh("docker exec rotor-postgres touch /tmp/pgbench.stop")
        out = rounds.communicate(timeout=60)[0]
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.count("changed: [%s]" % vps.name) == 50, proc.stdout[-3000:]
    # The last change (number 24) adds churn.
    assert vps.sh("grep -c '^churn = ' %s" % CONFIG).stdout.strip() == "1"
    codes = re.findall(r"round-rc=(\d+)", out)
    processed = [int(n) for n in re.findall(r"number of transactions actually processed: (\d+)", out)]
    failed = [int(n) for n in re.findall(r"number of failed transactions: (\d+)", out)]
    print("pgbench through 50 reloads: %d rounds, %d transactions, %d failed" % (len(codes), sum(processed), sum(failed)))
    assert len(codes) >= 2 and set(codes) == {"0"}, out[-3000:]
    assert len(processed) == len(codes) and all(count > 0 for count in processed), out[-3000:]
    assert sum(failed) == 0 and "aborted" not in out, out[-3000:]
