"""postgrest_spawn against the real PostgREST, PgBouncer, PostgreSQL and HAProxy of a lab VPS (data_vps).

The tenant's database, roles and grants are made here with SQL, and its PgBouncer entry with
pgbouncer_tenant, as the tenants role does; rows are read and written through HAProxy with the
PostgREST client library tenants' applications use, sent to the lab VPS (a container the tests made).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from batch import run_module
from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError

TENANT = "shop"
HOST = "shop.lab.test"
PASSWORD = "shop-authenticator-1"
SECRET_A = "a" * 20 + "-first-jwt-secret-of-shop"
SECRET_B = "b" * 20 + "-second-jwt-secret-of-shop"
DIR = "/etc/rotor/postgrest/shop"
SETUP_SQL = [
    ("postgres", "CREATE ROLE shop_authenticator LOGIN NOINHERIT PASSWORD '%s'" % PASSWORD),
    ("postgres", "CREATE ROLE shop_anon NOLOGIN"),
    ("postgres", "CREATE ROLE shop_user NOLOGIN"),
    ("postgres", "GRANT shop_anon, shop_user TO shop_authenticator"),
    ("postgres", "CREATE DATABASE shop"),
    ("postgres", "REVOKE CONNECT ON DATABASE shop FROM PUBLIC"),
    ("postgres", "GRANT CONNECT ON DATABASE shop TO shop_authenticator"),
    ("shop", "CREATE SCHEMA api"),
    ("shop", "GRANT USAGE ON SCHEMA api TO shop_anon, shop_user"),
    ("shop", "CREATE TABLE api.items (id serial PRIMARY KEY, name text NOT NULL)"),
    ("shop", "GRANT SELECT ON api.items TO shop_anon"),
    ("shop", "GRANT SELECT, INSERT ON api.items TO shop_user"),
    ("shop", "GRANT USAGE ON SEQUENCE api.items_id_seq TO shop_user"),
    ("shop", "INSERT INTO api.items (name) VALUES ('first'), ('second'), ('third')"),
]


def jwt(secret: str, claims: dict) -> str:
    """An HS256 JWT, as a tenant's auth service would sign it."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = "%s.%s" % (part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()), part(json.dumps(claims).encode()))
    return "%s.%s" % (signing, part(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()))


class Api:
    """Runs postgrest_spawn on the VPS and reads what it made."""

    def __init__(self, vps, tmp):
        self.vps = vps
        self.tmp = tmp
        self.address = vps.sh("hostname -i").stdout.split()[0]
        # A short rate-limit period, so the rate limit test needs no long wait for earlier requests to age out.
        self.base = {"tenant": TENANT, "authenticator_password": PASSWORD, "routes": [HOST], "rate_limit_period": "2s"}

    def spawn(self, *, check: bool = False, diff: bool = False, **args) -> dict:
        return self.spawn_many([args], check=check, diff=diff)[0]

    def spawn_many(self, runs: list, *, check: bool = False, diff: bool = False) -> list:
        return run_module(self.vps, "rotor.vps.postgrest_spawn", [dict(self.base, **args) for args in runs], self.tmp,
                          check=check, diff=diff)

    def containers(self) -> list:
        """The tenant's containers: (id, name, state)."""
        out = self.vps.sh("docker ps -a --filter label=org.rotor.vps.tenant=%s --format '{{.ID}} {{.Names}} {{.State}}'"
                          % TENANT).stdout
        return sorted(tuple(line.split()) for line in out.splitlines())

    def inspect(self, name: str) -> dict:
        return json.loads(self.vps.sh("docker inspect %s" % name).stdout)[0]

    def client(self, token: str | None = None) -> SyncPostgrestClient:
        """The PostgREST client, through HAProxy's published port on the VPS, with the tenant's host name."""
        headers = {"Host": HOST}
        if token:
            headers["Authorization"] = "Bearer " + token
        return SyncPostgrestClient("http://%s:80" % self.address, schema="api", headers=headers)

    def names(self, token: str | None = None) -> list:
        with self.client(token) as client:
            return [row["name"] for row in client.from_("items").select("name").order("id").execute().data]

    def status(self, path: str, token: str | None = None) -> int:
        options = "-H %s" % ("'Authorization: Bearer %s'" % token) if token else ""
        return self.vps.http(path, host=HOST, options=options).status

    def paths(self) -> list:
        """The API's paths as PostgREST describes them (OpenAPI, from its schema cache)."""
        answer = self.vps.http("/", host=HOST)
        assert answer.status == 200, answer
        return sorted(json.loads(answer.body)["paths"])

    def state(self) -> str:
        """What a run could change: containers, files, backends, routes, limits."""
        return "\n".join([
            str(self.containers()),
            self.vps.sh("ls -ln --time-style=+%%s %s /etc/rotor/postgrest 2>&1; sha256sum %s/* 2>&1" % (DIR, DIR)).stdout,
            self.vps.haproxy_fingerprint(),
        ])


@pytest.fixture(scope="module")
def api(data_vps, tmp_path_factory):
    for dbname, sql in SETUP_SQL:
        out = data_vps.psql(sql, dbname=dbname, via="postgres")
        assert out.returncode == 0, (sql, out.stderr)
    tmp = tmp_path_factory.mktemp("postgrest")
    pool = run_module(data_vps, "rotor.vps.pgbouncer_tenant", [{
        "name": TENANT, "user": "shop_authenticator", "password": PASSWORD, "pool_size": 4, "pool_mode": "transaction",
        "admin_password": data_vps.variables["pgbouncer_admin_password"],
        "login_unix_socket": data_vps.variables["postgres_run_dir"],
        "login_password": data_vps.variables["postgres_superuser_password"]}], tmp)[0]
    assert pool.get("changed") is True, pool.get("msg")
    yield Api(data_vps, tmp)


def test_four_steps_serve_rows_and_keep_secrets(api):
    before = api.state()
    check = api.spawn(check=True, diff=True, jwt_secret=SECRET_A)
    assert check["changed"] is True, check
    assert "create the HAProxy backend (one hitless reload)" in check["actions"]
    assert "start a new container (fewer than 1 replicas)" in check["actions"]
    assert api.state() == before, "check mode changed something"

    started = time.monotonic()
    applied = api.spawn(diff=True, jwt_secret=SECRET_A)
    print("new tenant's PostgREST serving through HAProxy: %.1f s (one ansible-playbook run)" % (time.monotonic() - started))
    assert applied["changed"] is True and applied["backend"] == "tenant_shop", applied
    assert [name.startswith("postgrest-shop-") for name in applied["containers"]] == [True]
    for secret in (PASSWORD, SECRET_A):
        assert secret not in applied["_raw"] + check["_raw"]
    assert "(secret" in applied["diff"]["after"] and 'db-prepared-statements = false' in applied["diff"]["after"]

    # Rows through HAProxy, with the client library: anonymous reads; a JWT for shop_user writes.
    assert api.names() == ["first", "second", "third"]
    with api.client(jwt(SECRET_A, {"role": "shop_user"})) as client:
        inserted = client.from_("items").insert({"name": "fourth"}).execute()
    assert [row["name"] for row in inserted.data] == ["fourth"]
    with api.client() as client, pytest.raises(APIError):
        client.from_("items").insert({"name": "anonymous"}).execute()
    assert api.names() == ["first", "second", "third", "fourth"]

    # Files: the container's user owns them, 0400; the secrets only by reference in the config.
    listing = api.vps.sh("stat -c '%%a %%u %%n' %s %s/*" % (DIR, DIR)).stdout.split("\n")[:-1]
    files = ["400 1000 %s/%s" % (DIR, name) for name in ("db-uri", "jwt-secret", "postgrest.conf")]
    assert sorted(listing) == sorted(["500 1000 %s" % DIR] + files)
    config = api.vps.sh("cat %s/postgrest.conf" % DIR).stdout
    assert 'db-uri = "@/etc/postgrest/db-uri"' in config and "db-channel-enabled = false" in config
    assert PASSWORD not in config and SECRET_A not in config

    # The container: hardened, on its two networks only, no secret anywhere docker inspect shows.
    name = applied["containers"][0]
    info = api.inspect(name)
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], host
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert info["Config"]["User"] == "1000" and host["Memory"] == 64 * 1024**2 and host["PidsLimit"] == 64
    assert sorted(info["NetworkSettings"]["Networks"]) == ["app", "data"]
    assert info["Config"]["Labels"]["org.rotor.vps.tenant"] == TENANT
    assert len(info["Config"]["Labels"]["org.rotor.vps.postgrest.restart-hash"]) == 16
    shown = json.dumps([info["Config"]["Env"], info["Config"]["Labels"], info["Config"]["Cmd"], info["Args"]])
    assert PASSWORD not in shown and SECRET_A not in shown

    # HAProxy checks /ready on the admin port.
    assert "http-check send meth GET uri /ready" in api.vps.sh("cat /etc/rotor/haproxy/conf.d/tenant_shop.cfg").stdout
    stat = api.vps.runtime("show stat")
    assert any(line.startswith("tenant_shop,%s," % name) and ",UP," in line for line in stat.splitlines()), stat

    state = api.state()
    again = api.spawn(jwt_secret=SECRET_A)
    assert again["changed"] is False and again["actions"] == [], again
    assert api.state() == state
    assert api.spawn(check=True, jwt_secret=SECRET_A)["changed"] is False


def test_reloadable_change_keeps_the_container(api):
    before = api.containers()
    result = api.spawn(jwt_secret=SECRET_A, max_rows=2)
    assert result["changed"] is True and "reload the configuration in place (SIGUSR2)" in result["actions"], result
    assert api.containers() == before
    assert api.names() == ["first", "second"]
    assert api.spawn(jwt_secret=SECRET_A)["changed"] is True  # back to no row limit, again in place
    assert api.containers() == before and len(api.names()) == 4


def test_schema_cache_reload_after_ddl(api):
    api.spawn(jwt_secret=SECRET_A)
    for sql in ("CREATE TABLE api.colours (name text)", "GRANT SELECT ON api.colours TO shop_anon"):
        assert api.vps.psql(sql, dbname="shop", via="postgres").returncode == 0
    # LISTEN is off behind PgBouncer's transaction mode: the schema cache (the API description, what
    # embedding and functions need) does not know the new table until it is reloaded.
    assert "/colours" not in api.paths()
    before = api.containers()
    result = api.spawn(state="reloaded", authenticator_password=None)
    assert result["changed"] is True and result["actions"] == ["reload the schema cache (SIGUSR1)"], result
    assert "/colours" in api.paths()
    assert api.containers() == before


def test_jwt_secret_change_refuses_the_old_token_at_once(api):
    api.spawn(jwt_secret=SECRET_A)
    old, new = jwt(SECRET_A, {"role": "shop_user"}), jwt(SECRET_B, {"role": "shop_user"})
    assert api.status("/items", old) == 200 and api.status("/items", new) == 401
    before = api.containers()
    result = api.spawn(jwt_secret=SECRET_B)
    assert result["changed"] is True and "reload the configuration in place (SIGUSR2)" in result["actions"], result
    assert api.status("/items", old) == 401, "a token signed with the old secret is still accepted"
    assert api.containers() == before
    assert api.status("/items", new) == 200


def test_restart_setting_change_under_load_fails_no_request(api):
    api.spawn(jwt_secret=SECRET_B)
    before = api.containers()
    api.vps.sh("rm -f /root/load.json; nohup python3 /root/http_load.py 127.0.0.1 80 %s 6000 30 4 /items "
               "> /root/load.json 2>&1 &" % HOST)
    time.sleep(2)
    result = api.spawn(jwt_secret=SECRET_B, db_pool=4)
    assert result["changed"] is True, result
    assert [r["action"] for r in result["replacements"]] == ["replace"], result["replacements"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not api.vps.sh("cat /root/load.json").stdout.strip():
        time.sleep(1)
    load = json.loads(api.vps.sh("cat /root/load.json").stdout)
    print("requests during the replacement: %s" % load)
    assert load["ok"] > 100 and load["status"] == {} and load["errors"] == {}, load
    after = api.containers()
    assert len(after) == 1 and after != before


def test_rate_limit_changes_without_a_reload(api):
    worker = api.vps.worker_pid()
    assert api.spawn(jwt_secret=SECRET_B, db_pool=4, rate_limit=3)["changed"] is True
    time.sleep(2.5)  # earlier requests from this address leave the 2 s window
    codes = [api.status("/items") for _request in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    assert api.spawn(jwt_secret=SECRET_B, db_pool=4, rate_limit=0)["changed"] is True
    assert api.status("/items") == 200
    assert api.vps.worker_pid() == worker, "the rate limit cost a reload"


BAD = [
    ({"tenant": "Shop"}, "tenant: 'Shop' must start with a lowercase letter"),
    ({"jwt_secret": "too-short"}, "jwt_secret: must be at least 32 characters"),
    ({"settings": {"frobnicate": "1"}}, "settings.frobnicate: not a setting PostgREST 12 knows"),
    ({"routes": ["not a host"]}, "routes[0]"),
    ({"user": "postgrest"}, "user: 'postgrest' must be a numeric uid"),
]


def test_bad_input_changes_nothing(api):
    before = api.state()
    results = api.spawn_many([dict({"jwt_secret": SECRET_B, "db_pool": 4}, **case) for case, _message in BAD])
    for result, (_case, message) in zip(results, BAD):
        assert result.get("failed") is True and message in result["msg"], result.get("msg")
        assert "nothing was changed" in result["msg"]
        assert SECRET_B not in result["_raw"] and PASSWORD not in result["_raw"]
    assert api.state() == before


def test_absent_leaves_nothing_behind(api):
    api.spawn(db_pool=4)  # the generated secret this time
    assert api.vps.sh("stat -c '%a %u' /etc/rotor/postgrest/shop.jwt-secret").stdout.split() == ["600", "0"]
    result = api.spawn(state="absent", authenticator_password=None)
    assert result["changed"] is True, result
    assert api.containers() == []
    assert api.vps.sh("ls -A /etc/rotor/postgrest").stdout.strip() == ""
    assert "tenant_shop" not in api.vps.runtime("show backend")
    assert api.vps.sh("ls /etc/rotor/haproxy/conf.d/tenant_shop.cfg").returncode != 0
    assert HOST not in api.vps.sh("cat /etc/rotor/haproxy/maps/hosts.map").stdout
    assert "tenant_shop" not in api.vps.sh("cat /etc/rotor/haproxy/maps/rate_limits.map 2>/dev/null").stdout
    assert api.status("/items") == 404
    assert api.spawn(state="absent", authenticator_password=None)["changed"] is False
