from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.rotor.vps.plugins.module_utils._acme import (
    BACKOFF_CAP,
    DAY,
    Certificate,
    acme_directory_url,
    after_failure,
    backoff_delay,
    order_reason,
    site_errors,
    waiting,
)

ISSUED = 1_800_000_000.0


def cert(days: float, names=("a.example.com",), issued: float = ISSUED) -> Certificate:
    return Certificate(names=frozenset(names), serial=1, not_before=issued, not_after=issued + days * DAY)


@pytest.mark.parametrize("days,due_after_days", [(6, 4), (45, 30), (90, 60)])
def test_a_third_of_the_lifetime_left_makes_it_due(days, due_after_days):
    current = cert(days)
    assert current.due_at() == ISSUED + due_after_days * DAY
    assert order_reason(current, ["a.example.com"], ISSUED + due_after_days * DAY - 1) == ""
    reason = order_reason(current, ["a.example.com"], ISSUED + due_after_days * DAY)
    assert reason.startswith("it is due (%.1f days left" % (days - due_after_days))
    assert "a third of its lifetime left" in reason


def test_fixed_days_before_expiry():
    current = cert(90)
    assert order_reason(current, ["a.example.com"], ISSUED + 69 * DAY, renew_days=20) == ""
    assert "20 days before expiry" in order_reason(current, ["a.example.com"], ISSUED + 70 * DAY, renew_days=20)


def test_names_added_or_removed_need_one_new_certificate():
    current = cert(90, names=("a.example.com", "b.example.com"))
    assert order_reason(current, ["b.example.com", "a.example.com"], ISSUED) == ""  # order does not matter
    assert order_reason(current, ["a.example.com", "b.example.com", "c.example.com"], ISSUED) == \
        "the names differ (added c.example.com)"
    assert order_reason(current, ["a.example.com"], ISSUED) == "the names differ (removed b.example.com)"


def test_no_certificate_and_expired():
    assert order_reason(None, ["a.example.com"], ISSUED) == "no certificate yet"
    assert order_reason(cert(6), ["a.example.com"], ISSUED + 7 * DAY) == "it expired 1.0 days"


def test_from_pem_reads_names_serial_and_validity():
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com")])
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(4242).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=6))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example.com"), x509.DNSName("*.example.com")]),
                            critical=False)
             .sign(key, hashes.SHA256()))
    current = Certificate.from_pem(built.public_bytes(serialization.Encoding.PEM))
    assert current.names == {"a.example.com", "*.example.com"}
    assert current.serial == 4242
    assert current.lifetime == 6 * DAY
    assert current.due_at() == start.timestamp() + 4 * DAY
    assert current.key_type == "ecdsa"


def test_backoff_grows_and_is_capped():
    assert [backoff_delay(n) for n in range(5)] == [0, 300, 600, 1200, 2400]
    assert backoff_delay(30) == BACKOFF_CAP
    record = after_failure({}, ISSUED, "urn:ietf:params:acme:error:connection: refused")
    assert record["failures"] == 1 and waiting(record, ISSUED) == 300
    record = after_failure(record, ISSUED + 300, "again")
    assert record["failures"] == 2 and waiting(record, ISSUED + 300) == 600 and waiting(record, ISSUED + 900) == 0


def test_directories_by_name_or_https_url():
    assert acme_directory_url("letsencrypt-staging").startswith("https://acme-staging-v02.")
    assert acme_directory_url("https://pebble.lab.test:14000/dir") == "https://pebble.lab.test:14000/dir"
    assert acme_directory_url("https://[::1]:14000/acme/dir/") == "https://[::1]:14000/acme/dir/"
    with pytest.raises(ValueError, match="must be letsencrypt or letsencrypt-staging or an https:// URL"):
        acme_directory_url("http://pebble:14000/dir")


GOOD = {"domains": ["a.example.com", "b.example.com"], "email": "admin@example.com"}


def test_valid_sites_pass():
    assert site_errors(GOOD) == []
    assert site_errors(dict(GOOD, email="first.last+certs@mail.example.com")) == []
    assert site_errors({"domains": ["*.example.com", "example.com"], "challenge": "dns-01",
                        "dns_hook": "/usr/local/bin/publish-txt", "key_type": "rsa", "renew_days": 10,
                        "acme_directory": "https://127.0.0.1:14000/dir"}) == []


@pytest.mark.parametrize("change,message", [
    ({"domains": []}, "domains: at least one domain is required"),
    ({"domains": "a.example.com"}, "domains: at least one domain is required"),
    ({"domains": ["a.example.com", "Not A Domain"]}, "domains[1]: 'Not A Domain' must be a lowercase DNS name"),
    ({"domains": ["localhost"]}, "domains[0]: 'localhost' must be a lowercase DNS name with a dot"),
    ({"domains": ["*.example.com"]}, "domains[0]: '*.example.com' is a wildcard: the CA validates wildcards with "
                                     "dns-01 only, not http-01"),
    ({"domains": ["a.example.com", "a.example.com"]}, "domains[1]: 'a.example.com' is listed twice"),
    ({"email": "admin.example.com"}, "email: 'admin.example.com' must be an address such as admin@example.com"),
    ({"email": "admin@localhost"}, "email: 'admin@localhost' must be an address"),
    ({"challenge": "tls-alpn-01"}, "challenge: 'tls-alpn-01' must be one of http-01, dns-01"),
    ({"challenge": "dns-01"}, "dns_hook: required with challenge dns-01"),
    ({"key_type": "dsa"}, "key_type: 'dsa' must be one of ecdsa, rsa"),
    ({"renew_days": 0}, "renew_days: 0 must be a whole number of days of at least 1"),
    ({"renew_days": True}, "renew_days: True must be a whole number"),
    ({"acme_directory": "staging"}, "acme_directory: must be letsencrypt or letsencrypt-staging or an https:// URL"),
    ({"acme_directory": "https://ca.example/dir/../../../etc"}, "acme_directory: must be letsencrypt"),
    ({"acme_directory": "https://ca.example/dir$(id)"}, "acme_directory: must be letsencrypt"),
    ({"acme_directory": "https://ca.exampl\u0435/dir"}, "acme_directory: must be letsencrypt"),
    ({"acme_directory": "https://ca.example/" + "d" * 2000}, "acme_directory: must be letsencrypt"),
    ({"email": "admin`id`@example.com"}, "email: 'admin`id`@example.com' must be an address"),
    ({"email": "admin|sh@example.com"}, "email: 'admin|sh@example.com' must be an address"),
    ({"email": "a" * 250 + "@example.com"}, "email: "),
])
def test_bad_input_is_named_with_its_rule(change, message):
    errors = site_errors(dict(GOOD, **change), where="certbot_sites[0].")
    assert any(error.startswith("certbot_sites[0]." + message) for error in errors), errors


def test_renew_days_not_shorter_than_the_lifetime_falls_back_to_a_third():
    short = cert(6)
    assert not short.uses_fixed_days(20) and short.due_at(20) == ISSUED + 4 * DAY
    assert order_reason(short, ["a.example.com"], ISSUED + DAY, renew_days=20) == ""
    assert cert(90).uses_fixed_days(20)


def test_a_key_of_another_type_is_ordered_again():
    current = Certificate(names=frozenset({"a.example.com"}), serial=1, not_before=ISSUED, not_after=ISSUED + 90 * DAY,
                          key_type="ecdsa")
    assert order_reason(current, ["a.example.com"], ISSUED, key_type="rsa") == "its key is ecdsa, rsa wanted"
    assert order_reason(current, ["a.example.com"], ISSUED, key_type="ecdsa") == ""


@pytest.mark.parametrize("domains,message", [
    (["203.0.113.5"], "domains[0]: '203.0.113.5' is an address, not a name"),
    (["*.example.com", "www.example.com"], "domains[1]: 'www.example.com' is already covered by *.example.com"),
])
def test_names_the_ca_refuses(domains, message):
    errors = site_errors({"domains": domains, "challenge": "dns-01", "dns_hook": "/h"})
    assert any(error.startswith(message) for error in errors), errors


def test_short_spans_read_in_hours_and_seconds():
    from ansible_collections.rotor.vps.plugins.module_utils._acme import _days  # pylint: disable=protected-access

    assert (_days(2.5 * 86400), _days(7200), _days(15)) == ("2.5 days", "2.0 hours", "15 s")
