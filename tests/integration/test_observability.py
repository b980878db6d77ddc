"""The observability role on a VPS running the data tier and the edge (data_vps), with what it watches.

One converge brings up a rotated web service, a tenant, a Pebble certificate for both their names
and the observability role with second-scale intervals; then, through HAProxy's admin ports and
their login, as a sysadmin would: every target is up; a tmpfs filled to 85% fires the tmpfs alert
(Prometheus, Alertmanager, and the test's webhook receiver) and freeing it resolves it; a stopped
PostgREST fires its tenant's alert; a rotation shows in the metrics within a scrape; the blackbox
exporter reports the served certificate's expiry; the admin ports refuse requests without the
login; and every metric the dashboards and alert rules name is one this Prometheus really has.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._observability import ALERTS
from ansible_collections.rotor.vps.plugins.module_utils._promql import dashboard_queries, metric_names
from conftest import LAB, LAB_VARS, ROOT

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "observability.yml"
DASHBOARDS = ROOT / "roles" / "observability" / "files" / "dashboards"
STATE = Path("/var/lib/rotor-lab")
NAMES = ["web.obs.lab.test", "demo.obs.lab.test"]
LAB_SETTINGS = yaml.safe_load(LAB_VARS.read_text())
LOGIN = "%s:%s" % (LAB_SETTINGS.get("haproxy_stats_user", "admin"), LAB_SETTINGS["haproxy_stats_password"])
# Alertmanager reaches the receiver on the VPS host through the edge network's gateway (DATA_VARS).
WEBHOOK_PORT = 18080
WEBHOOK_URL = "http://10.232.0.1:%d/" % WEBHOOK_PORT
WEBHOOK_TOKEN = "lab-webhook-token"
WEBHOOK_OUT = "/root/webhooks.jsonl"
SCRAPE = 2
JOBS = {"prometheus", "alertmanager", "node", "cadvisor", "blackbox", "postgres", "pgbouncer", "haproxy", "probe_https"}
# The data tier's VPS goes after this module: the timers it installed never run into another's.
RUN_LAST_IN_TIER = True


def variables() -> dict:
    service = dict(LAB_SETTINGS["rotation_services"][0], hosts=NAMES[:1], replicas=1)
    tenant = dict(LAB_SETTINGS["rotor_tenants"][0], hosts=NAMES[1:])
    return {
        "rotation_services": [service],
        "rotor_tenants": [tenant],
        "certbot_sites": [{"domains": NAMES}],
        "certbot_acme_directory": "https://pebble:14000/dir",
        "certbot_ca_bundle": (STATE / "pebble-ca.pem").read_text(),
        "certbot_jitter": "0",
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
    }


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


@pytest.fixture(scope="module")
def vps(data_vps, collection_snapshot):
    subprocess.run([str(LAB), "acme-up"], check=True)
    subprocess.run([str(LAB), "acme-root"], check=True, capture_output=True)
    subprocess.run([str(LAB), "acme-dns", data_vps.name, *NAMES], check=True)
    subprocess.run(["docker", "cp", str(ROOT / "tests" / "integration" / "files" / "webhook_receiver.py"),
                    "%s:/root/webhook_receiver.py" % data_vps.name], check=True)
    receiver = data_vps.sh("rm -f %s; nohup python3 /root/webhook_receiver.py --port %d --out %s --lifetime 900 "
                           ">/dev/null 2>&1 & echo $!" % (WEBHOOK_OUT, WEBHOOK_PORT, WEBHOOK_OUT)).stdout.strip()
    path = data_vps.tmp / "observability-vars.yml"
    path.write_text(yaml.safe_dump(variables()))
    run = data_vps.playbook(str(PLAYBOOK), "-e", "@%s" % data_vps.vars_file, extra_vars=path, timeout=900)
    assert run.rc == 0, run.output[-4000:]
    # The tests start the rotation themselves: a timer's run (every 5 minutes in the lab's settings)
    # would start containers meanwhile, and one could take the address of the PostgREST a test stops,
    # which HAProxy's server line keeps.
    assert data_vps.sh("systemctl stop rotor-rotate-web.timer").returncode == 0
    yield data_vps
    data_vps.sh("kill %s; systemctl disable --now 'rotor-rotate-*.timer' rotor-certbot.timer "
                "rotor-container-metrics.timer; true" % receiver)


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


def test_a_stopped_postgrest_fires_its_tenants_alert(vps):
    postgrest = container(vps, "org.rotor.vps.tenant=demo")
    address = "docker inspect -f '{{(index .NetworkSettings.Networks \"app\").IPAddress}}' %s" % postgrest
    before = vps.sh(address).stdout.strip()
    assert not firing(vps, "PostgrestNotReady")
    assert vps.sh("docker stop -t 2 %s" % postgrest).returncode == 0
    try:
        until("PostgrestNotReady firing", lambda: firing(vps, "PostgrestNotReady", tenant="demo"))
    finally:
        assert vps.sh("docker start %s" % postgrest).returncode == 0
    # HAProxy's server line keeps the address: the restarted container must have it back.
    assert vps.sh(address).stdout.strip() == before, "Docker gave the restarted PostgREST another address"
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
