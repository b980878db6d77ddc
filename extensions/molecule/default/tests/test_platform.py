"""What a converged VPS must look like, read from the VPS itself.

The expected values come from the role defaults and the lab inventory that molecule applied, so
the checks follow the configuration instead of repeating it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.fixture(scope="module")
def settings() -> dict:
    merged = {}
    for role in ("docker_host", "networks"):
        merged.update(_load(ROOT / "roles" / role / "defaults" / "main.yml"))
    merged.update(_load(ROOT / "inventories" / "lab" / "group_vars" / "vps.yml"))
    return merged


@pytest.fixture(scope="module")
def docker_info(host) -> dict:
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def test_docker_active_and_enabled(host):
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_python_libraries_for_modules(host, settings):
    for pkg in settings["docker_host_python_packages"]:
        assert host.package(pkg).is_installed, pkg
    host.run_expect([0], "python3 -c 'import docker, psycopg, requests'")


def test_daemon_json_in_effect(host, docker_info, settings):
    assert docker_info["LoggingDriver"] == settings["docker_host_log_driver"]
    assert docker_info["LiveRestoreEnabled"] is settings["docker_host_live_restore"]
    mirrors = [m.rstrip("/") for m in docker_info["RegistryConfig"]["Mirrors"]]
    assert mirrors == [m.rstrip("/") for m in settings["docker_host_registry_mirrors"]]
    insecure = docker_info["RegistryConfig"]["IndexConfigs"]
    for registry in settings["docker_host_insecure_registries"]:
        assert insecure[registry]["Secure"] is False


def test_mirror_serves_images_and_log_rotation_applies(host, settings):
    """An image pulled through the mirror runs, and new containers get the log options."""
    host.run_expect([0], "docker pull -q debian:trixie")
    name = "verify-logopts"
    host.run(f"docker rm -f {name}")
    host.run_expect([0], f"docker create --name {name} debian:trixie true")
    try:
        log_config = json.loads(host.check_output(f"docker inspect -f '{{{{json .HostConfig.LogConfig}}}}' {name}"))
    finally:
        host.run(f"docker rm -f {name}")
    assert log_config["Type"] == settings["docker_host_log_driver"]
    assert log_config["Config"]["max-size"] == settings["docker_host_log_max_size"]
    assert log_config["Config"]["max-file"] == str(settings["docker_host_log_max_file"])


def test_no_new_privileges_applies_to_containers(host, settings):
    """Docker 20.10 does not list the option in `docker info`, so look at a container's own status."""
    host.run_expect([0], "docker pull -q debian:trixie")
    status = host.check_output("docker run --rm debian:trixie grep NoNewPrivs /proc/self/status")
    expected = "1" if settings["docker_host_no_new_privileges"] else "0"
    assert status.split() == ["NoNewPrivs:", expected]


def test_networks_present_with_their_flags(host, settings):
    for net in settings["networks_list"]:
        inspect = json.loads(host.check_output(f"docker network inspect {net['name']}"))[0]
        assert inspect["Internal"] is net.get("internal", False), net["name"]
        assert inspect["Driver"] == net.get("driver", "bridge")
        assert inspect["Labels"].get("org.rotor.vps.managed-by") == "rotor.vps.networks"


def test_internal_network_has_no_route_out(host, settings):
    """A container only on an internal network cannot reach the lab registry; on a routed one it can.

    By address: inner containers cannot resolve lab names (Docker swaps the VPS's loopback resolver).
    """
    host.run_expect([0], "docker pull -q debian:trixie")
    registry_ip = host.check_output("getent hosts rotor-lab-registry").split()[0]
    connect = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{registry_ip}/5000'"
    for net in settings["networks_list"]:
        result = host.run(f'docker run --rm --network {net["name"]} debian:trixie sh -c "{connect}"')
        if net.get("internal", False):
            assert result.rc != 0, f"{net['name']} is internal but reached {registry_ip}:5000"
        else:
            assert result.rc == 0, f"{net['name']} is routed but could not reach {registry_ip}:5000: {result.stderr}"


def _mount_line(host, volume: str) -> str:
    out = host.check_output(f"docker run --rm -v {volume}:/mnt/v debian:trixie grep ' /mnt/v ' /proc/mounts")
    return out.strip()


def _kib(size: str) -> int:
    number, unit = re.match(r"^(\d+)([kmg]?)$", size.lower()).groups()
    return int(number) * {"": 1 / 1024, "k": 1, "m": 1024, "g": 1024**2}[unit]


def test_tmpfs_volumes_mounted_with_size_and_options(host, settings):
    assert settings["networks_tmpfs_volumes"], "the lab inventory defines tmpfs volumes to check"
    host.run_expect([0], "docker pull -q debian:trixie")
    for vol in settings["networks_tmpfs_volumes"]:
        fields = _mount_line(host, vol["name"]).split()
        assert fields[2] == "tmpfs", fields
        options = fields[3].split(",")
        assert f"size={int(_kib(vol['size']))}k" in options, options
        for flag in ("noexec", "nosuid", "nodev"):
            assert (flag in options) is vol.get(flag, True), (vol["name"], flag, options)
        # tmpfs leaves its default mode 1777 out of the mount options.
        if vol.get("mode") and int(vol["mode"], 8) != 0o1777:
            assert f"mode={int(vol['mode'], 8):o}" in options, options
        if "uid" in vol:
            assert f"uid={vol['uid']}" in options


def test_tmpfs_noexec_really_blocks_execution(host, settings):
    vol = next(v for v in settings["networks_tmpfs_volumes"] if v.get("noexec", True))
    result = host.run(
        f"docker run --rm -u 0 -v {vol['name']}:/mnt/v debian:trixie "
        "sh -c 'cp /bin/true /mnt/v/t && /mnt/v/t'"
    )
    assert result.rc != 0
    assert "Permission denied" in result.stderr
