"""Certificates (rotor.vps.certbot) on a converged VPS: its tenant's name served with a certificate
from the lab's Pebble, plain HTTP redirected, the webroot service and the one renewal timer.

converge.yml gives each platform one site, its own tenant's name.
"""

from __future__ import annotations

import json

import pytest

HOME = {"rotor-molecule-trixie": "north.lab.test", "rotor-molecule-bookworm": "south.lab.test"}


@pytest.fixture
def name(host) -> str:
    return HOME[host.backend.get_hostname()]


def test_its_name_is_served_with_a_certificate_from_the_acme_ca(host, name):
    out = host.check_output("echo | openssl s_client -connect 127.0.0.1:443 -servername %s 2>/dev/null "
                            "| openssl x509 -noout -issuer -ext subjectAltName" % name)
    assert "Pebble" in out and "DNS:%s" % name in out, out
    assert host.check_output("stat -c '%%u:%%g %%a' /etc/rotor/haproxy/certs/%s.pem" % name) == "0:99 640"


def test_plain_http_redirects_to_https(host, name):
    answer = host.check_output("curl -s -o /dev/null -w '%%{http_code} %%{redirect_url}' -H 'Host: %s' "
                               "http://127.0.0.1/items" % name)
    assert answer == "301 https://%s/items" % name


def test_one_renewal_timer_and_the_webroot_service(host):
    assert host.service("rotor-certbot.timer").is_enabled
    assert host.check_output("systemctl is-active rotor-certbot.timer") == "active"
    unit = host.check_output("systemctl cat rotor-certbot.service")
    assert "playbooks/renew_certs.yml" in unit and "Type=oneshot" in unit
    assert "RandomizedDelaySec=1h" in host.check_output("systemctl cat rotor-certbot.timer")
    webroot = json.loads(host.check_output("docker inspect rotor-acme"))[0]
    assert webroot["State"]["Health"]["Status"] == "healthy"
    assert webroot["HostConfig"]["ReadonlyRootfs"] and webroot["HostConfig"]["CapDrop"] == ["ALL"]
    assert host.file("/etc/rotor/certificates/sites.yml").mode == 0o600
