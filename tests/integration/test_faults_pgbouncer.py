"""Faults injected into PgBouncer's files and process, on the shared data VPS.

- pgbouncer.ini corrupted on disk (garbage, truncated): a tenant change meanwhile fails with a clear
  error or goes through, no tenant is lost, and the next converge of the pgbouncer role repairs it;
- the file system holding PgBouncer's files full (a small tmpfs mounted over the directory, PgBouncer
  restarted on it): a tenant change fails with a clear error and leaves every file as it was, the
  tenants keep working through PgBouncer, and once space is freed the next run converges;
- PgBouncer killed while pgbouncer_tenant writes its files or reloads it: no tenant is lost, the error
  is clear, and the next run converges.

Every tenant is checked the way its clients see it: listed in the files and by SHOW DATABASES, and
logging in through PgBouncer. ROTOR_FAULT_ROUNDS (1 by default; ``make test-faults`` sets 5) repeats
each fault; what each one did is printed (``pytest -s``) and written to .cache/faults/pgbouncer.json.
The module puts the VPS's PgBouncer files, databases and roles back as it found them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from test_faults_rotation import assert_unchanged
from test_pgbouncer_tenant import CONFIG, USERLIST, Tenants

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("ROTOR_FAULT_ROUNDS", "1"))
SUMMARY = ROOT / ".cache" / "faults" / "pgbouncer.json"
SCRIPT = ROOT / "tests" / "integration" / "files" / "pgbouncer_fault.py"
DIRECTORY = "/etc/rotor/pgbouncer"
INI = DIRECTORY + "/pgbouncer.ini"
START = "/root/pgbouncer-faults-start.tar"
# Tenants every test starts from, and the one each fault's change adds.
KEPT = {"fa": {"password": "fa-secret", "pool_size": 2}, "fb": {"password": "fb-secret", "pool_size": 2}}
PLAYBOOK = """\
- name: PgBouncer
  hosts: vps
  gather_facts: false
  roles:
    - role: rotor.vps.pgbouncer
"""


class Faults(Tenants):
    """Tenants, plus PgBouncer's container, its role's converge and what every tenant's client sees."""

    def __init__(self, vps, tmp: Path):
        super().__init__(vps, tmp)
        self.playbook = tmp / "pgbouncer.yml"
        self.playbook.write_text(PLAYBOOK)
        self.records = []

    def converge(self):
        return self.vps.playbook(str(self.playbook), "-e", "@%s" % self.vps.vars_file)

    def wait_pgbouncer(self, seconds: float = 60) -> None:
        """Until the admin console answers (PgBouncer restarted by Docker, or by the test)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.vps.admin("SHOW VERSION").returncode == 0:
                return
            time.sleep(0.3)
        pytest.fail("PgBouncer's admin console did not answer within %d s: %s"
                    % (seconds, self.vps.sh("docker logs --tail 5 rotor-pgbouncer 2>&1").stdout))

    def digest(self) -> str:
        """PgBouncer's files (and no temporary file beside them), byte for byte."""
        return self.vps.sh("cd %s && ls -A . backup 2>&1; sha256sum *.ini userlist.txt 2>&1" % DIRECTORY).stdout

    def tenant_names(self) -> dict:
        """The tenants as the files and PgBouncer list them."""
        return {"databases.ini": set(re.findall(r"^(\w+) = ", self.text(CONFIG), re.M)),
                "userlist.txt": set(re.findall(r'^"(\w+)" ', self.text(USERLIST), re.M)),
                "live": set(self.live())}

    def assert_served(self, names: dict) -> None:
        """Every tenant listed in both files and by PgBouncer, and logging in through it."""
        seen = self.tenant_names()
        for where, found in seen.items():
            assert set(names) <= found, "%s lost %s" % (where, set(names) - found)
        for name, options in names.items():
            login = self.login(name, options["password"])
            assert login.returncode == 0 and login.stdout.strip() == "%s@%s" % (name, name), (name, login.stderr)

    def converges(self, name: str, options: dict) -> dict:
        """The next run for ``name`` converges, and the one after changes nothing."""
        result = self.run(name=name, **options)
        assert not result.get("failed"), result
        again = self.run(name=name, **options)
        assert not again.get("failed") and again["changed"] is False, again
        return result

    def keep(self) -> None:
        """The KEPT tenants served, made when an earlier test (or none) left them otherwise."""
        seen = self.tenant_names()
        if not all(set(KEPT) <= found for found in seen.values()):
            self.having(**KEPT)

    def log_since(self, since: str) -> list:
        """PgBouncer's warnings and errors since ``since`` (the VPS's clock, as date +%s printed it)."""
        out = self.vps.sh("docker logs --since %s rotor-pgbouncer 2>&1" % since).stdout
        return [line.split(" ", 3)[-1] for line in out.splitlines() if " WARNING " in line or " ERROR " in line]

    def record(self, **values) -> None:
        self.records.append(values)
        print("\n%s" % json.dumps(values))


@pytest.fixture(scope="module")
def faults(data_vps, tmp_path_factory):
    vps = data_vps
    subprocess.run(["docker", "cp", str(SCRIPT), "%s:/root/pgbouncer_fault.py" % vps.name], check=True)
    assert vps.sh("tar -C %s -cpf %s ." % (DIRECTORY, START)).returncode == 0
    databases, roles = set(vps._names(vps.DATABASES_SQL)), set(vps._names(vps.ROLES_SQL))
    fingerprint = vps.fingerprint()
    faults = Faults(vps, tmp_path_factory.mktemp("pgbouncer-faults"))
    yield faults
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(faults.records, indent=2) + "\n")
    # Back to where the module started: the files, the databases and roles, what PgBouncer serves.
    proc = vps.sh("if mountpoint -q {d}; then umount {d}; fi; find {d} -mindepth 1 -delete && tar -C {d} -xpf {t} "
                  "&& rm -f {t} /root/pgbouncer.ini.good".format(d=DIRECTORY, t=START))
    assert proc.returncode == 0, proc.stderr
    if vps.admin("SHOW VERSION").returncode != 0:
        vps.sh("docker restart rotor-pgbouncer")
        faults.wait_pgbouncer()
    drops = ['DROP DATABASE "%s" WITH (FORCE)' % name for name in sorted(set(vps._names(vps.DATABASES_SQL)) - databases)]
    drops += ['DROP ROLE "%s"' % name for name in sorted(set(vps._names(vps.ROLES_SQL)) - roles)]
    if drops:  # one psql, one statement (and transaction) per -c
        proc = vps.sh("docker exec -e PGPASSWORD=%s %s psql -X -q -v ON_ERROR_STOP=1 -h %s -U postgres -d postgres %s"
                      % (shlex.quote(vps.variables["postgres_superuser_password"]), vps.POSTGRES, vps.POSTGRES,
                         " ".join("-c %s" % shlex.quote(sql) for sql in drops)))
        assert proc.returncode == 0, proc.stderr
    assert vps.admin("RELOAD").returncode == 0
    assert_unchanged(fingerprint, vps.fingerprint())


ROUND_IDS = ["round%d" % n for n in range(1, ROUNDS + 1)]
CORRUPTIONS = {  # shell commands, each on the good file
    # Not an ini file at all.
    "garbage": "head -c 3000 /dev/urandom | base64 -w 64 | sed 's/^/=[/' > {ini}",
    # Cut in the middle of the [pgbouncer] section (admin_users, the include of databases.ini and more gone).
    "truncated": "truncate -s $(( $(stat -c %s {ini}) / 2 )) {ini}",
}


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1), ids=ROUND_IDS)
def test_corrupt_pgbouncer_ini_is_repaired_by_the_next_converge(faults, round_):
    """Each corruption in turn (from the good file), with a tenant change meanwhile; then one converge."""
    faults.keep()
    vps = faults.vps
    good = vps.sh("sha256sum %s" % INI).stdout
    assert vps.sh("cp -p %s /root/pgbouncer.ini.good" % INI).returncode == 0
    changes = {}
    for corruption, command in CORRUPTIONS.items():
        since = vps.sh("date +%s").stdout.strip()
        assert vps.sh("cp -p /root/pgbouncer.ini.good %s && %s" % (INI, command.format(ini=INI))).returncode == 0
        assert vps.sh("sha256sum %s" % INI).stdout != good

        # A tenant change while the file is corrupt: refused with a clear error, or through; nothing lost.
        name = "fc%s%d" % (corruption[0], round_)
        if name not in vps._names(vps.ROLES_SQL):
            faults.create_role(name, name + "-secret")
        during = faults.run(name=name, password=name + "-secret", pool_size=2)
        kept = faults.tenant_names()
        for where in ("databases.ini", "userlist.txt"):
            assert set(KEPT) <= kept[where], "%s lost a tenant: %s" % (where, kept)
        if during.get("failed"):
            assert during.get("step") == "reload" and "PgBouncer did not take the change: " in during["msg"], during
            assert "the previous files were restored and PgBouncer reloaded with them" in during["msg"], during["msg"]
            unserved = sorted(set(KEPT) - kept["live"])
            if unserved:  # PgBouncer's own file no longer includes the database list: the error says so
                assert "yet PgBouncer does not serve %s" % ", ".join(unserved) in during["msg"], during["msg"]
        else:
            assert set(KEPT) | {name} <= kept["live"], kept
        changes[name] = {"fault": "pgbouncer.ini %s" % corruption, "round": round_,
                         "during_change": during.get("msg", "ok"), "pgbouncer_log": faults.log_since(since),
                         "tenants_after_corruption": {k: sorted(v) for k, v in kept.items()}}

    converge = faults.converge()
    assert converge.rc == 0, converge.output[-3000:]
    assert vps.sh("sha256sum %s" % INI).stdout == good, "the converge did not repair pgbouncer.ini"
    tenants = {name: {"password": name + "-secret", "pool_size": 2} for name in changes}
    repaired = faults.run_many([dict(options, name=name) for name, options in tenants.items()])
    assert not any(result.get("failed") for result in repaired), [result.get("msg") for result in repaired]
    again = faults.run_many([dict(options, name=name) for name, options in tenants.items()])
    assert not any(result.get("failed") or result["changed"] for result in again), again
    faults.assert_served(dict(KEPT, **tenants))
    for result, (name, record) in zip(repaired, changes.items()):
        faults.record(next_run_changed=result["changed"], **record)


def restart_pgbouncer(faults) -> None:
    assert faults.vps.sh("docker restart rotor-pgbouncer").returncode == 0
    faults.wait_pgbouncer()


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1), ids=ROUND_IDS)
def test_full_disk_refuses_a_change_cleanly_and_the_next_run_converges(faults, round_):
    faults.keep()
    vps = faults.vps
    # A 512 KiB tmpfs over PgBouncer's directory, holding its files; PgBouncer restarted to read them there.
    proc = vps.sh("set -e; tar -C {d} -cpf /root/pgbouncer-full.tar .; mount -t tmpfs -o size=512k,mode=0750,gid=70 "
                  "rotor-faults {d}; tar -C {d} -xpf /root/pgbouncer-full.tar".format(d=DIRECTORY))
    assert proc.returncode == 0, proc.stderr
    try:
        restart_pgbouncer(faults)
        faults.assert_served(KEPT)
        # Full: dd stops at ENOSPC.
        vps.sh("dd if=/dev/zero of=%s/fill bs=4k 2>/dev/null; sync" % DIRECTORY)
        assert vps.sh("df --output=avail %s | tail -1" % DIRECTORY).stdout.strip() == "0"
        before = faults.digest()
        names = ["fd%d" % round_, "fe%d" % round_]
        for name in names:
            if name not in vps._names(vps.ROLES_SQL):
                faults.create_role(name, name + "-secret")
        # One with the default backups, one without (the write of the files themselves fails).
        changes = [{"name": names[0], "password": names[0] + "-secret"},
                   {"name": names[1], "password": names[1] + "-secret", "backup_keep": 0}]
        refused = faults.run_many(changes)
        # The default run fails backing up databases.ini, the one without backups writing userlist.txt.
        for result, what in zip(refused, ["could not back up %s to %s/backup: " % (CONFIG, DIRECTORY),
                                          "could not write %s: " % USERLIST]):
            assert result.get("failed") is True and result.get("changed") is False, result
            assert what + "[Errno 28] No space left on device; nothing was changed" in result["msg"], result["msg"]
        assert faults.digest() == before, "a failed change left a file changed or a temporary file behind"
        faults.assert_served(KEPT)
        assert not set(names) & set(faults.live())

        vps.sh("rm -f %s/fill" % DIRECTORY)
        applied = faults.run_many(changes)
        assert all(result.get("changed") is True for result in applied), [r.get("msg") for r in applied]
        assert not any(result.get("changed") for result in faults.run_many(changes))
        faults.assert_served(dict(KEPT, **{name: {"password": name + "-secret"} for name in names}))
        faults.record(fault="directory full", round=round_, refused=[result["msg"] for result in refused])
    finally:
        # The files as they are now, back on the disk; PgBouncer restarted to read them there.
        proc = vps.sh("set -e; rm -f {d}/fill; tar -C {d} -cpf /root/pgbouncer-full.tar .; umount {d}; "
                      "find {d} -mindepth 1 -delete; tar -C {d} -xpf /root/pgbouncer-full.tar; rm /root/pgbouncer-full.tar"
                      .format(d=DIRECTORY))
        restart_pgbouncer(faults)
    assert proc.returncode == 0, proc.stderr
    faults.assert_served(dict(KEPT, **{name: {"password": name + "-secret"} for name in names}))


@pytest.mark.parametrize("moment", ["write", "reload"])
@pytest.mark.parametrize("round_", range(1, ROUNDS + 1), ids=ROUND_IDS)
def test_pgbouncer_killed_during_a_change_loses_no_tenant(faults, moment, round_):
    faults.keep()
    vps = faults.vps
    name = "fk%s%d" % (moment[0], round_)
    if name not in vps._names(vps.ROLES_SQL):
        faults.create_role(name, name + "-secret")
    injector = subprocess.Popen(["docker", "exec", vps.name, "python3", "/root/pgbouncer_fault.py", DIRECTORY, moment,
                                 name, "rotor-pgbouncer", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    during = faults.run(name=name, password=name + "-secret", pool_size=2)
    out, err = injector.communicate(timeout=90)
    assert injector.returncode == 0, "PgBouncer was not killed: %s %s" % (out, err)
    if during.get("failed"):
        assert during.get("step") == "reload" and "PgBouncer did not take the change: " in during["msg"], during
        assert "the previous files were restored" in during["msg"] and during["changed"] is False, during
    faults.wait_pgbouncer()
    kept = faults.tenant_names()
    for where in ("databases.ini", "userlist.txt"):
        assert set(KEPT) <= kept[where], "%s lost a tenant: %s" % (where, kept)
    repaired = faults.converges(name, {"password": name + "-secret", "pool_size": 2})
    faults.assert_served(dict(KEPT, **{name: {"password": name + "-secret"}}))
    faults.record(fault="PgBouncer killed at %s" % moment, round=round_, injected=json.loads(out),
                  during_change=during.get("msg", "ok"), restored=during.get("restored"),
                  next_run_changed=repaired["changed"])
