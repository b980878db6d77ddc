"""The certbot role on a VPS running the edge (edge_vps), against the lab's Pebble.

HTTP-01 goes through HAProxy's route to the webroot service (Pebble reaches the VPS's port 80 through
pebble-challtestsrv's DNS); a site's plain HTTP redirects once it has its certificate; the one
renewal timer's service renews a short-lived certificate when a third of its lifetime is left and
not before; a certbot package's own schedulers are stopped; testssl.sh checks HAProxy's TLS.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import LAB, ROOT

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "certbot.yml"
STATE = Path("/var/lib/rotor-lab")
SITE = {"domains": ["role.lab.test", "www.role.lab.test"]}
SHORT = {"domains": ["short.lab.test"]}
NAMES = SITE["domains"] + SHORT["domains"]
# Pebble's validity for the timer test: the certificate is due a third before its end, after 30 s.
SHORT_LIFETIME = 45
# What Debian's certbot package installs to renew on its own (its timer enabled, and its cron job).
PACKAGED = {
    "/lib/systemd/system/certbot.timer": "[Unit]\nDescription=Run certbot twice daily\n\n[Timer]\n"
                                         "OnCalendar=*-*-* 00,12:00:00\nRandomizedDelaySec=43200\nPersistent=true\n\n"
                                         "[Install]\nWantedBy=timers.target\n",
    "/lib/systemd/system/certbot.service": "[Unit]\nDescription=Certbot\n\n[Service]\nType=oneshot\n"
                                           "ExecStart=/usr/bin/certbot -q renew --no-random-sleep-on-renew\n",
    "/etc/cron.d/certbot": "0 */12 * * * root test -x /usr/bin/certbot -a \\! -d /run/systemd/system && "
                           "certbot -q renew --no-random-sleep-on-renew\n",
}


def converge(vps, *args, **overrides):
    variables = dict(vps.variables, certbot_sites=[SITE], certbot_acme_directory="https://pebble:14000/dir",
                     certbot_ca_bundle=(STATE / "pebble-ca.pem").read_text(), certbot_network="host",
                     certbot_email="admin@lab.test", certbot_jitter="0")
    variables.update(overrides)
    path = vps.tmp / ("certbot-vars-%d.yml" % time.monotonic_ns())
    path.write_text(yaml.safe_dump(variables))
    return vps.playbook(str(PLAYBOOK), *args, extra_vars=path, timeout=600)


def served(vps, name: str) -> dict:
    """What HAProxy presents on the VPS's 127.0.0.1:443 for ``name``: serial, names, issuer."""
    out = vps.sh("echo | openssl s_client -connect 127.0.0.1:443 -servername %s 2>/dev/null "
                 "| openssl x509 -noout -serial -issuer -ext subjectAltName" % name).stdout
    serial = re.search(r"serial=(\w+)", out)
    return {"serial": serial.group(1).lstrip("0") if serial else "",
            "names": sorted(re.findall(r"DNS:([\w.*-]+)", out)),
            "issuer": re.search(r"issuer=(.*)", out).group(1) if "issuer=" in out else ""}


def chain_verifies(vps, name: str) -> str:
    """OpenSSL's verdict on the chain HAProxy presents for ``name``, against Pebble's current root
    (fetched again: Pebble makes a new one whenever it starts)."""
    root = subprocess.run([str(LAB), "acme-root"], capture_output=True, text=True, check=True).stdout.split()[-1]
    subprocess.run(["docker", "cp", root, "%s:/root/pebble-root.pem" % vps.name], check=True)
    out = vps.sh("echo | openssl s_client -connect 127.0.0.1:443 -servername %s -CAfile /root/pebble-root.pem "
                 "-verify_hostname %s 2>/dev/null | grep 'Verify return code'" % (name, name)).stdout
    return " / ".join(sorted({line.strip() for line in out.splitlines() if line.strip()}))


def timer_run(vps) -> str:
    """Start the renewal timer's service and wait for it (a oneshot); its journal of this run."""
    since = vps.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    proc = vps.sh("systemctl start rotor-certbot.service")
    journal = vps.sh("journalctl -u rotor-certbot.service --since '%s' --no-pager -o cat" % since).stdout
    assert proc.returncode == 0, journal[-3000:]
    return journal


@pytest.fixture(scope="module")
def vps(edge_vps, collection_snapshot):
    subprocess.run([str(LAB), "acme-up"], check=True)
    subprocess.run([str(LAB), "acme-dns", edge_vps.name, *NAMES], check=True)
    for path, text in PACKAGED.items():
        edge_vps.sh("cat > %s <<'EOF'\n%sEOF" % (path, text))
    assert edge_vps.sh("systemctl daemon-reload && systemctl enable --now certbot.timer").returncode == 0
    yield edge_vps
    # Sites absent and the timer removed by the role itself, then what it leaves by design goes, so
    # that the edge tier's next module finds its baseline.
    absent = [dict(site, state="absent") for site in (SITE, SHORT)]
    run = converge(edge_vps, certbot_sites=absent, certbot_mode="external")
    assert run.rc == 0, run.output[-3000:]
    edge_vps.sh("docker rm -f rotor-acme; systemctl unmask certbot.timer; rm -f %s /root/pebble-root.pem; "
                "systemctl daemon-reload; "
                "rm -rf /etc/rotor/certificates /etc/rotor/certbot /var/lib/rotor/certbot /var/lib/rotor/acme "
                "/var/lib/rotor/metrics/certificate_*.prom" % " ".join(PACKAGED))


def test_http01_through_haproxy_gives_one_certificate_for_both_names(vps):
    run = converge(vps)
    assert run.rc == 0, run.output[-3000:]
    first = served(vps, "role.lab.test")
    assert first["names"] == ["role.lab.test", "www.role.lab.test"] and "Pebble" in first["issuer"], first
    assert served(vps, "www.role.lab.test") == first
    assert chain_verifies(vps, "www.role.lab.test") == "Verify return code: 0 (ok)"
    audit = [json.loads(line) for line in vps.sh("grep role.lab.test /var/log/rotor/rotation.jsonl").stdout.splitlines()]
    assert [(a["action"], a["result"]) for a in audit] == [("order", "ok"), ("deliver", "ok")], audit
    again = converge(vps)
    assert again.rc == 0 and again.recap(vps.name)["changed"] == 0, again.output[-3000:]
    assert served(vps, "role.lab.test")["serial"] == first["serial"]


def test_plain_http_redirects_once_a_site_has_its_certificate(vps):
    moved = vps.http("/some/page?q=1", host="role.lab.test")
    assert moved.status == 301 and moved.headers["location"] == "https://role.lab.test/some/page?q=1", moved
    # ACME challenges stay on HTTP and reach the webroot service (which has no such answer), and a
    # name without a certificate is not redirected (HAProxy has no route for it: 404).
    challenge = vps.http("/.well-known/acme-challenge/none", host="www.role.lab.test")
    assert challenge.status == 404 and "location" not in challenge.headers, challenge
    assert "The requested URL was not found" in challenge.body, challenge  # busybox's answer, not HAProxy's
    assert vps.http("/", host="nocert.lab.test").status == 404
    assert "strict-transport-security" in vps.http("/", host="role.lab.test", https=True).headers


def test_exactly_one_renewal_scheduler(vps):
    assert vps.sh("systemctl is-enabled certbot.timer").stdout.strip() == "masked"
    assert vps.sh("systemctl is-active certbot.timer").stdout.strip() == "inactive"
    assert vps.sh("test -e /etc/cron.d/certbot").returncode == 1
    timers = vps.sh("systemctl list-timers --all --no-legend --plain | grep -o '[^ ]*certbot[^ ]*\\.timer'").stdout.split()
    assert timers == ["rotor-certbot.timer"]
    assert vps.sh("systemctl is-enabled rotor-certbot.timer").stdout.strip() == "enabled"
    webroot = json.loads(vps.sh("docker inspect rotor-acme").stdout)[0]
    assert webroot["HostConfig"]["ReadonlyRootfs"] and webroot["HostConfig"]["CapDrop"] == ["ALL"]
    assert webroot["Config"]["User"] == "65534:65534" and webroot["State"]["Health"]["Status"] == "healthy"


def test_the_timer_renews_a_short_lived_certificate_when_a_third_is_left(vps):
    subprocess.run([str(LAB), "acme-up", str(SHORT_LIFETIME)], check=True)  # Pebble restarts: accounts forgotten
    run = converge(vps, certbot_sites=[SITE, SHORT])
    assert run.rc == 0, run.output[-3000:]
    first = served(vps, "short.lab.test")
    metrics = vps.sh("cat /var/lib/rotor/metrics/certificate_short.lab.test.prom").stdout
    not_before, not_after = (float(re.search(r"^%s\{[^}]*\} (\S+)" % name, metrics, re.M).group(1))
                             for name in ("rotor_certificate_not_before_timestamp_seconds",
                                          "rotor_certificate_not_after_timestamp_seconds"))
    due = not_after - (not_after - not_before) / 3
    assert time.time() < due - 3, "the converge took too long to check a run before the certificate is due"
    early = timer_run(vps)
    assert re.search(r"changed=0\b", early), early[-2000:]
    assert served(vps, "short.lab.test")["serial"] == first["serial"]
    time.sleep(max(0.0, due - time.time() + 1))
    renewed = timer_run(vps)
    assert re.search(r"changed=1\b", renewed), renewed[-2000:]
    after = served(vps, "short.lab.test")
    assert after["serial"] != first["serial"] and after["names"] == ["short.lab.test"]
    assert chain_verifies(vps, "short.lab.test") == "Verify return code: 0 (ok)"
    assert served(vps, "role.lab.test")["names"] == SITE["domains"]  # the 90-day certificate is not due
    orders = [json.loads(line) for line in vps.sh("grep short.lab.test /var/log/rotor/rotation.jsonl").stdout.splitlines()]
    assert orders[-2]["action"] == "order" and "third" in orders[-2]["reason"], orders


def test_testssl_finds_no_old_protocol_no_weak_cipher_and_hsts(vps, tmp_path):
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                              vps.name], capture_output=True, text=True, check=True).stdout.split()[0]
    report = tmp_path / "testssl.json"
    proc = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--openssl-timeout", "5",
                           "--protocols", "--std", "--headers", "--jsonfile", str(report), "--ip", address,
                           "https://role.lab.test/"], capture_output=True, text=True, timeout=180, check=False)
    findings = {f["id"]: f for f in json.loads(report.read_text())}
    assert findings, proc.stdout[-2000:]
    for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[protocol]["finding"] == "not offered", findings[protocol]
    for protocol in ("TLS1_2", "TLS1_3"):
        assert findings[protocol]["finding"].startswith("offered"), findings[protocol]
    for weak in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA",
                 "cipherlist_AVERAGE"):
        assert findings[weak]["finding"] == "not offered", findings[weak]
    assert findings["HSTS_time"]["severity"] == "OK", findings["HSTS_time"]
    assert not [f for f in findings.values() if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")], findings
