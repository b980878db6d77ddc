"""The tenants role and playbooks/tenant.yml on a data_vps: real PostgreSQL, PgBouncer, PostgREST and HAProxy.

Two tenants are converged once; the tests read and write their rows through HAProxy with the
PostgREST client library, try to cross from one tenant into the other, change tenants with
tenant.yml (one added under load on another), and remove one with purge.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError
from test_postgrest_spawn import jwt

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "tenants.yml"
SECRETS = {"alpha": "alpha-jwt-secret-" + "a" * 24, "beta": "beta-jwt-secret-" + "b" * 24}
TENANTS = [
    {"name": "alpha", "hosts": ["alpha.lab.test"], "authenticator_password": "alpha-auth-pw",
     "jwt_secret": SECRETS["alpha"], "rate_limit_period": "2s"},
    {"name": "beta", "hosts": ["beta.lab.test"], "authenticator_password": "beta-auth-pw",
     "jwt_secret": SECRETS["beta"], "pool_size": 3, "db_pool": 3},
]
# What a tenant's migration would do: a table its roles may read (anon) and write (authenticated), and
# one they were granted nothing on.
MIGRATION = [
    "CREATE TABLE api.items (id serial PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE api.hidden (secret text)",
    "INSERT INTO api.items (name) VALUES ('one'), ('two')",
    "GRANT SELECT ON api.items TO {t}_anon, {t}_authenticated",
    "GRANT INSERT ON api.items TO {t}_authenticated",
    "GRANT USAGE ON SEQUENCE api.items_id_seq TO {t}_authenticated",
]


class Platform:
    def __init__(self, vps, tmp):
        self.vps = vps
        self.tmp = tmp
        self.address = vps.sh("hostname -i").stdout.split()[0]

    def converge(self, tenants: list, *args: str):
        path = self.tmp / ("tenants-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump({"rotor_tenants": tenants}))
        return self.vps.playbook(str(PLAYBOOK), "-e", "@%s" % self.vps.vars_file, "-e", "@%s" % path, *args)

    def tenant_playbook(self, *args: str):
        return self.vps.playbook("tenant.yml", "-e", "@%s" % self.vps.vars_file, *args)

    def client(self, tenant: str, token: str | None = None) -> SyncPostgrestClient:
        headers = {"Host": "%s.lab.test" % tenant}
        if token:
            headers["Authorization"] = "Bearer " + token
        return SyncPostgrestClient("http://%s:80" % self.address, schema="api", headers=headers)

    def names(self, tenant: str, token: str | None = None) -> list:
        with self.client(tenant, token) as client:
            return [row["name"] for row in client.from_("items").select("name").order("id").execute().data]

    def status(self, tenant: str, path: str, token: str | None = None) -> int:
        options = "-H 'Authorization: Bearer %s'" % token if token else ""
        return self.vps.http(path, host="%s.lab.test" % tenant, options=options).status

    def migrate(self, tenant: str) -> None:
        """Run the tenant's migration, then reload its PostgREST's schema cache (writes need it)."""
        for sql in MIGRATION:
            out = self.vps.psql(sql.format(t=tenant), dbname=tenant, via="postgres")
            assert out.returncode == 0, (sql, out.stderr)
        out = self.vps.signal("USR1", "$(docker ps -q --filter label=org.rotor.vps.tenant=%s)" % tenant)
        assert out.returncode == 0, out.stderr

    def state(self) -> str:
        """What a run could change, on every tier."""
        return "\n".join([self.vps.fingerprint(), self.vps.sh(
            "docker ps --filter label=org.rotor.vps.tenant --format '{{.Names}} {{.Label \"org.rotor.vps.tenant\"}}' "
            "| sort; sha256sum /etc/rotor/tenants/applied.json 2>&1").stdout])


@pytest.fixture(scope="module")
def platform(data_vps, tmp_path_factory):
    platform = Platform(data_vps, tmp_path_factory.mktemp("tenants"))
    started = time.monotonic()
    run = platform.converge(TENANTS)
    assert run.rc == 0, run.output[-4000:]
    print("two new tenants converged: %.1f s" % (time.monotonic() - started))
    for tenant in ("alpha", "beta"):
        platform.migrate(tenant)
    return platform


def test_rows_through_haproxy_with_the_client_library(platform):
    assert platform.names("alpha") == ["one", "two"]
    with platform.client("alpha", jwt(SECRETS["alpha"], {"role": "alpha_authenticated"})) as client:
        assert [r["name"] for r in client.from_("items").insert({"name": "three"}).execute().data] == ["three"]
    assert platform.names("alpha") == ["one", "two", "three"]
    assert platform.names("beta") == ["one", "two"], "a write to alpha showed in beta"
    with platform.client("alpha") as client, pytest.raises(APIError):
        client.from_("items").insert({"name": "anonymous"}).execute()


def test_tenants_are_isolated(platform):
    token = jwt(SECRETS["alpha"], {"role": "alpha_authenticated"})
    assert platform.status("alpha", "/items", token) == 200
    assert platform.status("beta", "/items", token) == 401, "beta accepted a token signed with alpha's secret"
    # A token naming the other tenant's role, signed with the tenant's own secret: the role is not its.
    assert platform.status("alpha", "/items", jwt(SECRETS["alpha"], {"role": "beta_authenticated"})) in (400, 401, 403)
    # alpha's authenticator reaches neither beta's database through PgBouncer nor PostgreSQL itself.
    for via in ("pgbouncer", "postgres"):
        cross = platform.vps.psql("SELECT 1", user="alpha_authenticator", password="alpha-auth-pw", dbname="beta", via=via)
        assert cross.returncode != 0, via
        assert "permission denied" in cross.stderr or "not allowed" in cross.stderr or "no such" in cross.stderr, (
            via, cross.stderr)
        own = platform.vps.psql("SELECT 1", user="alpha_authenticator", password="alpha-auth-pw", dbname="alpha", via=via)
        assert own.returncode == 0 and own.stdout.strip() == "1", (via, own.stderr)
    # The anonymous role reads only what it was granted.
    assert platform.status("alpha", "/hidden") in (401, 403)
    # Anyone else: no CONNECT on a tenant's database.
    public = platform.vps.psql("SELECT has_database_privilege('public', 'alpha', 'CONNECT')", via="postgres")
    assert public.stdout.strip() == "f", public.stderr


def test_second_converge_touches_nothing(platform):
    before = platform.state()
    started = time.monotonic()
    run = platform.converge(TENANTS)
    took = time.monotonic() - started
    assert run.rc == 0 and run.recap(platform.vps.name)["changed"] == 0, run.output[-3000:]
    # (How many tenants the record holds depends on what the tier's earlier modules left in it.)
    assert "0 tenant(s) to check or change: none (" in run.output, run.output[-3000:]
    check = platform.converge(TENANTS, "--check")
    assert check.rc == 0 and check.recap(platform.vps.name)["changed"] == 0, check.output[-3000:]
    assert platform.state() == before
    print("second converge of two unchanged tenants: %.1f s" % took)


def test_bad_input_changes_nothing(platform):
    before = platform.state()
    cases = [
        ([dict(TENANTS[0], name="Alpha")], "rotor_tenants[0].name: 'Alpha' must start with a lowercase letter"),
        ([dict(TENANTS[0], jwt_secret="short")], "rotor_tenants[0].jwt_secret: must be at least 32 characters"),
        ([dict(TENANTS[0], settings={"frobnicate": 1})], "rotor_tenants[0].settings.frobnicate"),
        ([dict(TENANTS[0], hosts=["not a host"])], "rotor_tenants[0].hosts[0]"),
        ([dict(TENANTS[0], pool_size=300)], "over postgres_tenant_connection_budget"),
    ]
    for tenants, message in cases:
        run = platform.converge(tenants)
        assert run.rc != 0 and message in run.output, (message, run.output[-2000:])
        for secret in ("alpha-auth-pw", SECRETS["alpha"]):
            assert secret not in run.output
    assert platform.state() == before


def start_load(vps, tenant: str) -> None:
    """Bounded load on a tenant (at most 4,000 requests in 20 s), from the VPS's 127.0.0.1 through HAProxy."""
    vps.sh("rm -f /root/load.json; nohup python3 /root/http_load.py 127.0.0.1 80 %s.lab.test 4000 20 4 /items "
           "> /root/load.json 2>&1 &" % tenant)
    time.sleep(1)


def load_result(vps) -> dict:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not vps.sh("cat /root/load.json").stdout.strip():
        time.sleep(1)
    return json.loads(vps.sh("cat /root/load.json").stdout)


def test_tenant_playbook_adds_one_under_load_and_reloads_its_schema(platform):
    vps = platform.vps
    start_load(vps, "beta")
    started = time.monotonic()
    run = platform.tenant_playbook("-e", "tenant_name=gamma", "-e", "tenant_hosts=gamma.lab.test",
                                   "-e", "tenant_authenticator_password=gamma-auth-pw")
    took = time.monotonic() - started
    assert run.rc == 0, run.output[-3000:]
    assert "Tenant gamma answers at https://gamma.lab.test/" in run.output
    assert "gamma-auth-pw" not in run.output
    load = load_result(vps)
    print("tenant.yml adding gamma: %.1f s; beta meanwhile: %s" % (took, load))
    assert load["ok"] > 100 and load["status"] == {} and load["errors"] == {}, load
    assert platform.status("gamma", "/") == 200
    # DDL: the new function is unknown to PostgREST until the schema cache is reloaded.
    for sql in ("CREATE FUNCTION api.answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
                "GRANT EXECUTE ON FUNCTION api.answer() TO gamma_anon"):
        assert vps.psql(sql, dbname="gamma", via="postgres").returncode == 0
    assert platform.status("gamma", "/rpc/answer") == 404
    run = platform.tenant_playbook("-e", "tenant_name=gamma", "-e", "tenant_state=reloaded")
    assert run.rc == 0, run.output[-3000:]
    assert platform.status("gamma", "/rpc/answer") == 200


def test_absent_with_purge_removes_one_tenant_and_keeps_the_others(platform):
    vps = platform.vps
    start_load(vps, "beta")
    run = platform.tenant_playbook("-e", "tenant_name=gamma", "-e", "tenant_state=absent", "-e", "tenant_purge=true")
    assert run.rc == 0, run.output[-3000:]
    assert "Tenant gamma removed" in run.output
    load = load_result(vps)
    print("tenant.yml removing gamma; beta meanwhile: %s" % load)
    assert load["ok"] > 100 and load["status"] == {} and load["errors"] == {}, load
    assert vps.psql("SELECT count(*) FROM pg_database WHERE datname = 'gamma'", via="postgres").stdout.strip() == "0"
    assert vps.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'gamma%'", via="postgres").stdout.strip() == "0"
    assert "gamma" not in vps.admin("SHOW DATABASES").stdout
    assert platform.status("gamma", "/") == 404
    assert platform.names("alpha") == ["one", "two", "three"]
    # Without purge the database stays: remove the others that way, which also leaves the VPS clean for the next module.
    run = platform.converge([dict(t, state="absent") for t in TENANTS])
    assert run.rc == 0, run.output[-3000:]
    assert vps.psql("SELECT count(*) FROM pg_database WHERE datname IN ('alpha', 'beta')", via="postgres").stdout.strip() == "2"
    assert vps.sh("docker ps -q --filter label=org.rotor.vps.tenant").stdout.strip() == ""
