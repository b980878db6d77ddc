"""Every secret the lab runs, changed in the inventory and converged at once, under load (data_vps).

A first converge brings up a tenant (its API through HAProxy), the Docker API broker, the database
exporters and Alertmanager with a webhook receiver, all with the lab's secrets. Then one converge,
as a sysadmin would run it after editing the vault, changes every secret together: the PostgreSQL
superuser's (the previous one given as postgres_superuser_previous_password), the PgBouncer admin's
and stats user's, the HAProxy stats login, the tenant's database password and JWT secret, the
exporter's database login, the broker's token, Alertmanager's receiver token and the ACME account key
(with the lab's Pebble) - while idempotent GETs go through HAProxy to the tenant's API, none of which
may fail. Afterwards each old secret is refused and each new one accepted, by the service that checks
it: PostgreSQL and PgBouncer logins, HAProxy's stats page, PostgREST with a JWT signed with the old and
the new secret, the broker with the old and the new token, the exporters' *_up metrics, the token
Alertmanager sends, the ACME CA with the old and the new account (the certificate served unchanged).
The postgres role again, the previous password still in the inventory, changes nothing.

Grafana does not run in the lab: how its admin password is changed is checked on the rendered tasks
(tests/unit/roles/test_credentials_tasks.py). The module puts the superuser's password and PgBouncer's
users back as it found them and removes the certificate, so the next module's reset converges with
the lab's inventory.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time

import pytest
import yaml

from conftest import LAB, ROOT
from test_postgrest_spawn import jwt

sys.path.insert(0, str(ROOT / "tests" / "lab"))
import loadgen  # noqa: E402

PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "credentials.yml"
HOST = "creds.lab.test"
# A name with a certificate from the lab's ACME CA: not the API's, whose plain HTTP would then redirect to HTTPS.
ACME_HOST = "acme.creds.lab.test"
TENANT = "creds"
BROKER = "rotor-docker-api"
BROKER_NETWORKS = ("docker_api", "docker_api_cadvisor")
CLIENT_IMAGE = "busybox:1.37"
WEBHOOK_PORT = 18090
WEBHOOK_OUT = "/root/credentials-webhooks.jsonl"
ACME = "https://pebble:14000/dir"
ACCOUNTS = "/etc/rotor/certbot/config/accounts/pebble:14000/dir"
RETIRED = "/etc/rotor/certbot/config/accounts-retired/pebble:14000"
CERTBOT_IMAGE = "certbot/certbot:v4.0.0"
# HAProxy's certificate files, which the data tier's reset leaves as they are.
CERTIFICATE_FILES = "cd /etc/rotor/haproxy && sha256sum certs/* maps/https.map 2>&1"
OLD = {
    "postgres": "lab-postgres-password",
    "pgbouncer_admin": "lab-pgbouncer-admin-password",
    "pgbouncer_stats": "lab-pgbouncer-stats-password",
    "haproxy_stats": "lab-stats-password",
    "authenticator": "creds-authenticator-old",
    "jwt": "creds-jwt-secret-old-" + "o" * 24,
    "monitor": "lab-postgres-monitor-password",
    "broker": "lab-broker-token-old-0123456789abcdef0123",
    "webhook": "lab-webhook-token-old",
    "acme": "lab-acme-account-old",
}
NEW = {key: value.replace("old", "new").replace("lab-", "lab-new-", 1) for key, value in OLD.items()}
MIGRATION = [
    "CREATE TABLE api.items (id serial PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO api.items (name) VALUES ('one'), ('two')",
    "GRANT SELECT ON api.items TO creds_anon, creds_authenticated",
]


def inventory(secrets: dict, address: str) -> dict:
    """The inventory's variables that name a secret (all from ``secrets``), and what the stack needs."""
    return {
        "postgres_superuser_password": secrets["postgres"],
        "pgbouncer_admin_password": secrets["pgbouncer_admin"],
        "pgbouncer_stats_password": secrets["pgbouncer_stats"],
        "haproxy_stats_password": secrets["haproxy_stats"],
        "rotor_tenants": [{"name": TENANT, "hosts": [HOST], "authenticator_password": secrets["authenticator"],
                           "jwt_secret": secrets["jwt"], "db_pool": 4, "pool_size": 4}],
        "socket_proxy_token": secrets["broker"],
        # A certificate from the lab's ACME CA (Pebble; the lab inventory names it).
        "certbot_sites": [{"domains": [ACME_HOST]}],
        "certbot_jitter": "0",
        "certbot_account_key": secrets["acme"],
        "observability_postgres_monitor_password": secrets["monitor"],
        "observability_alert_receivers": [{"name": "test", "type": "webhook", "bearer_token": secrets["webhook"],
                                           "url": "http://%s:%d/" % (address, WEBHOOK_PORT)}],
        # Only what holds a credential runs: no Prometheus, no host-side collector timer.
        "observability_prometheus_enabled": False,
        "observability_node_exporter_enabled": False,
        "observability_cadvisor_enabled": False,
        "observability_blackbox_enabled": False,
        "observability_collector_enabled": False,
        "observability_alert_group_wait": "1s",
        "observability_alert_group_interval": "2s",
    }


class Stack:
    """The converged stack on the data VPS and the secrets it runs with (``secrets``)."""

    def __init__(self, vps, tmp):
        self.vps = vps
        self.tmp = tmp
        # Alertmanager reaches the receiver on the VPS host through the edge network's gateway (DATA_VARS).
        self.gateway = "10.232.0.1"
        self.secrets = dict(OLD)

    def converge(self, secrets: dict, *args: str, **extra):
        path = self.tmp / ("secrets-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump(dict(inventory(secrets, self.gateway), **extra)))
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
        return self.vps.http("/items", host=HOST, options=options).status

    def client(self, network: str, url: str, *options: str) -> str:
        """busybox wget from a container on ``network``: the answer's body, or its error."""
        proc = self.vps.sh("docker run --rm --network %s --entrypoint busybox %s wget -q -T 5 -O - %s %s 2>&1"
                           % (network, CLIENT_IMAGE, " ".join(shlex.quote(o) for o in options), shlex.quote(url)))
        return proc.stdout

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


def restore(stack, receiver: str) -> None:
    """The superuser's password and PgBouncer's users as the data tier's baseline has them; the certificate and
    its renewal timer, the broker and its networks go.

    The next module's reset converges the rest with the lab's inventory (it logs in with the lab's passwords).
    """
    vps = stack.vps
    run = stack.converge(stack.secrets, "--tags", "certbot", certbot_sites=[{"domains": [ACME_HOST], "state": "absent"}])
    if run.rc != 0:
        print("removing the certificate failed:\n%s" % run.output[-2000:])
    vps.sh("systemctl disable --now rotor-certbot.timer >/dev/null 2>&1; rm -rf /root/acme-probe; true")
    for password in (NEW["postgres"], OLD["postgres"]):
        proc = vps.psql("ALTER ROLE postgres PASSWORD %s" % "'%s'" % OLD["postgres"], password=password, via="postgres")
        if proc.returncode == 0:
            break
    vps.sh("cp -p %s/userlist.txt %s/userlist.txt && docker kill -s HUP %s"
           % (vps.BASELINE_DIR, vps.variables["pgbouncer_config_dir"], vps.PGBOUNCER))
    vps.sh("docker rm -f %s >/dev/null 2>&1; for n in %s; do docker network rm $n >/dev/null 2>&1; done; "
           "kill %s 2>/dev/null; true" % (BROKER, " ".join(BROKER_NETWORKS), receiver or "-0"))


@pytest.fixture(scope="module")
def stack(data_vps, tmp_path_factory):
    vps = data_vps
    stack = Stack(vps, tmp_path_factory.mktemp("credentials"))
    certificates = vps.sh(CERTIFICATE_FILES).stdout
    try:
        subprocess.run(["docker", "cp", str(ROOT / "tests" / "integration" / "files" / "webhook_receiver.py"),
                        "%s:/root/webhook_receiver.py" % vps.name], check=True)
        stack.receiver = vps.sh("rm -f %s; nohup python3 /root/webhook_receiver.py --port %d --out %s --lifetime 600 "
                                ">/dev/null 2>&1 & echo $!" % (WEBHOOK_OUT, WEBHOOK_PORT, WEBHOOK_OUT)).stdout.strip()
        subprocess.run([str(LAB), "acme-dns", vps.name, ACME_HOST], check=True)
        pulled = vps.sh("docker pull -q %s" % CLIENT_IMAGE)
        assert pulled.returncode == 0, pulled.stderr
        # The data tier's roles are converged with these secrets already (the tier's baseline).
        run = stack.converge(OLD, "--skip-tags", "tier")
        assert run.rc == 0, run.output[-4000:]
        print("the stack with the old secrets: %.1f s" % run.seconds)
        for sql in MIGRATION:
            proc = stack.psql(sql, user="postgres", password=OLD["postgres"], dbname=TENANT)
            assert proc.returncode == 0, (sql, proc.stderr)
        proc = vps.sh("docker kill -s SIGUSR1 $(docker ps -q --filter label=org.rotor.vps.tenant=%s)" % TENANT)
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 20
        while stack.api_status() != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        yield stack
    finally:
        restore(stack, getattr(stack, "receiver", ""))
        left = vps.sh(CERTIFICATE_FILES).stdout
        if left != certificates:  # the reset between modules does not touch these: a difference costs a fresh VPS
            print("HAProxy's certificates differ after the module's clean-up:\n%s\n%s" % (certificates, left))


@pytest.fixture(scope="module")
def changed(stack):
    """The converge that changes every secret, run under load; its run and the load's result."""
    assert stack.api_status(jwt(OLD["jwt"], {"role": "creds_authenticated"})) == 200
    stack.before = {"serial": stack.serial(), "accounts": stack.accounts()}
    assert stack.before["serial"].startswith("serial=") and len(stack.before["accounts"]) == 1, stack.before
    with loadgen.Background("%s:80" % stack.vps.sh("hostname -i").stdout.split()[0], host=HOST, path="/items",
                            rate=50, duration=540, count=27000, connections=4) as load:
        time.sleep(1)
        run = stack.converge(NEW, postgres_superuser_previous_password=OLD["postgres"])
        time.sleep(1)
    stack.secrets = dict(NEW)
    result = load.result.as_dict()
    print("every secret changed in one converge: %.1f s; load meanwhile: %s" % (run.seconds, result))
    assert run.rc == 0, run.output[-5000:]
    return run, result


def test_no_request_fails_while_every_secret_changes(changed):
    run, result = changed
    assert result["sent"] > 500, result
    assert result["failed"] == 0, result
    for secret in NEW.values():
        assert secret not in run.output
    for secret in OLD.values():
        assert secret not in run.output


def test_superuser_password(stack, changed):
    assert stack.logs_in(user="postgres", password=NEW["postgres"], dbname="postgres", via="postgres")
    assert not stack.logs_in(user="postgres", password=OLD["postgres"], dbname="postgres", via="postgres")
    # Nothing was relaxed for the change: every pg_hba.conf rule asks for a SCRAM password or rejects.
    rules = stack.psql("SELECT DISTINCT auth_method FROM pg_hba_file_rules", user="postgres", password=NEW["postgres"])
    assert rules.returncode == 0 and "scram-sha-256" in rules.stdout.split(), rules.stdout + rules.stderr
    assert set(rules.stdout.split()) <= {"scram-sha-256", "reject"}, rules.stdout


def test_pgbouncer_admin_and_stats_users(stack, changed):
    assert stack.admin_logs_in("pgbouncer_admin", NEW["pgbouncer_admin"])
    assert not stack.admin_logs_in("pgbouncer_admin", OLD["pgbouncer_admin"])
    assert stack.admin_logs_in("rotor_stats", NEW["pgbouncer_stats"])
    assert not stack.admin_logs_in("rotor_stats", OLD["pgbouncer_stats"])


def test_haproxy_stats_login(stack, changed):
    assert stack.stats_status(NEW["haproxy_stats"]) == 200
    assert stack.stats_status(OLD["haproxy_stats"]) == 401


def test_tenant_database_password(stack, changed):
    for via in ("pgbouncer", "postgres"):
        assert stack.logs_in(user="creds_authenticator", password=NEW["authenticator"], dbname=TENANT, via=via), via
        assert not stack.logs_in(user="creds_authenticator", password=OLD["authenticator"], dbname=TENANT, via=via), via
    # The API serves from the new login (its container was replaced with the new connection string).
    assert stack.api_status() == 200


def test_tenant_jwt_secret(stack, changed):
    assert stack.api_status(jwt(NEW["jwt"], {"role": "creds_authenticated"})) == 200
    assert stack.api_status(jwt(OLD["jwt"], {"role": "creds_authenticated"})) == 401


def test_exporters_log_in_with_their_new_credentials(stack, changed):
    assert stack.logs_in(user="rotor_monitor", password=NEW["monitor"], dbname="postgres", via="postgres")
    assert not stack.logs_in(user="rotor_monitor", password=OLD["monitor"], dbname="postgres", via="postgres")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        up = (stack.metric("rotor-postgres-exporter", 9187, "pg_up"),
              stack.metric("rotor-pgbouncer-exporter", 9127, "pgbouncer_up"))
        if up == ("1", "1"):
            break
        time.sleep(2)
    assert up == ("1", "1"), up


def test_broker_token(stack, changed):
    assert stack.broker(NEW["broker"]) == "OK"
    assert "403" in stack.broker(OLD["broker"])


def test_alertmanager_receiver_token(stack, changed):
    assert stack.alert("CredentialsChanged") == "Bearer %s" % NEW["webhook"]


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


def test_the_previous_superuser_password_left_in_the_inventory_changes_nothing(stack, changed):
    run = stack.converge(NEW, "--tags", "postgres", postgres_superuser_previous_password=OLD["postgres"])
    print("the postgres role again, the previous password still given: %.1f s" % run.seconds)
    assert run.rc == 0 and run.recap(stack.vps.name)["changed"] == 0, run.output[-4000:]
