"""Tenants on two servers of one inventory (rotor.vps.tenants): each exists on the server it is assigned to only.

converge.yml assigns tenant "north" to the trixie platform and "south" to the bookworm one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
SUPERUSER_PASSWORD = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "vps.yml").read_text())[
    "postgres_superuser_password"]

HOME = {"rotor-molecule-trixie": "north", "rotor-molecule-bookworm": "south"}
PASSWORD = "lab-%s-authenticator-password"


@pytest.fixture
def mine(host) -> str:
    return HOME[host.backend.get_hostname()]


@pytest.fixture
def other(mine) -> str:
    return "south" if mine == "north" else "north"


def _containers(host, tenant: str) -> list:
    return host.check_output("docker ps -q --filter label=org.rotor.vps.tenant=%s" % tenant).split()


def test_each_tenant_runs_on_its_server_only(host, mine, other):
    assert len(_containers(host, mine)) == 1
    assert _containers(host, other) == []
    databases = host.check_output("docker exec -e PGPASSWORD=%s rotor-postgres psql -U postgres -At -c "
                                  "\"SELECT datname FROM pg_database WHERE datname IN ('north', 'south')\""
                                  % SUPERUSER_PASSWORD).split()
    assert databases == [mine]


def test_its_api_answers_through_haproxy_and_the_others_does_not(host, mine, other):
    request = "curl -sk -o /dev/null -w '%%{http_code}' --resolve %s.lab.test:443:127.0.0.1 https://%s.lab.test/"
    ours = host.run(request % (mine, mine))
    theirs = host.run(request % (other, other))
    assert (ours.stdout, theirs.stdout) == ("200", "404")


def test_container_is_hardened_and_keeps_its_secrets_in_files(host, mine):
    info = json.loads(host.check_output("docker inspect %s" % _containers(host, mine)[0]))[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True and info["HostConfig"]["CapDrop"] == ["ALL"]
    assert info["Config"]["User"] == "1000"
    assert sorted(info["NetworkSettings"]["Networks"]) == ["app", "data"]
    assert PASSWORD % mine not in json.dumps(info)
    secret = host.file("/etc/rotor/postgrest/%s/db-uri" % mine)
    assert secret.uid == 1000 and secret.mode == 0o400
