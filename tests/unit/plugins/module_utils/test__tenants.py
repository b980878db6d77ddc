"""The tenants role's rules, sizes and which tenants a converge touches."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._tenants import (
    digest,
    effective,
    merge_record,
    serving_tenants,
    tenant_jobs,
    tenants_input_errors,
)

DEFAULTS = yaml.safe_load(open("roles/tenants/defaults/main.yml"))["tenants_defaults"]
ACME = {"name": "acme", "authenticator_password": "acme-pw", "hosts": ["acme.example.com"]}
BETA = {"name": "beta", "authenticator_password": "beta-pw", "hosts": ["beta.example.com"], "vps": "vps2"}


def settings(tenants, **extra) -> dict:
    return dict({"tenants_list": tenants, "tenants_defaults": DEFAULTS, "tenants_client_headroom": 2,
                 "postgres_tenant_connection_budget": 100, "pgbouncer_max_client_conn": 1000}, **extra)


def test_valid_tenants_pass():
    assert tenants_input_errors(settings([ACME, BETA, {"name": "gone", "state": "absent"}]), host="vps1") == []


BAD = [
    ([dict(ACME, name="Acme")], "rotor_tenants[0].name: 'Acme' must start with a lowercase letter"),
    ([dict(ACME, name="a" * 49)], "rotor_tenants[0].name: '" + "a" * 49 + "' is longer than 48 characters"),
    ([dict(ACME, colour="blue")], "rotor_tenants[0]: unknown key(s) colour"),
    ([dict(ACME, state="gone")], "rotor_tenants[0].state: 'gone' must be one of present, absent"),
    ([{"name": "acme"}], "rotor_tenants[0].authenticator_password: required when state is present"),
    ([dict(ACME, jwt_secret="short")], "rotor_tenants[0].jwt_secret: must be at least 32 characters"),
    ([dict(ACME, settings={"frobnicate": 1})], "rotor_tenants[0].settings.frobnicate: not a setting PostgREST 12 knows"),
    ([dict(ACME, hosts=["not a host"])], "rotor_tenants[0].hosts[0]"),
    ([dict(ACME, schemas=["Api"])], "rotor_tenants[0].schemas[0]: 'Api' must start with a lowercase letter"),
    ([dict(ACME, pool_size=0)], "rotor_tenants[0].pool_size"),
    ([dict(ACME, db_pool="many")], "rotor_tenants[0]"),
    ([ACME, dict(ACME, hosts=[])], "rotor_tenants[1]: name 'acme' is already used by rotor_tenants[0]"),
    ([ACME, dict(BETA, hosts=["acme.example.com"])], "host name 'acme.example.com' is already used by rotor_tenants[0]"),
    ("acme", "rotor_tenants: must be a list of tenants"),
]


@pytest.mark.parametrize("tenants,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_tenants_are_named_with_their_rule(tenants, message):
    errors = tenants_input_errors(settings(tenants), host="vps1")
    assert any(message in error for error in errors), errors


def test_a_rotated_services_host_name_is_not_a_tenants():
    errors = tenants_input_errors(settings([ACME]), host="vps1", rotation_hosts=["acme.example.com"])
    assert errors == ["rotor_tenants[name=acme].hosts: 'acme.example.com' is already a rotated service's host name "
                      "(rotation_services)"]


def test_pools_must_fit_postgres_budget_on_each_host():
    tenants = [dict(ACME, name="t%02d" % n, hosts=[], pool_size=10) for n in range(11)]
    errors = tenants_input_errors(settings(tenants), host="vps1")
    assert errors == ["rotor_tenants: the tenants' PgBouncer pools (pool_size + reserve_pool) need 110 server "
                      "connections, over postgres_tenant_connection_budget (100); lower the pools or raise the budget"]
    # The same tenants spread over two servers fit.
    spread = [dict(t, vps="vps1" if n % 2 else "vps2") for n, t in enumerate(tenants)]
    assert tenants_input_errors(settings(spread), host="vps1") == []


def test_postgrest_pools_must_fit_pgbouncer_clients_with_headroom():
    tenants = [dict(ACME, name="t%02d" % n, hosts=[], pool_size=1, db_pool=50) for n in range(11)]
    errors = tenants_input_errors(settings(tenants), host="vps1")
    assert errors == ["rotor_tenants: the tenants' PostgREST pools (db_pool) times tenants_client_headroom (2) need "
                      "1100 PgBouncer client connections, over pgbouncer_max_client_conn (1000)"]


def test_one_hundred_tenants_of_the_example_inventory_fit():
    inventory = yaml.safe_load(open("inventories/example/group_vars/vps/main.yml"))
    sizes = {key: inventory[key] for key in ("postgres_tenant_connection_budget", "pgbouncer_max_client_conn")}
    tenants = [dict(ACME, name="t%03d" % n, hosts=["t%03d.example.com" % n]) for n in range(100)]
    assert tenants_input_errors(settings(tenants, **sizes), host="vps1") == []
    assert tenants_input_errors(settings(tenants + [dict(ACME, name="t100", hosts=[])], **sizes), host="vps1") != []


def test_only_changed_or_stopped_tenants_are_jobs():
    tenants = [ACME, dict(BETA, vps="vps1"), {"name": "gone", "state": "absent"}]
    first = tenant_jobs(tenants, DEFAULTS, "vps1", {}, [])
    assert [job["name"] for job in first["jobs"]] == ["acme", "beta"]
    assert sorted(first["applied"]) == ["acme", "beta"]
    assert first["nologin_roles"] == ["acme_anon", "acme_authenticated", "beta_anon", "beta_authenticated"]
    assert {"database": "acme", "role": "PUBLIC", "state": "absent"} in first["connect"]
    assert all("pw" not in str(first[key]) for key in ("nologin_roles", "connect", "schemas"))
    # Unchanged and running: nothing to do.
    again = tenant_jobs(tenants, DEFAULTS, "vps1", first["applied"], ["acme", "beta"])
    assert again["jobs"] == [] and again["applied"] == first["applied"]
    # A changed setting, a stopped container, or a full check.
    changed = [dict(ACME, rate_limit=10), dict(BETA, vps="vps1")]
    assert [j["name"] for j in tenant_jobs(changed, DEFAULTS, "vps1", first["applied"], ["acme", "beta"])["jobs"]] == ["acme"]
    assert [j["name"] for j in tenant_jobs(tenants, DEFAULTS, "vps1", first["applied"], ["acme"])["jobs"]] == ["beta"]
    assert len(tenant_jobs(tenants, DEFAULTS, "vps1", first["applied"], ["acme", "beta"], full=True)["jobs"]) == 3


def test_absent_tenants_are_jobs_while_something_of_them_is_left_and_leave_the_record():
    applied = {"acme": digest(effective(ACME, DEFAULTS)), "other": "x"}
    result = tenant_jobs([dict(ACME, state="absent")], DEFAULTS, "vps1", applied, [])
    assert [job["name"] for job in result["jobs"]] == ["acme"]
    assert result["applied"] == {"other": "x"}, "another tenant's record must stay"
    assert tenant_jobs([dict(ACME, state="absent")], DEFAULTS, "vps1", {}, [])["jobs"] == []


def test_the_changes_turn_any_earlier_record_into_the_new_one():
    """A full check does not read the record: its changes, merged on the host, keep the others' entries."""
    applied = {"acme": "old", "other": "x"}
    tenants = [ACME, {"name": "beta", "state": "absent"}]
    result = tenant_jobs(tenants, DEFAULTS, "vps1", applied, ["acme"])
    assert result["changes"] == {"set": {"acme": digest(effective(ACME, DEFAULTS))}, "drop": ["beta"]}
    assert result["applied"] == merge_record(applied, result["changes"]) == {"acme": result["changes"]["set"]["acme"],
                                                                             "other": "x"}
    unread = tenant_jobs(tenants, DEFAULTS, "vps1", {}, [], full=True)
    assert unread["changes"] == result["changes"]
    assert merge_record({"beta": "b", "other": "x"}, unread["changes"]) == result["applied"]


def test_a_tenant_of_another_server_is_not_this_ones():
    assert tenant_jobs([BETA], DEFAULTS, "vps1", {}, [])["jobs"] == []
    assert [j["name"] for j in tenant_jobs([BETA], DEFAULTS, "vps2", {}, [])["jobs"]] == ["beta"]


STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,addr\n"
    "tenant_alpha,postgrest-alpha-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,10.0.1.4:3000\n"
    "tenant_alpha,BACKEND,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,\n"
    "tenant_beta,postgrest-beta-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,10.0.1.5:3000\n"
    "tenant_beta,BACKEND,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,\n"
    "tenant_gamma,postgrest-gamma-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2,10.0.1.7:3000\n"
    "tenant_delta,postgrest-delta-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,10.0.1.8:3000\n"
    "web,web-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,10.0.1.6:8080\n"
)


def test_serving_tenants_are_those_with_a_server_not_down():
    assert serving_tenants(STAT) == ["alpha", "delta", "gamma"]


def test_a_tenant_that_runs_but_serves_nothing_is_a_job():
    tenants = [{"name": "alpha", "authenticator_password": "a" * 12}, {"name": "beta", "authenticator_password": "b" * 12}]
    first = tenant_jobs(tenants, {}, "vps", {}, [])
    applied = first["applied"]
    # Both run and were applied: with no stat, nothing to do; with one, beta (DOWN) is a job.
    assert tenant_jobs(tenants, {}, "vps", applied, ["alpha", "beta"])["jobs"] == []
    assert [j["name"] for j in tenant_jobs(tenants, {}, "vps", applied, ["alpha", "beta"], serving=["alpha"])["jobs"]] == ["beta"]
