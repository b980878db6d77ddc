"""pgbouncer_tenant's pure parts: input rules, verifier choice, plan, budget, diff, live check; apply with doubles."""

from __future__ import annotations

import dataclasses
import os

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._atomic_file import FileState
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import IniError, databases, userlist_entries
from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_tenant import (
    BudgetError,
    Observed,
    Settings,
    Tenant,
    TenantError,
    backup,
    diff,
    entry_connections,
    input_errors,
    live_mismatch,
    make_plan,
)
from ansible_collections.rotor.vps.plugins.module_utils._scram import make_verifier, verifier_matches

SALT = b"0123456789abcdef"
V_PW = make_verifier("pw", salt=SALT)
V_PW_OTHER_SALT = make_verifier("pw", salt=b"fedcba9876543210")
V_OTHER = make_verifier("other", salt=SALT)

PARAMS = dict(name="acme", state="present", database=None, user=None, password="pw", verifier=None,
              host="rotor-postgres", port=5432, pool_size=5, reserve_pool=1, max_db_connections=0,
              pool_mode="transaction", options={}, config="/etc/rotor/pgbouncer/databases.ini",
              userlist="/etc/rotor/pgbouncer/userlist.txt", backup_keep=5, max_connections=None,
              connection_reserve=10, default_pool_size=20)


def settings(**overrides) -> Settings:
    values = dict(name="acme", state="present", database="acme", user="acme", password="pw", verifier=None,
                  host="rotor-postgres", port=5432, pool_size=5, reserve_pool=1, max_db_connections=0,
                  pool_mode="transaction", options={}, config="/c/databases.ini", userlist="/c/userlist.txt",
                  backup_keep=5, reload=True, set_role_password=True, max_connections=None, connection_reserve=10,
                  default_pool_size=20, lock_timeout=5)
    values.update(overrides)
    return Settings(**values)


FRESH = make_verifier("pw", salt=b"freshfreshfresh!")


def fresh(password: str) -> str:
    return make_verifier(password, salt=b"freshfreshfresh!")


# --- input rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"name": 'ac"me'}, "name: 'ac\"me' must start with a lowercase letter"),
    ({"name": "ac me"}, "name: 'ac me' must start with a lowercase letter"),
    ({"name": "acme\n"}, "must start with a lowercase letter"),
    ({"name": "ac;me"}, "must start with a lowercase letter"),
    ({"name": "ac=me"}, "must start with a lowercase letter"),
    ({"name": "Acme"}, "must start with a lowercase letter"),
    ({"name": "a" * 64}, "is longer than 63 characters"),
    ({"name": "pgbouncer"}, "'pgbouncer' is reserved"),
    ({"user": "postgres"}, "user: 'postgres' is reserved"),
    ({"database": "9db"}, "database: '9db' must start with a lowercase letter"),
    ({"pool_size": 0}, "pool_size: 0 must be a whole number of at least 1"),
    ({"reserve_pool": -1}, "reserve_pool: -1 must be a whole number of at least 0"),
    ({"port": 70000}, "port: 70000 must be a whole number from 1 to 65535"),
    ({"host": "bad host"}, "host"),
    ({"host": "/var/run/pg sql"}, "host: '/var/run/pg sql' must be a host name, or the absolute path"),
    ({"host": "/var/run/../tmp"}, "no '.' or '..' components"),
    ({"host": "/var/run/postgresql/"}, "must be a host name, or the absolute path of PostgreSQL's socket directory"),
    ({"host": "/"}, "must be a host name, or the absolute path"),
    ({"password": None}, "password or verifier: one is required with state=present"),
    ({"password": ""}, "password: must not be empty"),
    ({"password": None, "verifier": "plaintext"}, "verifier: must be a SCRAM-SHA-256 verifier"),
    ({"options": {"pool_size": 3}}, "options: 'pool_size' is set by its own option"),
    ({"options": {"password": "x"}}, "options: 'password' is not allowed"),
    ({"options": {"Bad-Key": "x"}}, "options: setting name 'Bad-Key' must be"),
    ({"options": {"application_name": "a\nb"}}, "must be one line of printable characters"),
    ({"options": {"application_name": True}}, "must be a string or a whole number"),
    ({"config": "relative.ini"}, "config: 'relative.ini' must be an absolute path"),
    ({"userlist": "/etc/rotor/pgbouncer/databases.ini"}, "config and userlist: must be two different files"),
])
def test_input_errors_name_the_option_and_rule(overrides, message):
    errors = input_errors(dict(PARAMS, **overrides))
    assert any(message in error for error in errors), errors


def test_valid_input_and_absent_without_password():
    assert input_errors(PARAMS) == []
    assert input_errors(dict(PARAMS, state="absent", password=None)) == []
    assert input_errors(dict(PARAMS, options={"application_name": "it's app", "connect_query": "SELECT 1"})) == []


@pytest.mark.parametrize("host", ["/var/run/postgresql", "/run/pg-17.main", "rotor-postgres", "10.0.0.5"])
def test_host_is_a_name_or_a_socket_directory(host):
    assert input_errors(dict(PARAMS, host=host)) == []


def test_socket_directory_host_is_written_unquoted():
    plan = make_plan(settings(host="/var/run/postgresql"), Observed(CONFIG, ""))
    assert "acme = host=/var/run/postgresql port=5432 dbname=acme" in plan.config_text


CONNECTION = dict(admin_host="/var/lib/rotor/pgbouncer/run", admin_user="pgbouncer_admin", admin_password="admin pw",
                  log_container="rotor-pgbouncer", docker_host="unix:///var/run/docker.sock", login_unix_socket=None,
                  login_host=None, login_user="postgres", login_password=None, login_db="postgres")


@pytest.mark.parametrize("overrides,message", [
    ({"admin_host": "/var/lib/rotor/pgbouncer/run;id"},
     "admin_host: '/var/lib/rotor/pgbouncer/run;id' must be a host name, or the absolute path of PgBouncer's socket "
     "directory"),
    ({"admin_host": "bad host"}, "admin_host: 'bad host' must be a lowercase host name"),
    ({"admin_user": 'admin"; DROP ROLE x; --'}, "admin_user: 'admin\"; DROP ROLE x; --' must be a PostgreSQL name"),
    ({"login_user": "postgres--"}, "login_user: 'postgres--' must be a PostgreSQL name"),
    ({"login_db": "postgres$$"}, "login_db: 'postgres$$' must be a PostgreSQL name"),
    ({"log_container": "rotor pgbouncer"}, "log_container: 'rotor pgbouncer' must start with a letter or digit"),
    ({"docker_host": "unix://docker.sock"}, "docker_host: 'unix://docker.sock' must be unix:///<absolute path"),
    ({"login_unix_socket": "/run/pg/../x"}, "login_unix_socket: '/run/pg/../x' must be an absolute path"),
    ({"login_host": "db.example.com\nx"}, "login_host: 'db.example.com\\nx' must be a lowercase host name"),
    ({"admin_password": "pw\x00"}, "admin_password: must not contain a NUL character (the value is not shown)"),
    ({"password": "pw\x00"}, "password: must not contain a NUL character (the value is not shown)"),
    ({"config": "/etc/rotor/pgbouncer/databases.ini\x00"}, "config: '/etc/rotor/pgbouncer/databases.ini\\x00' must be"),
    ({"options": {"application_name": "a\x1bb"}}, "options.application_name: must be one line of printable characters"),
])
def test_connection_names_and_paths_are_plain(overrides, message):
    assert input_errors(dict(PARAMS, **CONNECTION)) == []
    assert input_errors(dict(PARAMS, **dict(CONNECTION, log_container="", login_host="::1"))) == []
    errors = input_errors(dict(PARAMS, **dict(CONNECTION, **overrides)))
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_secret_values_are_never_echoed():
    errors = input_errors(dict(PARAMS, password=None, verifier="hunter2-secret"))
    assert errors and not any("hunter2" in error for error in errors)


# --- verifier choice and plan --------------------------------------------------------------------

CONFIG = "; tenants\n[databases]\nother = host=rotor-postgres dbname=other pool_size=3\n"


@pytest.mark.parametrize("stored, listed, want_userlist, want_postgres", [
    # PostgreSQL's verifier holds the password: reuse it everywhere, nothing to set.
    (V_PW, None, V_PW, None),
    # Both hold it with different salts: PostgreSQL's wins (clients log in with it through PgBouncer).
    (V_PW, V_PW_OTHER_SALT, V_PW, None),
    # Only the userlist holds it: keep it and give PostgreSQL the same one.
    (V_OTHER, V_PW, V_PW, V_PW),
    # Neither: a fresh verifier for both.
    (V_OTHER, V_OTHER, FRESH, FRESH),
    (None, None, FRESH, FRESH),
])
def test_verifier_choice(stored, listed, want_userlist, want_postgres):
    userlist = '"acme" "%s"\n' % listed if listed else ""
    observed = Observed(CONFIG, userlist, postgres_checked=True, role_exists=True, stored_verifier=stored)
    plan = make_plan(settings(), observed, new_verifier=fresh)
    assert userlist_entries(plan.userlist_text)["acme"] == want_userlist
    assert plan.set_postgres_verifier == want_postgres


def test_without_postgres_the_userlist_verifier_is_kept_and_postgres_untouched():
    observed = Observed(CONFIG, '"acme" "%s"\n' % V_PW)
    plan = make_plan(settings(), observed, new_verifier=fresh)
    assert plan.userlist_text == observed.userlist_text
    assert plan.set_postgres_verifier is None


def test_given_verifier_is_used_as_is_and_set_role_password_false_only_warns():
    observed = Observed(CONFIG, "", postgres_checked=True, role_exists=True, stored_verifier=V_OTHER)
    plan = make_plan(settings(password=None, verifier=V_PW, set_role_password=False), observed)
    assert userlist_entries(plan.userlist_text)["acme"] == V_PW
    assert plan.set_postgres_verifier is None
    assert any("set_role_password is false" in warning for warning in plan.warnings)


def test_missing_role_is_a_warning_and_nothing_is_set_in_postgres():
    observed = Observed(CONFIG, "", postgres_checked=True, role_exists=False)
    plan = make_plan(settings(), observed, new_verifier=fresh)
    assert plan.set_postgres_verifier is None
    assert any("no role acme" in warning for warning in plan.warnings)


def test_plan_adds_entry_keeps_other_bytes_and_is_idempotent():
    observed = Observed(CONFIG, '"acme" "%s"\n' % V_PW)
    plan = make_plan(settings(options={"application_name": "acme api"}), observed, new_verifier=fresh)
    assert plan.config_text.startswith(CONFIG)
    assert databases(plan.config_text)["acme"] == {
        "host": "rotor-postgres", "port": "5432", "dbname": "acme", "pool_size": "5", "reserve_pool": "1",
        "pool_mode": "transaction", "application_name": "acme api"}
    assert plan.changes(observed)
    assert plan.actions[0].startswith("add database acme in /c/databases.ini")
    again = Observed(plan.config_text, plan.userlist_text)
    second = make_plan(settings(options={"application_name": "acme api"}), again, new_verifier=fresh)
    assert not second.changes(again) and second.actions == []


def test_absent_removes_both_lines_only():
    config = CONFIG + "acme = host=rotor-postgres dbname=acme pool_size=5\n"
    userlist = '; users\n"acme" "%s"\n"other" "%s"\n' % (V_PW, V_OTHER)
    observed = Observed(config, userlist)
    plan = make_plan(settings(state="absent", password=None), observed)
    assert plan.config_text == CONFIG
    assert plan.userlist_text == '; users\n"other" "%s"\n' % V_OTHER
    assert [action.split(" ")[0] for action in plan.actions] == ["remove", "remove", "reload"]
    gone = Observed(plan.config_text, plan.userlist_text)
    assert not make_plan(settings(state="absent", password=None), gone).changes(gone)


def test_corrupt_files_are_refused():
    with pytest.raises(IniError, match="line 3"):
        make_plan(settings(), Observed("[databases]\nok = host=x\nbroken line\n", ""))
    with pytest.raises(IniError, match="line 1"):
        make_plan(settings(), Observed(CONFIG, "acme plaintext\n"))


# --- connection budget ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, connections", [
    ({"pool_size": "5", "reserve_pool": "2"}, 7),
    ({"pool_size": "5", "reserve_pool_size": "3"}, 8),
    ({"pool_size": "5", "reserve_pool": "2", "max_db_connections": "6"}, 6),
    ({}, 20),
    ({"reserve_pool": "1"}, 21),
])
def test_entry_connections(value, connections):
    assert entry_connections(value, 20) == connections


def test_budget_refuses_growth_over_the_limit_and_allows_shrinking():
    # other: 3, acme: 5 + 1 = 6; limit 20 - 10 = 10 with max_connections 20.
    observed = Observed(CONFIG, "")
    plan = make_plan(settings(max_connections=20), observed, new_verifier=fresh)
    assert plan.budget == {"used": 9, "tenants": 2, "max_connections": 20, "reserve": 10, "limit": 10}
    with pytest.raises(BudgetError, match="would use 11 server connections .* leaves 10"):
        make_plan(settings(max_connections=20, pool_size=7), observed, new_verifier=fresh)
    over = Observed(CONFIG + "acme = host=x dbname=acme pool_size=30\n", "")
    shrink = make_plan(settings(max_connections=20, pool_size=20), over, new_verifier=fresh)
    assert shrink.budget["used"] > shrink.budget["limit"]
    absent = make_plan(settings(max_connections=20, state="absent", password=None), over)
    assert absent.budget["used"] == 3


def test_budget_uses_postgres_max_connections_when_not_given():
    observed = Observed(CONFIG, "", postgres_checked=True, role_exists=True, stored_verifier=V_PW, max_connections=15)
    with pytest.raises(BudgetError, match="max_connections 15 minus connection_reserve 10 leaves 5"):
        make_plan(settings(), observed)


# --- diff and live check -------------------------------------------------------------------------

def test_diff_masks_verifiers_and_says_when_one_changes():
    observed = Observed(CONFIG, '"acme" "%s"\n' % V_OTHER)
    plan = make_plan(settings(), observed, new_verifier=fresh)
    entry, user = diff(settings(), observed, plan)
    assert entry["before"] == "" and entry["after"].startswith("acme = host=rotor-postgres")
    text = repr((entry, user))
    for secret in (V_OTHER.split("$", 1)[1], FRESH.split("$", 1)[1], "pw"):
        assert secret not in user["before"] + user["after"]
    assert user["after"] == '"acme" "SCRAM-SHA-256$******** (new verifier)"\n'
    assert "SCRAM-SHA-256$4096" not in text


LIVE = {"acme": {"host": "rotor-postgres", "port": 5432, "database": "acme", "pool_size": 5, "reserve_pool_size": 1,
                 "max_connections": 0, "pool_mode": "transaction", "current_client_connections": 0}}


@pytest.mark.parametrize("live, users, problem", [
    (LIVE, {"acme"}, None),
    ({}, {"acme"}, "SHOW DATABASES does not list acme"),
    ({"acme": dict(LIVE["acme"], pool_size=4)}, {"acme"}, "pool_size=4, not 5"),
    ({"acme": dict(LIVE["acme"], pool_mode=None)}, {"acme"}, "pool_mode=None, not transaction"),
    (LIVE, set(), "SHOW USERS does not list acme"),
])
def test_live_mismatch(live, users, problem):
    found = live_mismatch(settings(), live, users)
    assert (found is None) if problem is None else (problem in found), found


def test_live_mismatch_absent():
    assert live_mismatch(settings(state="absent"), {}, set()) is None
    assert "still lists acme" in live_mismatch(settings(state="absent"), LIVE, set())


# --- apply, with doubles for PgBouncer and PostgreSQL --------------------------------------------

class FakeAdmin:
    def __init__(self, config_path: str, *, accept: bool = True):
        self.config_path = config_path
        self.accept = accept
        self.reloads = 0
        self.loaded: dict = {}

    def reload(self):
        self.reloads += 1
        with open(self.config_path, encoding="utf-8") as handle:
            entries = databases(handle.read())
        if self.accept or self.reloads > 1:
            self.loaded = {name: {"host": value.get("host"), "port": int(value.get("port", 5432)),
                                  "database": value.get("dbname"), "pool_size": int(value.get("pool_size", 20)),
                                  "reserve_pool_size": int(value.get("reserve_pool", 0)),
                                  "max_connections": int(value.get("max_db_connections", 0)),
                                  "pool_mode": value.get("pool_mode")} for name, value in entries.items()}

    def databases(self):
        return self.loaded

    def users(self):
        return {"acme"}


def files(tmp_path):
    (tmp_path / "databases.ini").write_text(CONFIG)
    (tmp_path / "userlist.txt").write_text("")
    os.chmod(tmp_path / "databases.ini", 0o640)
    return str(tmp_path / "databases.ini"), str(tmp_path / "userlist.txt")


def test_apply_writes_backs_up_reloads_and_verifies(tmp_path):
    config, userlist = files(tmp_path)
    admin = FakeAdmin(config)
    tenant = Tenant(settings(config=config, userlist=userlist, backup_keep=2), admin=admin, postgres=None)
    for pool_size in (5, 6, 7, 8):
        tenant.settings = dataclasses.replace(tenant.settings, pool_size=pool_size)
        observed = tenant.observe()
        result = tenant.apply(observed, make_plan(tenant.settings, observed))
        assert result["verified"] and admin.loaded["acme"]["pool_size"] == pool_size
    assert os.stat(config).st_mode & 0o777 == 0o640
    assert verifier_matches("pw", userlist_entries(open(userlist, encoding="utf-8").read())["acme"])
    kept = sorted(os.listdir(tmp_path / "backup"))
    assert len([name for name in kept if name.startswith("databases.ini.")]) == 2
    assert all(os.stat(tmp_path / "backup" / name).st_mode & 0o777 == 0o600 for name in kept)


def test_apply_rolls_back_when_pgbouncer_does_not_serve_the_change(tmp_path):
    config, userlist = files(tmp_path)
    admin = FakeAdmin(config, accept=False)
    tenant = Tenant(settings(config=config, userlist=userlist), admin=admin, postgres=None)
    observed = tenant.observe()
    with pytest.raises(TenantError, match="SHOW DATABASES does not list acme.*previous files were restored") as info:
        tenant.apply(observed, make_plan(tenant.settings, observed))
    assert info.value.restored and info.value.step == "reload"
    assert open(config, encoding="utf-8").read() == CONFIG
    assert open(userlist, encoding="utf-8").read() == ""
    assert admin.reloads == 2


def test_apply_rolls_back_on_a_failed_load_in_the_log(tmp_path):
    config, userlist = files(tmp_path)

    class Log:
        def failure(self, since):
            return "unrecognized connection parameter: frobnicate"

    tenant = Tenant(settings(config=config, userlist=userlist), admin=FakeAdmin(config), postgres=None, log=Log())
    observed = tenant.observe()
    with pytest.raises(TenantError, match="could not load the new configuration: unrecognized connection parameter"):
        tenant.apply(observed, make_plan(tenant.settings, observed))
    assert open(config, encoding="utf-8").read() == CONFIG


def test_backup_keeps_the_newest(tmp_path):
    path = tmp_path / "f.ini"
    path.write_text("x")
    state = FileState.read(str(path))
    for second in range(5):
        backup(state, 3, "20261122T10000%d.000000Z" % second)
    assert sorted(os.listdir(tmp_path / "backup")) == ["f.ini.20261122T10000%d.000000Z" % s for s in (2, 3, 4)]
    assert backup(state, 0, "20261122T100009.000000Z") is None


class LosingAdmin(FakeAdmin):
    """PgBouncer whose pgbouncer.ini no longer includes the database list: every reload drops every database."""

    def reload(self):
        self.reloads += 1
        self.loaded = {}


def test_a_rollback_that_leaves_databases_unserved_says_so(tmp_path):
    config, userlist = files(tmp_path)
    admin = FakeAdmin(config)
    tenant = Tenant(settings(config=config, userlist=userlist), admin=admin, postgres=None)
    observed = tenant.observe()
    tenant.apply(observed, make_plan(tenant.settings, observed))
    other = Tenant(settings(name="beta", user="beta", config=config, userlist=userlist), admin=LosingAdmin(config),
                   postgres=None)
    observed = other.observe()
    with pytest.raises(TenantError) as info:
        other.apply(observed, make_plan(other.settings, observed))
    assert info.value.restored and info.value.step == "reload"
    assert "SHOW DATABASES does not list beta" in str(info.value)
    assert ("yet PgBouncer does not serve acme, other, listed there, even so: its own configuration does not load %s" % config
            in str(info.value)), str(info.value)


def _full_disk_at(monkeypatch, module, *paths):
    """Writes of ``paths`` (by name) fail as on a full disk; others go through."""
    real = module.atomic_write

    def write(path, data, **kwargs):
        if os.path.basename(path).split(".2")[0] in paths:
            raise OSError(28, "No space left on device")
        return real(path, data, **kwargs)

    monkeypatch.setattr(module, "atomic_write", write)
    from ansible_collections.rotor.vps.plugins.module_utils import _atomic_file
    monkeypatch.setattr(_atomic_file, "atomic_write", write)


@pytest.mark.parametrize("full, keep, step, message", [
    (("databases.ini",), 5, "backup", "could not back up {config} to {dir}/backup: [Errno 28] No space left on device; "
                                      "nothing was changed"),
    (("userlist.txt",), 0, "write", "could not write {userlist}: [Errno 28] No space left on device; nothing was changed"),
    (("databases.ini",), 0, "write", "could not write {config}: [Errno 28] No space left on device; the previous "
                                     "{userlist} was put back"),
    (("databases.ini", "userlist.txt"), 0, "write", "could not write {userlist}: [Errno 28] No space left on device; "
                                                    "nothing was changed"),
])
def test_a_full_disk_changes_nothing_and_says_which_file(tmp_path, monkeypatch, full, keep, step, message):
    from ansible_collections.rotor.vps.plugins.module_utils import _pgbouncer_tenant

    config, userlist = files(tmp_path)
    admin = FakeAdmin(config)
    tenant = Tenant(settings(config=config, userlist=userlist, backup_keep=keep), admin=admin, postgres=None)
    observed = tenant.observe()
    plan = make_plan(tenant.settings, observed)
    if full == ("databases.ini",) and keep == 0:
        # Only the second write fails: the userlist, written first, is put back (a write that goes through).
        real = FileState.write

        def write(state, text):
            if state.path == config:
                raise OSError(28, "No space left on device")
            real(state, text)

        monkeypatch.setattr(FileState, "write", write)
    else:
        _full_disk_at(monkeypatch, _pgbouncer_tenant, *full)
    with pytest.raises(TenantError) as info:
        tenant.apply(observed, plan)
    assert str(info.value) == message.format(config=config, userlist=userlist, dir=str(tmp_path))
    assert info.value.step == step and info.value.restored
    assert open(config, encoding="utf-8").read() == CONFIG and open(userlist, encoding="utf-8").read() == ""
    assert admin.reloads == 0
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


class DownAdmin(FakeAdmin):
    """PgBouncer killed after the files were written: its admin console does not answer."""

    def reload(self):
        self.reloads += 1
        raise ConnectionError("could not connect to PgBouncer's admin console")


def test_pgbouncer_down_at_the_reload_gets_the_previous_files_back(tmp_path):
    config, userlist = files(tmp_path)
    tenant = Tenant(settings(config=config, userlist=userlist), admin=DownAdmin(config), postgres=None)
    observed = tenant.observe()
    with pytest.raises(TenantError) as info:
        tenant.apply(observed, make_plan(tenant.settings, observed))
    assert str(info.value) == (
        "PgBouncer did not take the change: RELOAD through the admin console failed: could not connect to PgBouncer's "
        "admin console; the previous files were restored, but PgBouncer could not be reloaded with them (its admin "
        "console did not answer): it loads them when it is next reloaded or started")
    assert info.value.restored and info.value.step == "reload"
    assert open(config, encoding="utf-8").read() == CONFIG and open(userlist, encoding="utf-8").read() == ""
