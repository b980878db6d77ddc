"""Rolling the ACME account key (certbot_site's ``account_key``): the plan, the certbot commands run and
what stays on the host, with a stand-in for certbot's container that acts on the account files as certbot does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._acme import site_errors
from ansible_collections.rotor.vps.plugins.module_utils._certbot import account_args
from ansible_collections.rotor.vps.plugins.module_utils._certbot_site import CertbotSite, Site, SiteError, site_paths

URL = "https://acme.lab.test:14000/dir"
DOMAINS = ("a.example.com",)


class Stores:
    runtime = None

    def show(self, name):
        return None


class Certbot:
    """certbot's container for account commands: ``unregister`` removes the account's files (after the CA
    deactivated it), ``register`` writes a new account; ``answers`` (command -> (code, output)) overrides."""

    def __init__(self, config: Path, answers: dict | None = None):
        self.config = config
        self.answers = answers or {}
        self.calls: list = []
        self.accounts = config / "accounts" / "acme.lab.test:14000" / "dir"

    def run_once(self, image, argv, **options):
        command = argv[0]
        self.calls.append(argv)
        code, output = self.answers.get(command, (0, "ok"))
        if code == 0 and command == "unregister":
            for account in self.accounts.iterdir():
                for item in account.iterdir():
                    item.unlink()
                account.rmdir()
        if code == 0 and command == "register":
            account = self.accounts / ("new%d" % len(self.calls))
            account.mkdir(parents=True)
            (account / "private_key.json").write_text("new key")
        return code, output


def make(tmp_path, account_key: str = "2026-12", answers: dict | None = None, existing: bool = True):
    config = tmp_path / "certbot" / "config"
    docker = Certbot(config, answers)
    if existing:
        old = docker.accounts / "old"
        old.mkdir(parents=True)
        (old / "private_key.json").write_text("old key")
    paths = site_paths(list(DOMAINS), cert_dir=str(tmp_path / "certs"), cert_mount="/usr/local/etc/haproxy/certs",
                       certbot_dir=str(tmp_path / "certbot"), webroot=str(tmp_path / "webroot"),
                       state_dir=str(tmp_path / "state"))
    site = Site(domains=DOMAINS, acme_directory=URL, email="admin@lab.test", account_key=account_key,
                audit_log=str(tmp_path / "audit.jsonl"))
    return CertbotSite(site, paths, Stores(), docker, lock_dir=str(tmp_path / "lock")), docker


def audit(tmp_path) -> list:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_no_name_keeps_the_account(tmp_path):
    certbot, docker = make(tmp_path, account_key="")
    assert certbot.account_reason() == ""
    assert not certbot.plan().account
    assert docker.calls == []


def test_a_new_name_deactivates_the_account_then_registers_a_new_one(tmp_path):
    certbot, docker = make(tmp_path)
    plan = certbot.plan()
    assert plan.account == "account_key 2026-12, was not set"
    assert plan.changes and plan.actions()[0].startswith("roll the ACME account key: deactivate the account at the CA")
    certbot._roll_account(plan.account)
    assert [argv[0] for argv in docker.calls] == ["unregister", "register"]
    assert docker.calls[0] == account_args("unregister", directory_url=URL)
    assert docker.calls[1] == account_args("register", directory_url=URL, email="admin@lab.test")
    assert [p.name for p in docker.accounts.iterdir()] == ["new2"]
    (retired,) = (tmp_path / "certbot" / "config" / "accounts-retired" / "acme.lab.test:14000").iterdir()
    assert (retired / "old" / "private_key.json").read_text() == "old key"
    record = tmp_path / "certbot" / "config" / "rotor-account-keys.json"
    assert json.loads(record.read_text()) == {URL: "2026-12"}
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert [(a["action"], a["step"]) for a in audit(tmp_path)] == [("account", "deactivated"), ("account", "registered")]
    # Done: the same name again changes nothing.
    assert certbot.account_reason() == "" and make(tmp_path, existing=False)[0].plan().account == ""


def test_a_first_account_is_registered_under_the_name(tmp_path):
    certbot, docker = make(tmp_path, existing=False)
    certbot._roll_account(certbot.account_reason())
    assert [argv[0] for argv in docker.calls] == ["register"]


@pytest.mark.parametrize("answers,error,calls,accounts", [
    ({"unregister": (1, "An unexpected error occurred:\nconnection refused")},
     "could not deactivate the ACME account at %s: connection refused; nothing changed" % URL, ["unregister"], ["old"]),
    ({"register": (1, "An unexpected error occurred:\nterms not agreed")},
     "could not register a new ACME account at %s: terms not agreed; the previous one is deactivated" % URL,
     ["unregister", "register"], []),
])
def test_a_failed_step_says_what_is_left_and_the_next_run_tries_again(tmp_path, answers, error, calls, accounts):
    certbot, docker = make(tmp_path, answers=answers)
    with pytest.raises(SiteError) as failed:
        certbot._roll_account(certbot.account_reason())
    assert error in str(failed.value)
    assert [argv[0] for argv in docker.calls] == calls
    assert sorted(p.name for p in docker.accounts.iterdir()) == accounts
    assert not (tmp_path / "certbot" / "config" / "rotor-account-keys.json").exists()
    assert certbot.account_reason() != ""


def test_an_account_the_ca_forgot_is_set_aside_and_a_new_one_registered(tmp_path):
    certbot, docker = make(tmp_path, answers={"unregister": (1, "Account abc not found")})
    certbot._roll_account(certbot.account_reason())
    assert [argv[0] for argv in docker.calls] == ["unregister", "register"]
    assert [p.name for p in docker.accounts.iterdir()] == ["new2"]


def test_the_roll_comes_first_in_the_plan(tmp_path):
    certbot, _docker = make(tmp_path)
    plan = certbot.plan()
    assert plan.account and plan.reason  # no certificate file: ordered after the roll
    assert plan.actions()[0].startswith("roll the ACME account key")
    assert plan.actions()[1].startswith("order a new certificate")


@pytest.mark.parametrize("value,ok", [("2026-12", True), ("v2", True), ("a" * 64, True), ("", True), (None, True),
                                      ("-x", False), ("a b", False), ("a" * 65, False), ("k\n", False), (7, False),
                                      ("a/b", False), ("é", False)])
def test_account_key_names(value, ok):
    errors = [e for e in site_errors({"domains": ["a.example.com"], "account_key": value}) if e.startswith("account_key")]
    assert (errors == []) is ok, errors
    if not ok:
        assert "must name the account key" in errors[0]
        assert "\n" not in errors[0]


def test_account_commands():
    assert account_args("register", directory_url=URL) == [
        "register", "--non-interactive", "--server", URL, "--config-dir", "/etc/letsencrypt", "--work-dir",
        "/var/lib/letsencrypt", "--logs-dir", "/var/log/letsencrypt", "--agree-tos", "--no-eff-email",
        "--register-unsafely-without-email"]
    assert account_args("unregister", directory_url=URL, config_dir="/c")[:6] == [
        "unregister", "--non-interactive", "--server", URL, "--config-dir", "/c"]
    with pytest.raises(ValueError):
        account_args("update_account", directory_url=URL)
