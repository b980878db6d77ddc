"""certbot_site against the lab's real ACME CA (Pebble, with pebble-challtestsrv as its DNS),
certbot in its container and the HAProxy of a lab VPS (edge_vps).

The certificates here are dns-01 ones (the TXT records published at challtestsrv by the lab's
hook), a wildcard and its apex in one certificate: the delivery into HAProxy, the checks by TLS
handshake, renewal under load, a CA that is down and bad input are the same for HTTP-01.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from batch import run_module
from conftest import LAB, ROOT

STATE = "/var/lib/rotor-lab"
NAMES = ["*.certs.lab.test", "certs.lab.test"]
STORE = "/usr/local/etc/haproxy/certs/_.certs.lab.test.pem"
FILE = "/etc/rotor/haproxy/certs/_.certs.lab.test.pem"
BACKOFF = "/var/lib/rotor/certbot/state/_.certs.lab.test.json"
BASE = {"domains": NAMES, "challenge": "dns-01", "dns_hook": "/root/acme_dns_hook.py",
        "acme_directory": "https://pebble:14000/dir", "ca_bundle": "/root/pebble-ca.pem", "network": "host",
        "email": "admin@lab.test"}


class Acme:
    """Runs certbot_site on the VPS and reads what HAProxy serves."""

    def __init__(self, vps, tmp):
        self.vps, self.tmp = vps, tmp

    def run(self, *runs: dict, check: bool = False, diff: bool = False) -> list[dict]:
        return run_module(self.vps, "rotor.vps.certbot_site", [dict(BASE, **args) for args in runs], self.tmp,
                          check=check, diff=diff)

    def served(self, name: str) -> tuple[str, str]:
        """The serial and subject alternative names HAProxy presents on 127.0.0.1:443 for ``name``."""
        out = self.vps.sh("echo | openssl s_client -connect 127.0.0.1:443 -servername %s 2>/dev/null "
                          "| openssl x509 -noout -serial -ext subjectAltName" % name).stdout
        serial = out.split("serial=")[1].split()[0] if "serial=" in out else ""
        return serial.upper().lstrip("0"), " ".join(part.strip() for part in out.splitlines()[2:] if part.strip())


@pytest.fixture(scope="module")
def acme(edge_vps, tmp_path_factory):
    subprocess.run([str(LAB), "acme-up"], check=True)
    for source, target in ((STATE + "/pebble-ca.pem", "/root/pebble-ca.pem"),
                           (str(ROOT / "tests" / "integration" / "files" / "acme_dns_hook.py"), "/root/acme_dns_hook.py")):
        subprocess.run(["docker", "cp", source, "%s:%s" % (edge_vps.name, target)], check=True)
    helper = Acme(edge_vps, tmp_path_factory.mktemp("certbot"))
    yield helper
    # What the module made goes, so that the edge tier's next module finds its baseline.
    helper.run({"state": "absent"})
    edge_vps.sh("rm -rf /etc/rotor/certbot /var/lib/rotor/certbot /var/lib/rotor/acme "
                "/var/lib/rotor/metrics/certificate_*.prom /root/pebble-ca.pem /root/acme_dns_hook.py")


def test_four_steps_a_wildcard_and_its_apex_in_one_certificate(acme):
    check, = acme.run({}, check=True, diff=True)
    assert check["changed"] and check["actions"][0] == "order a new certificate: no certificate yet", check
    assert acme.vps.sh("test -e %s" % FILE).returncode == 1
    applied, = acme.run({})
    assert applied["changed"] and applied["serial"], applied.get("msg")
    for name in ("certs.lab.test", "www.certs.lab.test"):
        assert acme.served(name) == (applied["serial"], "DNS:*.certs.lab.test, DNS:certs.lab.test")
    assert acme.vps.sh("stat -c '%%U:%%g %%a' %s" % FILE).stdout.strip() == "root:99 640"
    again, = acme.run({})
    assert not again["changed"] and again["serial"] == applied["serial"] and again["actions"] == []
    check_again, = acme.run({}, check=True)
    assert not check_again["changed"]
    # Once a day passes a third of the way to expiry (90 days): due at 60 days.
    assert abs(applied["due_at"] - (applied["not_after"] - 30 * 86400)) < 5
    audit = [json.loads(line) for line in acme.vps.sh("grep '_.certs.lab.test' /var/log/rotor/rotation.jsonl").stdout.splitlines()]
    assert [(a["action"], a["result"]) for a in audit] == [("order", "ok"), ("deliver", "ok")]
    assert "PRIVATE KEY" not in applied["_raw"]


def test_a_name_added_gets_one_new_certificate_for_all_names(acme):
    more = {"domains": NAMES + ["more.lab.test"]}
    added, = acme.run(more)
    assert added["changed"] and "the names differ (added more.lab.test)" in added["actions"][0], added
    assert acme.served("more.lab.test") == (added["serial"], "DNS:*.certs.lab.test, DNS:certs.lab.test, DNS:more.lab.test")
    assert acme.served("certs.lab.test")[0] == added["serial"]
    back, = acme.run({})
    assert back["changed"] and "removed more.lab.test" in back["actions"][0]


def test_forced_renewal_under_https_load_fails_no_handshake_and_needs_no_reload(acme):
    before = acme.served("certs.lab.test")[0]
    pid = acme.vps.worker_pid()
    acme.vps.sh("rm -f /root/tls-load.json; nohup python3 /root/http_load.py 127.0.0.1 443 www.certs.lab.test 4000 20 4 "
                "/ tls > /root/tls-load.json 2>&1 &")
    time.sleep(1)
    renewed, = acme.run({"force": True})
    time.sleep(1)
    for unused in range(60):
        if acme.vps.sh("cat /root/tls-load.json").stdout.strip():
            break
        time.sleep(0.5)
    load = json.loads(acme.vps.sh("cat /root/tls-load.json").stdout)
    assert renewed["changed"] and renewed["serial"] != before
    assert load["errors"] == {}, load
    assert sum(load["status"].values()) + load["ok"] > 100, load  # every request answered (no route here: 404)
    assert acme.served("www.certs.lab.test")[0] == renewed["serial"]
    assert acme.vps.worker_pid() == pid  # the same HAProxy worker: no reload


def test_a_ca_that_is_down_leaves_the_certificate_served(acme):
    before = acme.served("certs.lab.test")[0]
    subprocess.run(["docker", "stop", "rotor-lab-pebble"], check=True, capture_output=True)
    try:
        failed, = acme.run({"force": True})
    finally:
        subprocess.run(["docker", "start", "rotor-lab-pebble"], check=True, capture_output=True)
    assert failed["failed"] and failed["step"] == "order"
    assert failed["msg"].startswith("certbot_site _.certs.lab.test: certbot could not get a certificate for "
                                    "*.certs.lab.test, certs.lab.test from https://pebble:14000/dir: ")
    assert "the current certificate stays served, the next order waits" in failed["msg"]
    assert acme.served("certs.lab.test")[0] == before
    assert json.loads(acme.vps.sh("cat %s" % BACKOFF).stdout)["failures"] == 1
    # Pebble came back with new roots and without our account: the next order registers again.
    subprocess.run([str(LAB), "acme-up"], check=True, capture_output=True)
    renewed, = acme.run({"force": True})
    assert renewed["changed"] and renewed["serial"] != before, renewed.get("msg")
    assert acme.vps.sh("test -e %s" % BACKOFF).returncode == 1


def test_bad_input_changes_nothing(acme):
    before = acme.vps.digest(FILE) + acme.vps.sh("ls -R /etc/rotor/certbot/config/live").stdout
    cases = [({"domains": ["not a name"]}, "domains[0]: 'not a name' must be a lowercase DNS name"),
             ({"challenge": "http-01"}, "domains[0]: '*.certs.lab.test' is a wildcard: the CA validates wildcards "
                                        "with dns-01 only, not http-01"),
             ({"domains": []}, "domains: at least one domain is required"),
             ({"email": "admin.lab.test"}, "email: 'admin.lab.test' must be an address such as admin@example.com")]
    results = acme.run(*[case[0] for case in cases])
    for (args, message), result in zip(cases, results):
        assert result["failed"] and result["msg"].startswith("Invalid input, nothing was changed: "), result
        assert message in result["msg"], (args, result["msg"])
    assert acme.vps.digest(FILE) + acme.vps.sh("ls -R /etc/rotor/certbot/config/live").stdout == before


def test_absent_stops_serving_it_and_removes_its_files(acme):
    gone, = acme.run({"state": "absent"})
    assert gone["changed"]
    serial, names = acme.served("certs.lab.test")
    assert "certs.lab.test" not in names  # the default certificate again
    assert acme.vps.sh("test -e %s || test -e /etc/rotor/certbot/config/live/_.certs.lab.test" % FILE).returncode == 1
    assert STORE not in acme.vps.runtime("show ssl cert")
    again, = acme.run({"state": "absent"})
    assert not again["changed"]
