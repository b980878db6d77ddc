"""Every secret of the full stack, changed in the inventory and converged at once, under load (data_vps).

The module continues on the whole platform test_observability.py converged on the data VPS (a tenant
with its API through HAProxy, the Docker API broker, the database exporters, Alertmanager with a webhook
receiver, a certificate from the lab's ACME CA, backups), or converges it the same way when it runs
alone. Then one converge, as a sysadmin would run it after editing the vault, changes every secret
together: the PostgreSQL superuser's (the previous one given as postgres_superuser_previous_password),
the PgBouncer admin's and stats user's, the HAProxy stats login, the tenant's database password and JWT
secret, the exporter's database login, the broker's token, Alertmanager's receiver token and the ACME
account key - while idempotent GETs go through HAProxy to the tenant's API, none of which may fail.
Afterwards each old secret is refused and each new one accepted, by the service that checks it:
PostgreSQL and PgBouncer logins, HAProxy's stats page, PostgREST with a JWT signed with the old and the
new secret, the broker with the old and the new token, the exporters' *_up metrics, the token
Alertmanager sends, the ACME CA with the old and the new account (the certificate served unchanged), and
a backup run with the superuser's new password. The postgres role again, the previous password still in
the inventory, changes nothing. Last, every container of the stack killed as by a crash comes back: no
reload by signal made Docker count one as stopped by hand.

Grafana does not run in the lab: how its admin password is changed is checked on the rendered tasks
(tests/unit/roles/test_credentials_tasks.py). The module runs last in the data tier: the VPS goes after it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._hardening import MANAGED_BY
from conftest import ROOT
from test_observability import NAMES, WEBHOOK_OUT, full_stack
from test_postgrest_spawn import jwt

sys.path.insert(0, str(ROOT / "tests" / "lab"))
import loadgen  # noqa: E402

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "credentials.yml"
# After test_observability.py, test_backup.py and test_socket_proxy.py, on the stack test_observability.py
# converged (full_stack() marks the VPS with "full_stack").
RUN_LAST_IN_TIER = 3
CONTINUES_ON = "full_stack"
# The web service's name and the tenant's API's, each with its certificate from the lab's ACME CA (one for both).
ACME_HOST, API_HOST = NAMES
BROKER = "rotor-docker-api"
BROKER_NETWORKS = ("docker_api", "docker_api_cadvisor")
CLIENT_IMAGE = "busybox:1.37"
ACME = "https://pebble:14000/dir"
ACCOUNTS = "/etc/rotor/certbot/config/accounts/pebble:14000/dir"
RETIRED = "/etc/rotor/certbot/config/accounts-retired/pebble:14000"
CERTBOT_IMAGE = "certbot/certbot:v4.0.0"
# Where each secret is in the inventory: a variable, or a key of the first item of a list variable.
SECRETS = {
    "postgres": ("postgres_superuser_password",),
    "pgbouncer_admin": ("pgbouncer_admin_password",),
    "pgbouncer_stats": ("pgbouncer_stats_password",),
    "haproxy_stats": ("haproxy_stats_password",),
    "authenticator": ("rotor_tenants", "authenticator_password"),
    "jwt": ("rotor_tenants", "jwt_secret"),
    "monitor": ("observability_postgres_monitor_password",),
    "broker": ("socket_proxy_token",),
    "webhook": ("observability_alert_receivers", "bearer_token"),
    "acme": ("certbot_account_key",),
}
MIGRATION = [
    "CREATE TABLE IF NOT EXISTS api.items (id serial PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO api.items (name) VALUES ('one'), ('two')",
    "GRANT SELECT ON api.items TO {tenant}_anon, {tenant}_authenticated",
]


def secret(settings: dict, key: str) -> str:
    path = SECRETS[key]
    return settings[path[0]][0][path[1]] if len(path) == 2 else settings[path[0]]


def with_secrets(settings: dict, secrets: dict) -> dict:
    """``settings`` with every secret of SECRETS from ``secrets`` (copies: ``settings`` is left as it is)."""
    changed = dict(settings)
    for key, path in SECRETS.items():
        if len(path) == 2:
            changed[path[0]] = [dict(changed[path[0]][0], **{path[1]: secrets[key]})] + changed[path[0]][1:]
        else:
            changed[path[0]] = secrets[key]
    return changed


class Stack:
    """The full stack on the data VPS: the variables it was converged with, its old and new secrets."""

    def __init__(self, vps, tmp, variables_file):
        self.vps = vps
        self.tmp = tmp
        self.variables_file = variables_file
        self.settings = yaml.safe_load(variables_file.read_text())
        everything = dict(yaml.safe_load(vps.vars_file.read_text()), **self.settings)
        self.old = {key: secret(everything, key) for key in SECRETS}
        self.new = {key: "rotated-%s-%s" % (key.replace("_", "-"), uuid.uuid4().hex) for key in SECRETS}
        self.tenant = self.settings["rotor_tenants"][0]["name"]

    def converge(self, secrets: dict, *args: str, **extra):
        path = self.tmp / ("secrets-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump(dict(with_secrets(self.settings, secrets), **extra)))
        started = time.monotonic()
        run = self.vps.playbook(str(PLAYBOOK), "-e", "@%s" % self.vps.vars_file, "-e", "@%s" % path, *args, timeout=600)
        run.seconds = time.monotonic() - started
        return run

    def psql(self, sql: str, *, user: str, password: str, dbname: str = "postgres", via: str = "postgres"):
        return self.vps.psql(sql, user=user, password=password, dbname=dbname, via=via)

    def logs_in(self, *, user: str, password: str, dbname: str, via: str) -> bool:
        proc = self.psql("SELECT 1", user=user, password=password, dbname=dbname, via=via)
        return proc.returncode == 0 and proc.stdout.strip() == "1"

    def admin_logs_in(self, user: str, password: str) -> bool:
        command = ("PGPASSWORD=%s python3 /root/pgbouncer_admin.py --socket-dir %s --port %d --user %s 'SHOW VERSION'"
                   % (shlex.quote(password), self.vps.variables["pgbouncer_run_dir"], self.vps.variables["pgbouncer_port"],
                      shlex.quote(user)))
        return self.vps.sh(command).returncode == 0

    def stats_status(self, password: str) -> int:
        proc = self.vps.sh("curl -s -o /dev/null -w '%%{http_code}' --max-time 10 -u %s http://127.0.0.1:8404/"
                           % shlex.quote("admin:" + password))
        return int(proc.stdout or 0)

    def api_status(self, token: str | None = None) -> int:
        options = "-H %s" % shlex.quote("Authorization: Bearer " + token) if token else ""
        return self.vps.http("/items", host=API_HOST, https=True, options=options).status

    def client(self, network: str, url: str, *options: str) -> str:
        """busybox wget from a container on ``network``: the answer's body, or its error."""
        proc = self.vps.sh("docker run --rm --network %s --entrypoint busybox %s wget -q -T 5 -O - %s %s 2>&1"
                           % (network, CLIENT_IMAGE, " ".join(shlex.quote(o) for o in options), shlex.quote(url)))
        return proc.stdout

    def started(self, container: str) -> str:
        return self.vps.sh("docker inspect -f '{{.State.StartedAt}}' %s" % container).stdout.strip()

    def broker(self, token: str) -> str:
        return self.client(BROKER_NETWORKS[0], "http://%s:2375/_ping" % BROKER, "--header", "Authorization: Bearer " + token)

    def metric(self, container: str, port: int, name: str) -> str:
        text = self.client("observability", "http://%s:%d/metrics" % (container, port))
        values = [line.split()[-1] for line in text.splitlines() if line.split(" ")[0] == name]
        return values[0] if values else "missing: " + text[-300:]

    def serial(self) -> str:
        """The serial of the certificate HAProxy serves for ACME_HOST."""
        return self.vps.sh("echo | openssl s_client -connect 127.0.0.1:443 -servername %s 2>/dev/null "
                           "| openssl x509 -noout -serial" % ACME_HOST).stdout.strip()

    def accounts(self) -> list:
        return self.vps.sh("ls %s 2>/dev/null; true" % ACCOUNTS).stdout.split()

    def acme_account(self, account_dir: str) -> subprocess.CompletedProcess:
        """``certbot show_account`` at the lab's CA with a copy of one account's files (the account's own key)."""
        return self.vps.sh(
            "rm -rf /root/acme-probe && mkdir -p /root/acme-probe/accounts/pebble:14000/dir && "
            "cp -a %s /root/acme-probe/accounts/pebble:14000/dir/ && docker run --rm --network host "
            "-v /root/acme-probe:/etc/letsencrypt -v /etc/rotor/certificates/acme-ca.pem:/ca.pem:ro "
            "-e REQUESTS_CA_BUNDLE=/ca.pem %s show_account --non-interactive --server %s 2>&1"
            % (shlex.quote(account_dir), CERTBOT_IMAGE, ACME))

    def webhooks(self) -> list:
        text = self.vps.sh("cat %s 2>/dev/null; true" % WEBHOOK_OUT).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def alert(self, name: str) -> str:
        """Post one alert to Alertmanager's API; the authorization its webhook notification carried."""
        body = json.dumps([{"labels": {"alertname": name, "severity": "warning"}}])
        answer = self.client("observability", "http://rotor-alertmanager:9093/api/v2/alerts",
                             "--header", "Content-Type: application/json", "--post-data", body)
        assert "rror" not in answer, answer
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hooks = [h for h in self.webhooks() for a in h["body"].get("alerts", [])
                     if a.get("labels", {}).get("alertname") == name]
            if hooks:
                return hooks[0]["authorization"]
            time.sleep(1)
        raise AssertionError("no webhook notification for %s" % name)


@pytest.fixture(scope="module")
def stack(data_vps, collection_snapshot, tmp_path_factory):
    vps = data_vps
    started = time.monotonic()
    stack = Stack(vps, tmp_path_factory.mktemp("credentials"), full_stack(vps))
    print("the full stack with the old secrets (converged here unless test_observability.py did): %.1f s"
          % (time.monotonic() - started))
    pulled = vps.sh("docker pull -q %s" % CLIENT_IMAGE)
    assert pulled.returncode == 0, pulled.stderr
    for sql in MIGRATION:
        proc = stack.psql(sql.format(tenant=stack.tenant), user="postgres", password=stack.old["postgres"],
                          dbname=stack.tenant)
        assert proc.returncode == 0, (sql, proc.stderr)
    proc = vps.signal("USR1", "$(docker ps -q --filter label=org.rotor.vps.tenant=%s)" % stack.tenant)
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 20
    while stack.api_status() != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    return stack


@pytest.fixture(scope="module")
def changed(stack):
    """The converge that changes every secret, run under load; its run and the load's result."""
    assert stack.api_status(jwt(stack.old["jwt"], {"role": stack.tenant + "_authenticated"})) == 200
    stack.before = {"serial": stack.serial(), "accounts": stack.accounts(), "broker_started": stack.started(BROKER)}
    assert stack.before["serial"].startswith("serial=") and len(stack.before["accounts"]) == 1, stack.before
    with loadgen.Background("%s:443" % stack.vps.sh("hostname -i").stdout.split()[0], host=API_HOST, path="/items",
                            rate=50, duration=540, count=27000, connections=4, tls=True) as load:
        time.sleep(1)
        run = stack.converge(stack.new, postgres_superuser_previous_password=stack.old["postgres"])
        time.sleep(1)
    result = load.result.as_dict()
    print("every secret changed in one converge: %.1f s; load meanwhile: %s" % (run.seconds, result))
    assert run.rc == 0, run.output[-5000:]
    return run, result


def test_no_request_fails_while_every_secret_changes(stack, changed):
    run, result = changed
    assert result["sent"] > 500, result
    assert result["failed"] == 0, result
    shown = [key for key in SECRETS if stack.old[key] in run.output or stack.new[key] in run.output]
    assert shown == [], shown


def test_superuser_password(stack, changed):
    assert stack.logs_in(user="postgres", password=stack.new["postgres"], dbname="postgres", via="postgres")
    assert not stack.logs_in(user="postgres", password=stack.old["postgres"], dbname="postgres", via="postgres")
    # Nothing was relaxed for the change: every pg_hba.conf rule asks for a SCRAM password or rejects.
    rules = stack.psql("SELECT DISTINCT auth_method FROM pg_hba_file_rules", user="postgres", password=stack.new["postgres"])
    assert rules.returncode == 0 and "scram-sha-256" in rules.stdout.split(), rules.stdout + rules.stderr
    assert set(rules.stdout.split()) <= {"scram-sha-256", "reject"}, rules.stdout


def test_pgbouncer_admin_and_stats_users(stack, changed):
    assert stack.admin_logs_in("pgbouncer_admin", stack.new["pgbouncer_admin"])
    assert not stack.admin_logs_in("pgbouncer_admin", stack.old["pgbouncer_admin"])
    assert stack.admin_logs_in("rotor_stats", stack.new["pgbouncer_stats"])
    assert not stack.admin_logs_in("rotor_stats", stack.old["pgbouncer_stats"])


def test_haproxy_stats_login(stack, changed):
    assert stack.stats_status(stack.new["haproxy_stats"]) == 200
    assert stack.stats_status(stack.old["haproxy_stats"]) == 401


def test_tenant_database_password(stack, changed):
    for via in ("pgbouncer", "postgres"):
        login = dict(user=stack.tenant + "_authenticator", dbname=stack.tenant, via=via)
        assert stack.logs_in(password=stack.new["authenticator"], **login), via
        assert not stack.logs_in(password=stack.old["authenticator"], **login), via
    # The API serves from the new login (its container was replaced with the new connection string).
    assert stack.api_status() == 200


def test_tenant_jwt_secret(stack, changed):
    assert stack.api_status(jwt(stack.new["jwt"], {"role": stack.tenant + "_authenticated"})) == 200
    assert stack.api_status(jwt(stack.old["jwt"], {"role": stack.tenant + "_authenticated"})) == 401


def test_exporters_log_in_with_their_new_credentials(stack, changed):
    assert stack.logs_in(user="rotor_monitor", password=stack.new["monitor"], dbname="postgres", via="postgres")
    assert not stack.logs_in(user="rotor_monitor", password=stack.old["monitor"], dbname="postgres", via="postgres")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        up = (stack.metric("rotor-postgres-exporter", 9187, "pg_up"),
              stack.metric("rotor-pgbouncer-exporter", 9127, "pgbouncer_up"))
        if up == ("1", "1"):
            break
        time.sleep(2)
    assert up == ("1", "1"), up


def test_broker_token(stack, changed):
    assert stack.broker(stack.new["broker"]) == "OK"
    assert "403" in stack.broker(stack.old["broker"])
    # The new token went live by a reload: the broker was not restarted.
    assert "Reload socket_proxy" in changed[0].output
    assert stack.started(BROKER) == stack.before["broker_started"]


def test_alertmanager_receiver_token(stack, changed):
    assert stack.alert("CredentialsChanged") == "Bearer %s" % stack.new["webhook"]


def test_acme_account_key(stack, changed):
    (old,) = stack.before["accounts"]
    (new,) = stack.accounts()
    assert new != old
    # The certificate served is the one from before: rolling the account key orders nothing.
    assert stack.serial() == stack.before["serial"]
    # The CA refuses the old account's key and knows the new one.
    (retired,) = stack.vps.sh("ls -d %s/dir.*/%s" % (RETIRED, old)).stdout.split()
    refused = stack.acme_account(retired)
    assert refused.returncode != 0 and ("deactivated" in refused.stdout or "unauthorized" in refused.stdout), refused.stdout
    accepted = stack.acme_account("%s/%s" % (ACCOUNTS, new))
    assert accepted.returncode == 0 and "Account details" in accepted.stdout, accepted.stdout


def test_a_backup_runs_with_the_new_superuser_password(stack, changed):
    proc = stack.vps.sh("systemctl start rotor-backup.service")
    assert proc.returncode == 0, stack.vps.sh("journalctl -u rotor-backup.service -n 30 --no-pager").stdout


def test_the_previous_superuser_password_left_in_the_inventory_changes_nothing(stack, changed):
    """The postgres role again with the previous password still given, and the backup role again (its second
    converge, the off-site copy configured): neither changes anything."""
    run = stack.converge(stack.new, "--tags", "postgres,backup", postgres_superuser_previous_password=stack.old["postgres"])
    print("the postgres and backup roles again, the previous password still given: %.1f s" % run.seconds)
    assert run.rc == 0 and run.recap(stack.vps.name)["changed"] == 0, run.output[-4000:]


def test_every_container_comes_back_after_a_crash(stack, changed):
    """The converges reloaded several containers by signal (PgBouncer, Alertmanager, the broker, PostgREST): none
    of them counts as stopped by hand. Each of the stack's containers, its main process killed (SIGKILL, as a
    crash), is running again, restarted by Docker."""
    vps = stack.vps
    inspected = json.loads(vps.sh("docker inspect $(docker ps -q --filter label=%s)" % MANAGED_BY).stdout)
    restarted = {c["Name"].lstrip("/"): c["RestartCount"] for c in inspected
                 if c["HostConfig"]["RestartPolicy"]["Name"] in ("always", "unless-stopped")}
    assert len(restarted) >= 10, sorted(restarted)
    pids = " ".join(str(c["State"]["Pid"]) for c in inspected if c["Name"].lstrip("/") in restarted)
    assert vps.sh("kill -9 %s" % pids).returncode == 0
    deadline = time.monotonic() + 60
    while True:
        now = json.loads(vps.sh("docker inspect %s" % " ".join(restarted)).stdout)
        back = {c["Name"].lstrip("/"): c["State"]["Running"] and c["RestartCount"] > restarted[c["Name"].lstrip("/")]
                for c in now}
        if all(back.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(back.values()), "not restarted by Docker: %s" % sorted(name for name, ok in back.items() if not ok)
