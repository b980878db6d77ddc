from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rotor.vps.plugins.filter.scram import FilterModule, derived_salt, scram_verifier
from ansible_collections.rotor.vps.plugins.module_utils._scram import parse_verifier, verifier_matches


def test_registered():
    assert FilterModule().filters()["scram_verifier"] is scram_verifier


def test_same_input_same_verifier():
    assert scram_verifier("s3cret", "vps1/pgbouncer_admin") == scram_verifier("s3cret", "vps1/pgbouncer_admin")


@pytest.mark.parametrize("password, seed", [
    ("s3cret", "vps1/pgbouncer_admin"),
    ("pässwörd with spaces", "vps2/other"),
    ("x", "h"),
])
def test_verifier_holds_the_password(password, seed):
    text = scram_verifier(password, seed)
    assert text.startswith("SCRAM-SHA-256$4096:")
    assert verifier_matches(password, text)
    assert not verifier_matches(password + "x", text)
    assert parse_verifier(text).salt == derived_salt(password, seed)
    assert len(parse_verifier(text).salt) == 16


@pytest.mark.parametrize("other", [("s3cret", "vps2/pgbouncer_admin"), ("other", "vps1/pgbouncer_admin")])
def test_other_seed_or_password_other_salt(other):
    base = parse_verifier(scram_verifier("s3cret", "vps1/pgbouncer_admin")).salt
    assert parse_verifier(scram_verifier(*other)).salt != base


def test_known_value():
    """Pins the derivation and the verifier: a change would rewrite every deployed userlist line."""
    assert base64.b64encode(derived_salt("pw", "seed")).decode() == "kaVEI6CN4vbbris2Cxu6sw=="
    assert scram_verifier("pw", "seed") == (
        "SCRAM-SHA-256$4096:kaVEI6CN4vbbris2Cxu6sw==$B2s/HGdEwruGZJiTzBybvtLsvXUClx3xnK4C4wAAfFw="
        ":ld5sv7K0GxTzujaMgMZxEOiBJSOSUxG226p+nXW4udY=")


@pytest.mark.parametrize("password, seed, message", [
    ("", "seed", "password must be a non-empty string"),
    (None, "seed", "password must be a non-empty string"),
    (12, "seed", "password must be a non-empty string"),
    ("pw", "", "seed must be a non-empty string"),
    ("p\x00w", "seed", "must not contain a NUL"),
])
def test_bad_input(password, seed, message):
    with pytest.raises(AnsibleFilterError, match=message) as info:
        scram_verifier(password, seed)
    if isinstance(password, str) and password:
        assert password not in str(info.value)
