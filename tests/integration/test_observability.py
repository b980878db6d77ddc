"""The observability role on a VPS running the data tier and the edge (data_vps), with what it watches.

One converge brings up a rotated web service, a tenant, a Pebble certificate for both their names
and the observability role with second-scale intervals; then, through HAProxy's admin ports and
their login, as a sysadmin would: every target is up; a tmpfs filled to 85% fires the tmpfs alert
(Prometheus, Alertmanager, and the test's webhook receiver) and freeing it resolves it; a stopped
PostgREST fires its tenant's alert; a full tmpfs stays in its container, fires the critical alert and
a rotation clears it; a rotation shows in the metrics within a scrape; the blackbox
exporter reports the served certificate's expiry; the admin ports refuse requests without the
login; and every metric the dashboards and alert rules name is one this Prometheus really has.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._hardening import MANAGED_BY, container_errors, daemon_errors
from ansible_collections.rotor.vps.plugins.module_utils._observability import ALERTS
from ansible_collections.rotor.vps.plugins.module_utils._promql import dashboard_queries, metric_names
from conftest import LAB, LAB_VARS, ROOT

# The whole platform, as a sysadmin converges it: every role, at -vvv and with --diff, so the
# planted secrets' test reads everything a converge can print.
PLAYBOOK = ROOT / "playbooks" / "site.yml"
# Secrets only this test knows (with the lab inventory's own): none may show anywhere.
PLANTED_JWT_SECRET = "planted-jwt-secret-%s" % uuid.uuid4().hex
PLANTED_GRAFANA_PASSWORD = "planted-grafana-admin-%s" % uuid.uuid4().hex[:12]
PLANTED_ENV_TOKEN = "planted-env-token-%s" % uuid.uuid4().hex[:12]
DASHBOARDS = ROOT / "roles" / "observability" / "files" / "dashboards"
STATE = Path("/var/lib/rotor-lab")
NAMES = ["web.obs.lab.test", "demo.obs.lab.test"]
# The ACME account key's name (certbot_account_key): test_credentials.py rolls it.
ACME_ACCOUNT_KEY = "lab-acme-account-old"
LAB_SETTINGS = yaml.safe_load(LAB_VARS.read_text())
LOGIN = "%s:%s" % (LAB_SETTINGS.get("haproxy_stats_user", "admin"), LAB_SETTINGS["haproxy_stats_password"])
# Alertmanager reaches the receiver on the VPS host through the edge network's gateway (DATA_VARS).
WEBHOOK_PORT = 18080
WEBHOOK_URL = "http://10.232.0.1:%d/" % WEBHOOK_PORT
WEBHOOK_TOKEN = "lab-webhook-token"
WEBHOOK_OUT = "/root/webhooks.jsonl"
SCRAPE = 2
# The backups' off-site copy: to a local directory, encrypted to an SSH key made here (test_backup.py decrypts).
OFFSITE_DIR = "/srv/rotor-offsite"
OFFSITE_KEY = "/root/backup-test-key"
JOBS = {"prometheus", "alertmanager", "node", "cadvisor", "blackbox", "postgres", "pgbouncer", "haproxy", "probe_https"}
# The data tier's VPS goes after this module (and test_backup.py, test_socket_proxy.py and test_credentials.py,
# which continue on its stack): the timers it installed never run into another's.
RUN_LAST_IN_TIER = 1


def variables() -> dict:
    service = dict(LAB_SETTINGS["rotation_services"][0], hosts=NAMES[:1], replicas=2,
                   env={"API_TOKEN": PLANTED_ENV_TOKEN})
    tenant = dict(LAB_SETTINGS["rotor_tenants"][0], hosts=NAMES[1:], jwt_secret=PLANTED_JWT_SECRET)
    return {
        "rotation_services": [service],
        "rotor_tenants": [tenant],
        "certbot_sites": [{"domains": NAMES}],
        "certbot_acme_directory": "https://pebble:14000/dir",
        "certbot_ca_bundle": (STATE / "pebble-ca.pem").read_text(),
        "certbot_jitter": "0",
        "certbot_account_key": ACME_ACCOUNT_KEY,
        "observability_probe_ca_bundle": (STATE / "pebble-root.pem").read_text(),
        "observability_scrape_interval": "%ds" % SCRAPE,
        "observability_evaluation_interval": "%ds" % SCRAPE,
        "observability_collector_interval": "%ds" % SCRAPE,
        "observability_alert_for": dict.fromkeys(ALERTS, "0s"),
        "observability_alert_group_wait": "1s",
        "observability_alert_group_interval": "2s",
        "observability_alert_repeat_interval": "1h",
        "observability_alert_receivers": [{"name": "test", "type": "webhook", "url": WEBHOOK_URL,
                                           "bearer_token": WEBHOOK_TOKEN}],
        "observability_grafana_admin_password": PLANTED_GRAFANA_PASSWORD,
    }


def planted(settings: dict) -> dict:
    """Every secret of the converge's variables: name -> value (passwords, secrets, tokens, at any depth)."""
    found = {}

    def walk(value, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, "%s.%s" % (where, key) if where else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, "%s[%d]" % (where, index))
        elif isinstance(value, str) and re.search(r"password|secret|token", where.rsplit(".", 1)[-1], re.I) \
                and len(value) >= 8 and "{{" not in value:
            found[where] = value

    walk(settings, "")
    return found


def api(vps, port: int, path: str, *, login: str | None = LOGIN) -> dict:
    """JSON of one GET through HAProxy's admin port on the VPS's 127.0.0.1."""
    user = "-u %s" % shlex.quote(login) if login else ""
    proc = vps.sh("curl -fsS --max-time 10 %s http://127.0.0.1:%d%s" % (user, port, path))
    assert proc.returncode == 0, "%s: %s" % (path, proc.stderr)
    return json.loads(proc.stdout)


def query(vps, expr: str) -> list:
    return api(vps, 9090, "/api/v1/query?query=%s" % quote(expr))["data"]["result"]


def until(what: str, check, timeout: float = 60, interval: float = 0.5):
    """Poll ``check`` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "%s: not within %d s" % (what, timeout)
        time.sleep(interval)


def firing(vps, alert: str, **labels) -> list:
    alerts = api(vps, 9090, "/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == alert and a["state"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def webhooks(vps) -> list:
    text = vps.sh("cat %s 2>/dev/null; true" % WEBHOOK_OUT).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def notified(vps, alert: str, status: str, **labels) -> list:
    return [hook for hook in webhooks(vps) for a in hook["body"].get("alerts", [])
            if a["labels"].get("alertname") == alert and a["status"] == status
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def container(vps, label: str) -> str:
    names = vps.sh("docker ps --filter label=%s --format '{{.Names}}'" % label).stdout.split()
    assert names, "no running container with label %s" % label
    return names[0]


def full_stack(data_vps) -> Path:
    """The whole platform converged on ``data_vps`` with ``variables()`` and the backups' off-site copy (once: the
    tier's later modules continue on it, test_backup.py, test_socket_proxy.py and test_credentials.py); the variables'
    file. The webhook receiver lives as long as the VPS (at most an hour)."""
    if "full_stack" in data_vps.marks:
        return data_vps.marks["full_stack"]
    subprocess.run([str(LAB), "acme-up"], check=True)
    subprocess.run([str(LAB), "acme-root"], check=True, capture_output=True)
    subprocess.run([str(LAB), "acme-dns", data_vps.name, *NAMES], check=True)
    subprocess.run(["docker", "cp", str(ROOT / "tests" / "integration" / "files" / "webhook_receiver.py"),
                    "%s:/root/webhook_receiver.py" % data_vps.name], check=True)
    data_vps.sh("rm -f %s; nohup python3 /root/webhook_receiver.py --port %d --out %s --lifetime 3600 "
                ">/dev/null 2>&1 &" % (WEBHOOK_OUT, WEBHOOK_PORT, WEBHOOK_OUT))
    key = data_vps.tmp / "backup-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rotor-backup-test", "-f", str(key)], check=True)
    subprocess.run(["docker", "cp", str(key), "%s:%s" % (data_vps.name, OFFSITE_KEY)], check=True)
    assert data_vps.sh("chmod 0600 %s && mkdir -p %s" % (OFFSITE_KEY, OFFSITE_DIR)).returncode == 0
    path = data_vps.tmp / "observability-vars.yml"
    path.write_text(yaml.safe_dump(dict(variables(), backup_offsite_command='cat > %s/"$2"' % OFFSITE_DIR,
                                        backup_offsite_recipients=[key.with_suffix(".pub").read_text().strip()])))
    run = data_vps.playbook(str(PLAYBOOK), "-vvv", "--diff", "-e", "@%s" % data_vps.vars_file, extra_vars=path,
                            timeout=900)
    assert run.rc == 0, run.output[-4000:]
    data_vps.converge_output = run.output
    # The tests start the rotation themselves: a timer's run (every 5 minutes in the lab's settings)
    # would start containers meanwhile, and one could take the address of the PostgREST a test stops,
    # which HAProxy's server line keeps.
    assert data_vps.sh("systemctl stop rotor-rotate-web.timer").returncode == 0
    data_vps.marks["full_stack"] = path
    return path


@pytest.fixture(scope="module")
def vps(data_vps, collection_snapshot):
    full_stack(data_vps)
    yield data_vps
    data_vps.sh("systemctl disable --now 'rotor-rotate-*.timer' rotor-certbot.timer rotor-container-metrics.timer; true")


def test_every_container_is_hardened(vps):
    """The whole stack runs here: every container against the collection's hardening rules (the README's
    exceptions aside), and the daemon's defaults."""
    names = vps.sh("docker ps --format '{{.Names}}'").stdout.split()
    inspected = json.loads(vps.sh("docker inspect %s" % " ".join(names)).stdout)
    kinds = {c["Config"]["Labels"].get(MANAGED_BY) for c in inspected}
    # The stack as a whole: the roles' containers, a rotated service's and a tenant's PostgREST.
    assert {"rotor.vps.haproxy", "rotor.vps.postgres", "rotor.vps.pgbouncer", "rotor.vps.haproxy_rotate",
            "rotor.vps.postgrest_spawn", "rotor.vps.observability", "rotor.vps.certbot"} <= kinds, kinds
    assert len(inspected) >= 14, names
    errors = [error for c in inspected for error in container_errors(c)]
    errors += daemon_errors(json.loads(vps.sh("cat /etc/docker/daemon.json").stdout))
    assert errors == []
    assert all(c["State"]["Health"]["Status"] == "healthy" for c in inspected if "Health" in c["State"]), [
        (c["Name"], c["State"]["Health"]["Status"]) for c in inspected if "Health" in c["State"]]


def test_planted_secrets_never_show(vps):
    """Not in the -vvv --diff output of the whole converge (module results and diffs included), an audit line,
    a log line of the VPS or of any container, or docker inspect of any container."""
    settings = yaml.safe_load(vps.marks["full_stack"].read_text())
    secrets = planted(dict(yaml.safe_load(vps.vars_file.read_text()), **settings))
    assert {"postgres_superuser_password", "pgbouncer_admin_password", "haproxy_stats_password",
            "socket_proxy_token", "observability_postgres_monitor_password", "rotor_tenants[0].authenticator_password",
            "rotor_tenants[0].jwt_secret", "observability_grafana_admin_password",
            "rotation_services[0].env.API_TOKEN"} <= set(secrets), sorted(secrets)
    assert len(vps.converge_output) > 100_000, "not a -vvv output"
    places = {
        "the converge's -vvv --diff output": vps.converge_output,
        "the audit logs": vps.sh("cat /var/log/rotor/*.jsonl").stdout,
        "the VPS's journal": vps.sh("journalctl --no-pager -o cat").stdout,
        "the containers' logs": vps.sh("for c in $(docker ps -aq); do docker logs $c 2>&1; done").stdout,
        "docker inspect": vps.sh("docker inspect $(docker ps -aq)").stdout,
    }
    assert all(places.values()), [name for name, text in places.items() if not text]
    # A web service's env is what its containers are given: docker inspect shows it by design.
    shown = ["%s in %s" % (name, where) for name, value in secrets.items() for where, text in places.items()
             if value in text and not (".env." in name and where == "docker inspect")]
    assert shown == [], shown


def test_every_target_is_up(vps):
    def all_up():
        targets = api(vps, 9090, "/api/v1/targets")["data"]["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = until("every Prometheus target up", all_up, timeout=60)
    assert {t["labels"]["job"] for t in targets} == JOBS
    assert sorted(t["labels"]["instance"] for t in targets if t["labels"]["job"] == "probe_https") == sorted(NAMES)


def test_a_tmpfs_filled_to_85_percent_fires_its_alert_and_freeing_it_resolves_it(vps):
    web = container(vps, "org.rotor.vps.service=web")
    # 14 of the 16 MB of /tmp (85-90%, with what the image keeps there): over 80%, under 95%.
    fill = vps.sh("docker exec %s dd if=/dev/zero of=/tmp/fill bs=1M count=14 status=none" % web)
    assert fill.returncode == 0, fill.stderr
    try:
        until("TmpfsUsageHigh firing", lambda: firing(vps, "TmpfsUsageHigh", container=web, mount="/tmp"))
        assert not firing(vps, "TmpfsUsageCritical", container=web), "85% is not critical"
        managed = api(vps, 9093, "/api/v2/alerts?filter=%s" % quote('alertname="TmpfsUsageHigh"'))
        assert [a for a in managed if a["labels"].get("container") == web and a["status"]["state"] == "active"]
        hook = until("the webhook's firing notification",
                     lambda: notified(vps, "TmpfsUsageHigh", "firing", container=web))
        assert webhooks(vps)[0]["authorization"] == "Bearer %s" % WEBHOOK_TOKEN
        assert hook
    finally:
        vps.sh("docker exec %s rm -f /tmp/fill" % web)
    until("TmpfsUsageHigh resolved", lambda: not firing(vps, "TmpfsUsageHigh", container=web))
    until("the webhook's resolved notification", lambda: notified(vps, "TmpfsUsageHigh", "resolved", container=web))


def test_a_full_tmpfs_stays_in_its_container_fires_critical_and_a_rotation_clears_it(vps):
    web, other = sorted(vps.sh("docker ps --filter label=org.rotor.vps.service=web --format '{{.Names}}'").stdout.split())
    full = vps.sh("docker exec %s dd if=/dev/zero of=/tmp/full bs=1M count=64 status=none" % web)
    assert full.returncode != 0 and "No space left on device" in full.stderr, (full.returncode, full.stderr)
    # Contained: the write stopped at that container's own 16 MB tmpfs; the other replica's has room,
    # and the service keeps answering, from both replicas.
    assert int(vps.sh("docker exec %s stat -c %%s /tmp/full" % web).stdout) <= 16 * 1024 * 1024
    assert vps.sh("docker exec %s sh -c 'echo more > /tmp/more'" % web).returncode != 0
    assert vps.sh("docker exec %s sh -c 'echo more > /tmp/more && rm /tmp/more'" % other).returncode == 0
    served = {vps.http("/", host=NAMES[0], https=True).headers.get("x-served-by") for _request in range(12)}
    assert served == {web, other}, served
    until("TmpfsUsageCritical firing", lambda: firing(vps, "TmpfsUsageCritical", container=web, mount="/tmp"))
    # A rotation replaces it with a fresh container and an empty tmpfs: the alert resolves.
    run = vps.sh("systemctl start rotor-rotate-web.service")
    assert run.returncode == 0, vps.sh("journalctl -u rotor-rotate-web.service -n 40 --no-pager").stdout
    assert web not in vps.sh("docker ps -a --format '{{.Names}}'").stdout.split()
    until("TmpfsUsageCritical resolved", lambda: not firing(vps, "TmpfsUsageCritical", container=web))


def test_a_stopped_postgrest_fires_its_tenants_alert(vps):
    postgrest = container(vps, "org.rotor.vps.tenant=demo")
    address = "docker inspect -f '{{(index .NetworkSettings.Networks \"app\").IPAddress}}' %s" % postgrest
    before = vps.sh(address).stdout.strip()
    assert not firing(vps, "PostgrestNotReady")
    assert vps.sh("docker stop -t 2 %s" % postgrest).returncode == 0
    # Another container takes its address meanwhile: the restarted one gets another, which HAProxy's server
    # line does not follow. The tenant serves nothing until the tenants role replaces its PostgREST, which it
    # does for a tenant that runs but has no server up.
    squatter = vps.sh("docker run -d --network app --ip %s --read-only busybox:1.37 sleep 300" % before)
    try:
        assert squatter.returncode == 0, squatter.stderr
        until("PostgrestNotReady firing", lambda: firing(vps, "PostgrestNotReady", tenant="demo"))
        assert vps.sh("docker start %s" % postgrest).returncode == 0
        assert vps.sh(address).stdout.strip() != before
        run = vps.playbook(str(ROOT / "tests" / "integration" / "playbooks" / "tenants.yml"), "-e",
                           "@%s" % vps.vars_file, extra_vars=vps.tmp / "observability-vars.yml")
        assert run.rc == 0, run.output[-3000:]
        assert postgrest not in vps.sh("docker ps -a --format '{{.Names}}'").stdout.split(), run.output[-2000:]
    finally:
        vps.sh("docker rm -f %s" % squatter.stdout.strip())
        vps.sh("docker start %s" % postgrest)  # when the test failed before it did (a no-op otherwise)
    until("PostgrestNotReady resolved", lambda: not firing(vps, "PostgrestNotReady", tenant="demo"), timeout=60)


def test_a_rotation_shows_in_the_metrics_within_one_scrape(vps):
    def replacements() -> float:
        result = query(vps, 'rotor_rotation_replacements_total{service="web"}')
        return float(result[0]["value"][1]) if result else 0.0

    before = replacements()
    run = vps.sh("systemctl start rotor-rotate-web.service")
    assert run.returncode == 0, vps.sh("journalctl -u rotor-rotate-web.service -n 40 --no-pager").stdout
    done = time.monotonic()
    until("the rotation in Prometheus", lambda: replacements() > before, timeout=SCRAPE * 4, interval=0.2)
    assert time.monotonic() - done <= SCRAPE + 1.5, "the rotation took more than one scrape to show"
    interval = query(vps, 'rotor_rotation_interval_seconds{service="web"}')
    assert float(interval[0]["value"][1]) == 300, "the lab's web service rotates every 5 minutes"


def test_blackbox_reports_the_served_certificates_expiry(vps):
    for name in NAMES:
        out = vps.sh("echo | openssl s_client -connect 127.0.0.1:443 -servername %s 2>/dev/null "
                     "| openssl x509 -noout -enddate -dateopt iso_8601" % name).stdout
        served = time.mktime(time.strptime(out.strip().split("=", 1)[1], "%Y-%m-%d %H:%M:%SZ")) - time.timezone
        probed = until("the probe of %s" % name, lambda n=name: query(
            vps, 'probe_ssl_earliest_cert_expiry{job="probe_https",instance="%s"}' % n))
        assert float(probed[0]["value"][1]) == served, name
        assert query(vps, 'probe_success{job="probe_https",instance="%s"}' % name)[0]["value"][1] == "1"
    textfile = query(vps, "rotor_certificate_not_after_timestamp_seconds")
    assert {float(r["value"][1]) for r in textfile} == {served}


@pytest.mark.parametrize("port,service_runs", [(3000, False), (9090, True), (9093, True)],
                         ids=["grafana-off", "prometheus", "alertmanager"])
def test_the_admin_ports_need_the_login(vps, port, service_runs):
    def status(login: str) -> str:
        user = "-u %s" % shlex.quote(login) if login else ""
        return vps.sh("curl -s -o /dev/null -w '%%{http_code}' --max-time 5 %s http://127.0.0.1:%d/"
                      % (user, port)).stdout

    assert status("") == "401"
    assert status(LOGIN.split(":")[0] + ":wrong") == "401"
    # With the login: the service's own answer, or 503 while it does not run (Grafana, off in the lab).
    assert status(LOGIN) in (("200", "302") if service_runs else ("503",))


def test_every_metric_the_dashboards_and_rules_name_is_in_prometheus(vps):
    have = set(api(vps, 9090, "/api/v1/label/__name__/values")["data"])
    rules = yaml.safe_load(vps.sh("cat /etc/rotor/observability/prometheus/rules/rotor.yml").stdout)
    exprs = [("alert %s" % rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]
    assert sorted(name for name, _expr in exprs) == sorted("alert %s" % a for a in ALERTS)
    for path in sorted(DASHBOARDS.glob("*.json")):
        exprs += [("%s: %s" % (path.name, title), expr)
                  for title, uid, expr in dashboard_queries(json.loads(path.read_text())) if uid == "rotor-prometheus"]
    missing = {where: sorted(metric_names(expr) - have) for where, expr in exprs if metric_names(expr) - have}
    assert not missing, "names Prometheus does not have:\n%s" % "\n".join(
        "%s: %s" % item for item in sorted(missing.items()))
    assert re.search(r"rotor_tmpfs_used_bytes", " ".join(e for _w, e in exprs))
