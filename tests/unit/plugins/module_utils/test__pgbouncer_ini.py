"""pgbouncer.ini and userlist.txt: parsed, changed and rendered without touching foreign lines."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._pgbouncer_ini import (
    IniError,
    databases,
    parse_connstring,
    parse_ini,
    parse_userlist,
    remove_database,
    remove_user,
    render_connstring,
    render_ini,
    set_database,
    set_user,
    tenant_name_errors,
    userlist_entries,
)
from ansible_collections.rotor.vps.plugins.module_utils._scram import make_verifier

VERIFIER = (
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
)

INI = """\
;; pgbouncer.ini - managed in part by rotor.vps
; Hand-written comments must survive.

[databases]
# the shared fallback
* = host=db port=5432
alpha = host=db port=5432 dbname=alpha pool_size=20 reserve_pool=2
  beta=host=db   dbname=beta    password='it''s a secret' pool_mode=transaction

;; keep this comment between the sections
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = rotor
ignore_startup_parameters = extra_float_digits,options
%include /etc/pgbouncer/extra.ini

[users]
alpha_rw = pool_mode=session
"""
ALPHA_LINE = "alpha = host=db port=5432 dbname=alpha pool_size=20 reserve_pool=2\n"
GAMMA = {"host": "db", "port": 5432, "dbname": "gamma", "pool_size": 10, "reserve_pool": 1, "max_db_connections": 30, "pool_mode": "transaction"}
GAMMA_LINE = "gamma = host=db port=5432 dbname=gamma pool_size=10 reserve_pool=1 max_db_connections=30 pool_mode=transaction"


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


@pytest.mark.parametrize(
    "text",
    [
        INI,
        crlf(INI),
        INI.rstrip("\n"),
        crlf(INI).rstrip("\r\n"),
        # Mixed endings, trailing spaces, tabs, a lone CR inside a line and no final newline.
        "[databases]\r\nalpha = host=db  \t\nbeta\t=\tdbname=beta\rport=1\r\n\r\n\n  ; x\r\n [pgbouncer]\nlisten_port=6432",
        "",
        "\n\n",
        "; only a comment",
    ],
)
def test_round_trip_is_byte_for_byte(text):
    assert render_ini(parse_ini(text)) == text


def test_databases_reads_entries():
    assert databases(INI) == {
        "*": {"host": "db", "port": "5432"},
        "alpha": {"host": "db", "port": "5432", "dbname": "alpha", "pool_size": "20", "reserve_pool": "2"},
        "beta": {"host": "db", "dbname": "beta", "password": "it's a secret", "pool_mode": "transaction"},
    }
    assert databases(crlf(INI)) == databases(INI)
    assert databases("[pgbouncer]\nlisten_port = 6432\n") == {}


def test_lines_know_their_section():
    lines = parse_ini(INI)
    assert [line.key for line in lines if line.kind == "entry" and line.section == "users"] == ["alpha_rw"]
    assert [line.kind for line in lines if line.body.startswith("%include")] == ["include"]


def test_add_goes_after_the_last_database_entry():
    result = set_database(INI, "gamma", GAMMA)
    beta = "  beta=host=db   dbname=beta    password='it''s a secret' pool_mode=transaction\n"
    assert result == INI.replace(beta, beta + GAMMA_LINE + "\n")
    assert databases(result)["gamma"] == {key: str(value) for key, value in GAMMA.items()}


def test_add_keeps_crlf():
    result = set_database(crlf(INI), "gamma", GAMMA)
    assert result == crlf(set_database(INI, "gamma", GAMMA))
    assert "\n" not in result.replace("\r\n", "")


def test_replace_changes_only_that_line():
    result = set_database(INI, "alpha", {"host": "db2", "port": 5433, "dbname": "alpha"})
    assert result == INI.replace(ALPHA_LINE, "alpha = host=db2 port=5433 dbname=alpha\n")
    crlf_result = set_database(crlf(INI), "alpha", {"host": "db2", "port": 5433, "dbname": "alpha"})
    assert crlf_result == crlf(result)


def test_unchanged_settings_leave_the_text_alone():
    # Same settings, other spacing and order, ints for strings: nothing to do, not even reformatting.
    beta = {"pool_mode": "transaction", "password": "it's a secret", "dbname": "beta", "host": "db"}
    assert set_database(INI, "beta", beta) is INI
    alpha = {"host": "db", "port": 5432, "dbname": "alpha", "pool_size": 20, "reserve_pool": 2}
    assert set_database(crlf(INI), "alpha", alpha) == crlf(INI)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "[databases]\ngamma = host=db\n"),
        ("[pgbouncer]\nlisten_port = 6432\n", "[pgbouncer]\nlisten_port = 6432\n\n[databases]\ngamma = host=db\n"),
        ("[pgbouncer]\r\nlisten_port = 6432", "[pgbouncer]\r\nlisten_port = 6432\r\n\r\n[databases]\r\ngamma = host=db\r\n"),
        ("; c\n\n", "; c\n\n[databases]\ngamma = host=db\n"),
        ("[databases]\n", "[databases]\ngamma = host=db\n"),
        ("[databases]", "[databases]\ngamma = host=db\n"),
        ("[databases] ; none yet\r\n\r\n[pgbouncer]\r\n", "[databases] ; none yet\r\ngamma = host=db\r\n\r\n[pgbouncer]\r\n"),
        ("[databases]\nalpha = host=db", "[databases]\nalpha = host=db\ngamma = host=db\n"),
        ("[databases]\nalpha =\n; end\n", "[databases]\nalpha =\ngamma = host=db\n; end\n"),
    ],
)
def test_add_to_small_files(text, expected):
    assert set_database(text, "gamma", {"host": "db"}) == expected


@pytest.mark.parametrize(
    "value, rendered",
    [
        ({}, "gamma ="),
        ({"host": "db", "port": 5432}, "gamma = host=db port=5432"),
        ({"password": "two words"}, "gamma = password='two words'"),
        ({"password": "it's"}, "gamma = password='it''s'"),
        ({"password": "''"}, "gamma = password=''''''"),
        ({"password": ""}, "gamma = password=''"),
        ({"password": "a=b;c#d\"e"}, "gamma = password=a=b;c#d\"e"),
        ({"connect_query": "SET x\tTO 1"}, "gamma = connect_query='SET x\tTO 1'"),
    ],
)
def test_setting_values_render_and_read_back(value, rendered):
    result = set_database("[databases]\n", "gamma", value)
    assert result == "[databases]\n" + rendered + "\n"
    assert databases(result) == {"gamma": {key: str(setting) for key, setting in value.items()}}


@pytest.mark.parametrize(
    "value, message",
    [
        ({"Host": "db"}, "setting name 'Host' must be lowercase"),
        ({"host name": "db"}, "setting name 'host name' must be lowercase"),
        ({"": "db"}, "setting name '' must be lowercase"),
        ({1: "db"}, "setting name 1 must be lowercase"),
        ({"host": None}, "setting 'host' must be a string or a whole number, got NoneType"),
        ({"pool_size": True}, "setting 'pool_size' must be a string or a whole number, got bool"),
        ({"pool_size": 1.5}, "got float"),
        ({"password": "a\nb"}, "must not contain a line break"),
        ({"password": "a\rb"}, "must not contain a line break"),
        ("host=db", "must be a dict, got str"),
    ],
)
def test_set_database_rejects_settings(value, message):
    with pytest.raises(ValueError, match=message):
        set_database(INI, "gamma", value)


@pytest.mark.parametrize("name", ["Gamma", '"gamma"', "gamma db", "pgbouncer", "", None, "a" * 64])
def test_set_database_rejects_names(name):
    with pytest.raises(ValueError, match="database name: "):
        set_database(INI, name, {"host": "db"})


def test_remove_database():
    assert remove_database(INI, "alpha") == INI.replace(ALPHA_LINE, "")
    assert remove_database(crlf(INI), "alpha") == crlf(INI.replace(ALPHA_LINE, ""))
    assert remove_database(INI, "*") == INI.replace("* = host=db port=5432\n", "")
    assert remove_database(INI, "missing") is INI
    # A [users] entry of the same name is not a database.
    assert remove_database(INI, "alpha_rw") is INI
    assert remove_database("[databases]\nalpha = host=db", "alpha") == "[databases]\n"


def test_add_then_remove_restores_the_file():
    assert remove_database(set_database(crlf(INI), "gamma", GAMMA), "gamma") == crlf(INI)


@pytest.mark.parametrize(
    "text, lineno, message",
    [
        ("[databases]\nalpha host=db\n", 2, "neither 'key = value'"),
        ("[databases]\n\"alpha\" = host=db\n", 2, "neither 'key = value'"),
        ("[databases]\nal pha = host=db\n", 2, "neither 'key = value'"),
        ("[databases]\n= host=db\n", 2, "neither 'key = value'"),
        ("[pgbouncer]\r\nlisten_port 6432\r\n", 2, "neither 'key = value'"),
        ("[databases\nalpha = host=db\n", 1, "is not a section header"),
        ("[databases] alpha = host=db\n", 1, "is not a section header"),
        ("alpha = host=db\n[databases]\n", 1, "before any \\[section\\] header"),
        ("[databases]\nalpha = host=db\n[pgbouncer]\n[databases]\n", 4, "a second \\[databases\\] section \\(the first is on line 1\\)"),
        ("[databases]\n[Databases]\n", 2, "a second \\[databases\\] section"),
        ("[databases]\nalpha = host=db\n\nalpha = host=db2\n", 4, "database 'alpha' is defined twice \\(first on line 2\\)"),
        ("[databases]\nalpha = host=db password='open\n", 2, "database 'alpha': the quoted value of 'password' has no closing quote"),
        ("[databases]\nalpha = host=db password='a'b\n", 2, "database 'alpha': the quoted value of 'password' must be followed by a space"),
        ("[databases]\nalpha = host=db dbname\n", 2, "database 'alpha': expected key=value at character 9"),
        ("[databases]\nalpha = =db\n", 2, "database 'alpha': expected key=value at character 1"),
    ],
)
def test_corrupt_files_are_refused(text, lineno, message):
    for reader in (parse_ini, databases, lambda t: set_database(t, "gamma", {"host": "db"}), lambda t: remove_database(t, "alpha")):
        with pytest.raises(IniError, match="^line %d: .*%s" % (lineno, message)) as error:
            reader(text)
        assert error.value.lineno == lineno


def test_errors_do_not_quote_secrets():
    with pytest.raises(IniError) as error:
        parse_ini("[databases]\nalpha = host=db password='hunter2\n")
    assert "hunter2" not in str(error.value)
    with pytest.raises(IniError) as error:
        parse_ini("[databases]\nalpha host=db password=hunter2\n")
    assert "hunter2" not in str(error.value)


def test_duplicates_outside_databases_are_pgbouncers_business():
    # PgBouncer takes the last value of a repeated setting; only [databases] is ours to police.
    text = "[pgbouncer]\nlisten_port = 6432\nlisten_port = 6433\n"
    assert render_ini(parse_ini(text)) == text


@pytest.mark.parametrize(
    "value, expected",
    [
        ("", {}),
        ("host=db", {"host": "db"}),
        ("  host = db\tport=5432  ", {"host": "db", "port": "5432"}),
        ("password='a b' user=x", {"password": "a b", "user": "x"}),
        ("password='it''s'", {"password": "it's"}),
        ("password=''", {"password": ""}),
        ("host=a host=b", {"host": "b"}),
        ("password=a'b", {"password": "a'b"}),
    ],
)
def test_parse_connstring(value, expected):
    assert parse_connstring(value) == expected


@pytest.mark.parametrize("value", [{"host": "db"}, {"password": "it's two words", "port": "1"}, {"password": "'"}, {"a": ""}])
def test_connstring_round_trip(value):
    assert parse_connstring(render_connstring(value)) == value


@pytest.mark.parametrize(
    "name, rules",
    [
        ("alpha", []),
        ("a", []),
        ("tenant_42", []),
        ("a" * 63, []),
        ("a" * 64, ["longer than 63"]),
        ("A" * 64, ["longer than 63", "must start with a lowercase letter"]),
        ("", ["a name is required"]),
        (None, ["must be a string, not NoneType"]),
        (42, ["must be a string, not int"]),
        (["alpha"], ["must be a string, not list"]),
        ("Alpha", ["must start with a lowercase letter"]),
        ("ALPHA", ["must start with a lowercase letter"]),
        ("1alpha", ["must start with a lowercase letter"]),
        ("_alpha", ["must start with a lowercase letter"]),
        ('"alpha"', ["must start with a lowercase letter"]),
        ("'alpha'", ["must start with a lowercase letter"]),
        ("al pha", ["must start with a lowercase letter"]),
        ("alpha\n", ["must start with a lowercase letter"]),
        ("al\npha", ["must start with a lowercase letter"]),
        ("alpha;x", ["must start with a lowercase letter"]),
        ("alpha=x", ["must start with a lowercase letter"]),
        ("al-pha", ["must start with a lowercase letter"]),
        ("al.pha", ["must start with a lowercase letter"]),
        ("*", ["must start with a lowercase letter"]),
        ("alphä", ["must start with a lowercase letter"]),
        ("pgbouncer", ["is reserved"]),
        ("postgres", ["is reserved"]),
        ("template0", ["is reserved"]),
        ("template1", ["is reserved"]),
        ("admin", ["is reserved"]),
        ("rotor", ["is reserved"]),
        ("rotor_app", []),
    ],
)
def test_tenant_name_errors(name, rules):
    errors = tenant_name_errors(name, "tenants[3].name")
    assert len(errors) == len(rules), errors
    for error, rule in zip(errors, rules):
        assert error.startswith("tenants[3].name: "), error
        assert rule in error, (error, rule)
        if isinstance(name, str) and name:
            assert repr(name) in error


def test_tenant_name_messages_state_the_rule():
    assert tenant_name_errors("Alpha", "db") == [
        "db: 'Alpha' must start with a lowercase letter and contain only lowercase letters, digits and '_' "
        "(PgBouncer cannot read a quoted database name)"
    ]
    assert tenant_name_errors("admin", "db") == [
        "db: 'admin' is reserved; the reserved names are admin, pgbouncer, postgres, rotor, template0, template1"
    ]


USERLIST = """\
;; userlist.txt
"rotor" "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$aaaa:bbbb"

  "alpha_rw"   "md5abc"  \t
; "commented" "out"
"we""ird" "pa""ss"
"""


@pytest.mark.parametrize("text", [USERLIST, crlf(USERLIST), USERLIST.rstrip("\n"), "", "\n", '"a" "b"'])
def test_userlist_round_trip(text):
    assert "".join(line.text() for line in parse_userlist(text)) == text


def test_userlist_entries():
    assert userlist_entries(USERLIST) == {
        "rotor": "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$aaaa:bbbb",
        "alpha_rw": "md5abc",
        'we"ird': 'pa"ss',
    }
    assert userlist_entries(crlf(USERLIST)) == userlist_entries(USERLIST)


def test_set_user_adds_at_the_end():
    assert set_user(USERLIST, "beta", VERIFIER) == USERLIST + '"beta" "%s"\n' % VERIFIER
    assert set_user(crlf(USERLIST), "beta", VERIFIER) == crlf(USERLIST) + '"beta" "%s"\r\n' % VERIFIER
    assert set_user(USERLIST.rstrip("\n"), "beta", VERIFIER) == USERLIST + '"beta" "%s"\n' % VERIFIER
    assert set_user("", "beta", VERIFIER) == '"beta" "%s"\n' % VERIFIER


def test_set_user_replaces_in_place():
    result = set_user(crlf(USERLIST), "alpha_rw", VERIFIER)
    assert result == crlf(USERLIST).replace('  "alpha_rw"   "md5abc"  \t', '"alpha_rw" "%s"' % VERIFIER)
    assert set_user(result, "alpha_rw", VERIFIER) is result
    assert userlist_entries(result)["alpha_rw"] == VERIFIER


def test_set_user_escapes_quotes():
    result = set_user("", 'o"brien', VERIFIER)
    assert result == '"o""brien" "%s"\n' % VERIFIER
    assert userlist_entries(result) == {'o"brien': VERIFIER}
    assert userlist_entries(set_user(USERLIST, 'we"ird', VERIFIER))['we"ird'] == VERIFIER


def test_set_user_keeps_a_fresh_verifier_readable():
    verifier = make_verifier("pencil")
    assert userlist_entries(set_user(USERLIST, "beta", verifier))["beta"] == verifier


@pytest.mark.parametrize("secret", ["pencil", "md5abc", "SCRAM-SHA-256$4096:x$y:z", "", None, VERIFIER + "\n"])
def test_set_user_refuses_anything_but_a_verifier(secret):
    with pytest.raises(ValueError, match="refusing to write the secret of user 'beta': it is not a SCRAM-SHA-256 verifier") as error:
        set_user(USERLIST, "beta", secret)
    if secret:
        assert secret.strip() not in str(error.value)


@pytest.mark.parametrize("user", ["", None, "a\nb", "a\rb", "a\x00b", 7])
def test_set_user_refuses_bad_users(user):
    with pytest.raises(ValueError, match="must be a non-empty string without line breaks or NUL"):
        set_user(USERLIST, user, VERIFIER)


def test_remove_user():
    assert remove_user(USERLIST, "alpha_rw") == USERLIST.replace('  "alpha_rw"   "md5abc"  \t\n', "")
    assert remove_user(crlf(USERLIST), 'we"ird') == crlf(USERLIST.replace('"we""ird" "pa""ss"\n', ""))
    assert remove_user(USERLIST, "commented") is USERLIST
    assert remove_user(USERLIST, "nobody") is USERLIST


@pytest.mark.parametrize(
    "text, lineno",
    [
        ("rotor md5abc\n", 1),
        ('"rotor"\n', 1),
        ('"rotor" "md5abc\n', 1),
        ('"rotor" md5abc\n', 1),
        ('"rotor""md5abc"\n', 1),
        ('"rotor" "md5abc" trailing\n', 1),
        ('; ok\n# not a userlist comment\n', 2),
        ('"ro"tor" "md5abc"\n', 1),
        ('"a" "x"\n"b" "y"\n"a" "z"\n', 3),
    ],
)
def test_corrupt_userlists_are_refused(text, lineno):
    for reader in (parse_userlist, userlist_entries, lambda t: set_user(t, "beta", VERIFIER), lambda t: remove_user(t, "a")):
        with pytest.raises(IniError, match="^line %d: " % lineno) as error:
            reader(text)
        assert error.value.lineno == lineno


def test_userlist_errors_do_not_quote_secrets():
    with pytest.raises(IniError) as error:
        parse_userlist('"rotor" "hunter2\n')
    assert "hunter2" not in str(error.value)
