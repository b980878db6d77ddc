"""docker_host on a real (lab) server: installing the engine on a bare host, check mode, reload
versus restart, live-restore.

The role runs alone here (tests/integration/playbooks/docker_host.yml), so every case pays for the
engine and nothing else; the whole site.yml, its check mode and its second run are tested on
full-stack VPSs by molecule.
"""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT

LAB_VARS = "inventories/lab/group_vars/vps.yml"
PLAYBOOK = str(ROOT / "tests" / "integration" / "playbooks" / "docker_host.yml")


@pytest.fixture(scope="module")
def converged(fresh_vps):
    assert fresh_vps.sh("command -v dockerd").returncode != 0, "the VPS is not bare"
    run = fresh_vps.playbook(PLAYBOOK, "-e", "@%s" % LAB_VARS)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(fresh_vps.name)["changed"] > 0
    assert fresh_vps.sh("systemctl is-active docker").stdout.strip() == "active"
    return fresh_vps


def _dockerd_pid(vps) -> str:
    return vps.sh("systemctl show -p MainPID --value docker").stdout.strip()


def _vars(tmp_path, **overrides) -> list[str]:
    path = tmp_path / "overrides.yml"
    path.write_text(yaml.safe_dump(overrides))
    return ["-e", "@%s" % LAB_VARS, "-e", "@%s" % path]


def test_check_mode_on_a_converged_host_reports_nothing(converged):
    run = converged.playbook(PLAYBOOK, "--check", "-e", "@%s" % LAB_VARS)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap(converged.name)["changed"] == 0


def test_check_mode_shows_a_daemon_json_change_without_making_it(converged, tmp_path):
    before = converged.sh("cat /etc/docker/daemon.json").stdout
    run = converged.playbook(PLAYBOOK, "--check", "--diff", *_vars(tmp_path, docker_host_log_max_size="50m"))
    assert run.rc == 0, run.output[-3000:]
    assert '+    "max-size": "50m"' in run.output
    assert converged.sh("cat /etc/docker/daemon.json").stdout == before


def test_reloadable_setting_reloads_dockerd(converged, tmp_path):
    pid = _dockerd_pid(converged)
    mirrors = ["http://rotor-lab-registry:5000", "http://127.0.0.1:5999"]
    run = converged.playbook(PLAYBOOK, *_vars(tmp_path, docker_host_registry_mirrors=mirrors))
    assert run.rc == 0, run.output[-3000:]
    assert "RUNNING HANDLER [rotor.vps.docker_host : Reload docker]" in run.output
    assert "Restart docker" not in run.output
    assert _dockerd_pid(converged) == pid, "dockerd was restarted for a reloadable setting"
    info = converged.sh("docker info --format '{{json .RegistryConfig.Mirrors}}'").stdout
    assert "127.0.0.1:5999" in info


def test_other_setting_restarts_dockerd_and_containers_survive(converged, tmp_path):
    converged.sh("docker rm -f survivor; docker run -d --name survivor debian:trixie sleep 600")
    started = converged.sh("docker inspect -f '{{.State.StartedAt}}' survivor").stdout
    pid = _dockerd_pid(converged)
    run = converged.playbook(PLAYBOOK, *_vars(tmp_path, docker_host_log_max_size="20m"))
    assert run.rc == 0, run.output[-3000:]
    assert "RUNNING HANDLER [rotor.vps.docker_host : Restart docker]" in run.output
    assert _dockerd_pid(converged) != pid
    # live-restore: the container kept running through the restart, never restarted.
    assert converged.sh("docker inspect -f '{{.State.Running}} {{.State.StartedAt}}' survivor").stdout.split() == [
        "true",
        started.strip(),
    ]
    run = converged.playbook(PLAYBOOK, *_vars(tmp_path, docker_host_log_max_size="20m"))
    assert run.recap(converged.name)["changed"] == 0
