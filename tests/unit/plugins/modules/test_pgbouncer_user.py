"""pgbouncer_user: the admin line is written under the tenants' lock, keeping every other line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

from ansible_collections.rotor.vps.plugins.module_utils._scram import make_verifier

COLLECTIONS = str(Path(__file__).resolve().parents[4] / ".cache" / "collections")
VERIFIER = make_verifier("admin secret", salt=b"0123456789abcdef")
TENANT = '"shop" "%s"\n' % make_verifier("shop secret", salt=b"fedcba9876543210")


def files(tmp_path: Path) -> dict:
    (tmp_path / "databases.ini").write_text("[databases]\n")
    userlist = tmp_path / "userlist.txt"
    userlist.write_text(TENANT)
    os.chmod(userlist, 0o640)
    return {"user": "pgbouncer_admin", "verifier": VERIFIER, "userlist": str(userlist),
            "config": str(tmp_path / "databases.ini"), "lock_timeout": 10}


def test_four_steps_keep_the_other_lines_and_the_mode(tmp_path, run_module):
    run_module = partial(run_module, "pgbouncer_user")
    args = files(tmp_path)
    userlist = Path(args["userlist"])
    planned = run_module(args, check=True)
    assert planned["changed"] is True and userlist.read_text() == TENANT
    assert VERIFIER not in json.dumps(planned), "the verifier must be masked"
    assert run_module(args)["changed"] is True
    assert userlist.read_text() == TENANT + '"pgbouncer_admin" "%s"\n' % VERIFIER
    assert os.stat(userlist).st_mode & 0o777 == 0o640
    assert run_module(args)["changed"] is False
    assert run_module(args, check=True)["changed"] is False
    assert run_module(dict(args, state="absent"))["changed"] is True
    assert userlist.read_text() == TENANT


def test_waits_for_a_tenant_change_and_keeps_its_line(tmp_path, run_module):
    """A tenant change holding the lock finishes first; its new line survives the admin line's write."""
    args = files(tmp_path)
    late = '"late" "%s"\n' % make_verifier("late secret", salt=b"aaaaaaaaaaaaaaaa")
    script = (
        "import sys, time\n"
        "from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_tenant import files_lock\n"
        "with files_lock(%r, 5):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(1.5)\n"
        "    text = open(%r).read()\n"
        "    open(%r, 'w').write(text + %r)\n" % (args["config"], args["userlist"], args["userlist"], late)
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    assert holder.stdout.readline().strip() == "held"
    result = run_module("pgbouncer_user", args)
    holder.wait(timeout=10)
    assert result["changed"] is True and result["lock_waited"] > 1.0, result
    assert Path(args["userlist"]).read_text() == TENANT + late + '"pgbouncer_admin" "%s"\n' % VERIFIER


def test_a_password_is_refused_and_never_echoed(tmp_path, run_module):
    args = dict(files(tmp_path), verifier="hunter2-plain")
    result = run_module("pgbouncer_user", args)
    assert result["failed"] is True and "must be a SCRAM-SHA-256 verifier" in result["msg"]
    assert "hunter2-plain" not in json.dumps(result)
    assert Path(args["userlist"]).read_text() == TENANT


def test_check_mode_before_the_directory_exists_reports_the_change(tmp_path, run_module):
    """site.yml --check on a fresh host: the role has not made the directory yet, nothing is written."""
    args = {"user": "pgbouncer_admin", "verifier": VERIFIER, "userlist": str(tmp_path / "none" / "userlist.txt"),
            "config": str(tmp_path / "none" / "databases.ini")}
    result = run_module("pgbouncer_user", args, check=True)
    assert result["changed"] is True, result
    assert not (tmp_path / "none").exists()


def test_absent_without_a_file_changes_nothing(tmp_path, run_module):
    args = {"user": "gone", "state": "absent", "userlist": str(tmp_path / "userlist.txt"),
            "config": str(tmp_path / "databases.ini")}
    assert run_module("pgbouncer_user", args)["changed"] is False
    assert not (tmp_path / "userlist.txt").exists()
