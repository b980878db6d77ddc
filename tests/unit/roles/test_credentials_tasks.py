"""How a changed Grafana admin password reaches Grafana (which the lab cannot run).

The observability role's own tasks/secrets.yml and handler run on this machine with a stand-in ``docker``
first on PATH that records its arguments and its standard input: a new password is written to its file
and then set by Grafana's CLI inside the container, read from stdin (never an argument, which ``ps``
shows, nor the environment); an unchanged one runs nothing; and Ansible's output never shows it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).resolve().parent / "files" / "grafana_password.yml"
COMPONENTS = ("prometheus", "alertmanager", "node_exporter", "cadvisor", "blackbox", "postgres_exporter",
              "pgbouncer_exporter", "loki", "alloy", "collector")
FAKE_DOCKER = """#!%s
import json, os, sys
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read(),
                          "env": sorted(k for k in os.environ if "PASS" in k.upper())}) + "\\n")
"""


@pytest.fixture(name="run")
def _run(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER % sys.executable)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    secrets = tmp_path / "etc" / "secrets" / "grafana"
    secrets.mkdir(parents=True)
    log = tmp_path / "docker.jsonl"

    def run(password: str) -> tuple[str, list]:
        extra = {"observability_config_dir": str(tmp_path / "etc"), "observability_grafana_admin_password": password,
                 "observability_docker_host": "unix:///run/fake-docker.sock", "ansible_python_interpreter": sys.executable,
                 **{"observability_%s_enabled" % name: False for name in COMPONENTS}}
        env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), FAKE_DOCKER_LOG=str(log),
                   ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
        before = len(log.read_text().splitlines()) if log.exists() else 0
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-vvv",
                               str(PLAYBOOK), "-e", json.dumps(extra)],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        calls = [json.loads(line) for line in log.read_text().splitlines()[before:]] if log.exists() else []
        return proc.stdout + proc.stderr, calls

    run.secret_file = secrets / "admin_password"
    return run


def test_a_changed_password_is_set_by_grafanas_cli_from_stdin(run):
    output, calls = run("grafana-first-3f9a1c")
    assert run.secret_file.read_text() == "grafana-first-3f9a1c"
    assert oct(run.secret_file.stat().st_mode & 0o777) == "0o640"
    (call,) = calls
    assert call["argv"] == ["-H", "unix:///run/fake-docker.sock", "exec", "-i", "rotor-grafana", "grafana", "cli",
                            "--homepath", "/usr/share/grafana", "--config", "/etc/grafana/grafana.ini",
                            "admin", "reset-admin-password", "--password-from-stdin"]
    assert call["stdin"].rstrip("\n") == "grafana-first-3f9a1c"
    assert call["env"] == []
    assert "grafana-first-3f9a1c" not in output

    output, calls = run("grafana-first-3f9a1c")
    assert calls == [], "an unchanged password ran %s" % calls

    output, calls = run("grafana-second-77be02")
    assert [c["stdin"].rstrip("\n") for c in calls] == ["grafana-second-77be02"]
    assert all("grafana-second-77be02" not in arg for c in calls for arg in c["argv"])
    assert run.secret_file.read_text() == "grafana-second-77be02"
    assert "grafana-second-77be02" not in output and "grafana-first-3f9a1c" not in output
