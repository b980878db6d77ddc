"""The HAProxy edge of a converged VPS (rotor.vps.haproxy), read from the VPS itself.

Expected values come from the role defaults and the lab inventory molecule applied.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
CONFIG_DIR = "/etc/rotor/haproxy"
ADMIN_SOCKET = "/var/lib/rotor/haproxy/run/admin.sock"
# A runtime API client made of the host's python3 alone.
ASK = (
    "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
    's.sendall(sys.argv[2].encode() + b"\\n"); s.shutdown(socket.SHUT_WR); '
    "print(b\"\".join(iter(lambda: s.recv(65536), b\"\")).decode())' %s '%s'"
)


@pytest.fixture(scope="module")
def settings() -> dict:
    merged = yaml.safe_load((ROOT / "roles" / "haproxy" / "defaults" / "main.yml").read_text())
    merged.update(yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "vps.yml").read_text()))
    # The lab derives its backends from rotation_services with a filter; read them the same way.
    sys.path.insert(0, str(ROOT / ".cache" / "collections"))
    from ansible_collections.rotor.vps.plugins.filter.rotation import rotation_backends

    merged["haproxy_backends"] = rotation_backends(merged.get("rotation_services", []))
    return merged


@pytest.fixture(scope="module")
def container(host, settings) -> dict:
    return json.loads(host.check_output("docker inspect %s" % settings["haproxy_container_name"]))[0]


def _curl(host, args: str) -> str:
    return host.check_output("curl -sk -o /dev/null -w '%%{http_code}' --max-time 10 %s" % args)


def test_container_running_master_worker(container, settings):
    assert container["State"]["Running"] is True
    assert container["Config"]["Image"] == settings["haproxy_image"]
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["Config"]["Cmd"][:3] == ["haproxy", "-W", "-db"]
    networks = {settings["haproxy_edge_network"], settings["haproxy_app_network"], settings["haproxy_observability_network"]}
    assert set(container["NetworkSettings"]["Networks"]) == networks
    stats = container["HostConfig"]["PortBindings"]["8404/tcp"][0]
    assert stats == {"HostIp": settings["haproxy_stats_publish_address"], "HostPort": str(settings["haproxy_stats_port"])}


def test_files_owned_for_uid_99(host, settings):
    for path in ("haproxy.cfg", "certs/default.pem"):
        f = host.file("%s/%s" % (CONFIG_DIR, path))
        assert f.user == "root" and f.gid == 99 and f.mode == 0o640, path
    # The haproxy_rotate module rewrites the map (and backend files) with its own modes: readable is what counts.
    routes = host.file(CONFIG_DIR + "/maps/hosts.map")
    assert routes.mode & 0o004 or (routes.gid == 99 and routes.mode & 0o040)
    run = host.file("/var/lib/rotor/haproxy/run")
    assert run.uid == 99 and run.mode == 0o770
    for backend in settings["haproxy_backends"]:
        name = backend["name"]
        cfg = host.file("%s/conf.d/%s.cfg" % (CONFIG_DIR, name)).content_string
        assert "backend %s from %s-settings" % (name, name) in cfg
        assert "defaults %s-settings" % name in host.file(CONFIG_DIR + "/haproxy.cfg").content_string


def test_runtime_api_answers_root_on_the_host(host):
    info = host.check_output(ASK % (ADMIN_SOCKET, "show info"))
    assert re.search(r"^Version: 3\.0\.", info, re.M)


def test_unknown_host_404_with_headers(host):
    headers = host.check_output("curl -si --max-time 10 -H 'Host: unknown.invalid' http://127.0.0.1:%d/" % 80)
    assert headers.startswith("HTTP/1.1 404")
    assert re.search(r"^x-content-type-options: nosniff", headers, re.M | re.I)
    assert not re.search(r"^strict-transport-security:", headers, re.M | re.I)


def test_https_self_signed(host):
    verbose = host.run("curl -skv --max-time 10 -o /dev/null https://127.0.0.1:443/").stderr
    assert "ALPN: server accepted h2" in verbose
    assert re.search(r"subject: CN=", verbose)


def test_stats_and_metrics(host, settings):
    port = settings["haproxy_stats_port"]
    assert _curl(host, "http://127.0.0.1:%d/" % port) == "401"
    auth = "-u %s:%s" % (settings["haproxy_stats_user"], settings["haproxy_stats_password"])
    assert _curl(host, "%s http://127.0.0.1:%d/" % (auth, port)) == "200"
    metrics = host.check_output("curl -sf --max-time 10 http://127.0.0.1:%d/metrics" % port)
    assert "haproxy_process_start_time_seconds" in metrics
