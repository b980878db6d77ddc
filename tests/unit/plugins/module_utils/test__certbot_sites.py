from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.rotor.vps.plugins.module_utils._certbot_sites import (
    certbot_site_jobs,
    certbot_sites_errors,
    derived_sites,
    only_errors,
)
from ansible_collections.rotor.vps.plugins.module_utils._role_input import certbot_input_errors

ROLE = Path(__file__).resolve().parents[4] / "roles" / "certbot"
DEFAULTS = {"email": "", "acme_directory": "letsencrypt", "key_type": "ecdsa", "renew_days": 0, "challenge": "http-01",
            "dns_hook": ""}


@pytest.fixture
def settings() -> dict:
    """The role's defaults with one site: valid as they are."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values["certbot_sites"] = [{"domains": ["www.example.com", "example.com"]}]
    return values


def test_sites_are_derived_from_present_services_and_this_hosts_tenants():
    services = [{"name": "web", "hosts": ["www.example.com", "example.com"]},
                {"name": "old", "state": "absent", "hosts": ["old.example.com"]},
                {"name": "internal"}]
    tenants = [{"name": "acme", "hosts": ["api.acme.example"]},
               {"name": "far", "vps": "other", "hosts": ["far.example"]},
               {"name": "here", "vps": "vps1", "hosts": ["here.example"]},
               {"name": "gone", "state": "absent", "hosts": ["gone.example"]}]
    assert derived_sites(services, tenants, "vps1") == [
        {"domains": ["www.example.com", "example.com"]}, {"domains": ["api.acme.example"]}, {"domains": ["here.example"]}]
    assert derived_sites([], [], "vps1") == []


def test_jobs_take_the_defaults_a_site_does_not_set_and_leave_out_empty_ones():
    jobs = certbot_site_jobs([{"domains": ["a.example"]}, {"domains": ["b.example"], "key_type": "rsa", "renew_days": 20}],
                             dict(DEFAULTS, email="admin@example.com"))
    assert jobs == [
        {"domains": ["a.example"], "state": "present", "email": "admin@example.com", "acme_directory": "letsencrypt",
         "key_type": "ecdsa", "challenge": "http-01"},
        {"domains": ["b.example"], "state": "present", "email": "admin@example.com", "acme_directory": "letsencrypt",
         "key_type": "rsa", "challenge": "http-01", "renew_days": 20},
    ]


def test_jobs_of_only_some_names():
    sites = [{"domains": ["a.example", "www.a.example"]}, {"domains": ["b.example"]}]
    assert [j["domains"] for j in certbot_site_jobs(sites, DEFAULTS, ["www.a.example"])] == [["a.example", "www.a.example"]]
    assert len(certbot_site_jobs(sites, DEFAULTS, [])) == 2
    assert only_errors(["b.example", "c.example"], sites) == ["certbot_only: 'c.example' is not a domain of any site in "
                                                              "certbot_sites"]


@pytest.mark.parametrize(
    "sites,expected",
    [
        ([{"domains": ["a.example"]}, {"domains": ["*.b.example"], "challenge": "dns-01", "dns_hook": "/x"}], []),
        ("a.example", ["certbot_sites: must be a list of sites"]),
        ([["a.example"]], ["certbot_sites[0]: must be a mapping with domains"]),
        ([{"domains": ["a.example"], "names": ["b"]}], ["certbot_sites[0]: unknown key(s) names; known ones are domains"]),
        ([{"domains": []}], ["certbot_sites[0].domains: at least one domain is required"]),
        ([{"domains": ["Bad_Name.example"]}], ["certbot_sites[0].domains[0]: 'Bad_Name.example' must be a lowercase DNS name"]),
        ([{"domains": ["*.a.example"]}], ["certbot_sites[0].domains[0]: '*.a.example' is a wildcard: the CA validates "
                                          "wildcards with dns-01 only"]),
        ([{"domains": ["a.example"], "email": "admin"}], ["certbot_sites[0].email: 'admin' must be an address"]),
        ([{"domains": ["a.example"], "state": "gone"}], ["certbot_sites[0].state: 'gone' must be one of present, absent"]),
        ([{"domains": ["a.example"], "challenge": "dns-01"}], ["certbot_sites[0].dns_hook: required with challenge dns-01"]),
        ([{"domains": ["a.example", "b.example"]}, {"domains": ["a.example"]}],
         ["certbot_sites[1]: certificate name 'a.example' is already used by certbot_sites[0]",
          "certbot_sites[1]: domain 'a.example' is already used by certbot_sites[0]"]),
        ([{"domains": ["a.example", "b.example"]}, {"domains": ["c.example", "b.example"]}],
         ["certbot_sites[1]: domain 'b.example' is already used by certbot_sites[0]"]),
        ([{"domains": ["a.example", "b.example"]}, {"domains": ["c.example", "b.example"], "state": "absent"}], []),
    ],
)
def test_site_rules(sites, expected):
    errors = certbot_sites_errors(sites, DEFAULTS)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected):
        assert error.startswith(start), (error, start)


def test_defaults_are_valid(settings):
    assert certbot_input_errors(settings) == []


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"certbot_email": "admin"}, ["certbot_email: 'admin' must be an address"]),
        ({"certbot_key_type": "dsa"}, ["certbot_key_type: 'dsa' must be one of ecdsa, rsa"]),
        ({"certbot_acme_directory": "ftp://ca"}, ["certbot_acme_directory: "]),
        ({"certbot_renew_days": 10}, []),
        ({"certbot_challenge": "dns-01"}, ["certbot_sites[0].dns_hook: required with challenge dns-01"]),
        ({"certbot_challenge": "dns-01", "certbot_dns_hook": "/usr/local/bin/hook"}, []),
        ({"certbot_mode": "cron"}, ["certbot_mode: 'cron' must be systemd (a timer on the VPS) or external"]),
        ({"certbot_on_calendar": "daily; reboot"}, ["certbot_on_calendar: 'daily; reboot' must be a systemd OnCalendar expression"]),
        ({"certbot_jitter": "1 hour"}, ["certbot_jitter: "]),
        ({"certbot_jitter": "0"}, []),
        ({"certbot_run_timeout": 5}, ["certbot_run_timeout: 5 must be a whole number of at least 60 (seconds)"]),
        ({"certbot_webroot_port": 80}, ["certbot_webroot_port: 80 must be a whole number from 1024 to 65535"]),
        ({"certbot_webroot_container_name": "-acme"}, ["certbot_webroot_container_name: '-acme' must start with"]),
        ({"certbot_ca_bundle": "not a certificate"}, ["certbot_ca_bundle: must be the PEM text"]),
        ({"certbot_ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, []),
        ({"certbot_only": ["nope.example"]}, ["renew_sites: 'nope.example' is not a domain of any site"]),
    ],
)
def test_role_rules(settings, overrides, expected):
    settings.update(overrides)
    errors = certbot_input_errors(settings)
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected):
        assert error.startswith(start), (error, start)


def test_a_bad_default_is_named_once_not_per_site(settings):
    settings["certbot_sites"] = [{"domains": ["a.example"]}, {"domains": ["b.example"]}]
    settings["certbot_email"] = "nobody"
    assert certbot_input_errors(settings) == ["certbot_email: 'nobody' must be an address such as admin@example.com "
                                              "(the CA writes to it about expiry and its terms): at most 254 characters, "
                                              "only letters, digits and ._%+- before the @"]
