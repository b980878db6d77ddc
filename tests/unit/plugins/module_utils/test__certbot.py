from __future__ import annotations

from ansible_collections.rotor.vps.plugins.module_utils._certbot import (
    account_unknown,
    accounts_dir,
    acme_type,
    bad_nonce,
    cert_name,
    certonly_args,
    lineage_files,
    problem,
)

URL = "https://pebble.lab.test:14000/dir"


def test_http01_ecdsa_with_email():
    args = certonly_args({"domains": ["a.example.com", "b.example.com"], "email": "admin@example.com"},
                         directory_url=URL)
    assert args[:5] == ["certonly", "--non-interactive", "--agree-tos", "--no-eff-email", "--force-renewal"]
    joined = " ".join(args)
    assert "--server %s --cert-name a.example.com" % URL in joined
    assert "--key-type ecdsa --elliptic-curve secp256r1" in joined
    assert "-m admin@example.com" in joined
    assert "--webroot -w /var/www/acme" in joined and "--manual" not in joined
    assert args[-4:] == ["-d", "a.example.com", "-d", "b.example.com"]


def test_dns01_wildcard_rsa_without_email():
    args = certonly_args({"domains": ["*.example.com", "example.com"], "challenge": "dns-01", "key_type": "rsa"},
                         directory_url=URL, dns_hook="/hooks/dns")
    joined = " ".join(args)
    assert "--cert-name _.example.com" in joined
    assert "--key-type rsa --rsa-key-size 2048" in joined
    assert "--register-unsafely-without-email" in joined
    assert "--manual --preferred-challenges dns --manual-auth-hook /hooks/dns add --manual-cleanup-hook /hooks/dns del" \
        in joined
    assert "--webroot" not in joined


def test_names_and_files():
    assert cert_name(["a.example.com"]) == "a.example.com"
    assert cert_name(["*.example.com"]) == "_.example.com"
    assert lineage_files("a.example.com") == {"key": "/etc/letsencrypt/live/a.example.com/privkey.pem",
                                              "chain": "/etc/letsencrypt/live/a.example.com/fullchain.pem"}


CHALLENGE_FAILED = """Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for a.example.com and b.example.com

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:
  Domain: b.example.com
  Type:   connection
  Detail: 10.0.0.5: Fetching http://b.example.com/.well-known/acme-challenge/x: Connection refused

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.

Some challenges have failed.
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile for more details.
"""
UNEXPECTED = """Saving debug log to /var/log/letsencrypt/letsencrypt.log
An unexpected error occurred:
The client sent an unacceptable anti-replay nonce :: JWS has an invalid anti-replay nonce: "abc"
Ask for help or search for solutions at https://community.letsencrypt.org.
"""


def test_problems_name_the_domain_and_the_ca_error():
    assert problem(CHALLENGE_FAILED) == ("b.example.com: connection (10.0.0.5: Fetching "
                                         "http://b.example.com/.well-known/acme-challenge/x: Connection refused)")
    assert problem(UNEXPECTED).startswith("The client sent an unacceptable anti-replay nonce ::")
    assert problem("Saving debug log to x\nsomething broke\n") == "something broke"
    assert problem("") == "certbot failed without a message"


def test_bad_nonce_and_the_logged_acme_type():
    assert bad_nonce(UNEXPECTED) and not bad_nonce(CHALLENGE_FAILED)
    log = 'acme.messages.Error: urn:ietf:params:acme:error:badNonce :: ...\n"type": "urn:ietf:params:acme:error:rateLimited"'
    assert acme_type(log) == "urn:ietf:params:acme:error:rateLimited"
    assert acme_type("nothing") is None


def test_an_account_the_ca_forgot_and_where_accounts_are():
    assert account_unknown("An unexpected error occurred:\nAccount https://pebble:14000/my-account/7eaa not found.")
    assert account_unknown("urn:ietf:params:acme:error:accountDoesNotExist")
    assert not account_unknown(CHALLENGE_FAILED)
    assert accounts_dir(URL, "/c") == "/c/accounts/pebble.lab.test:14000/dir"
    assert accounts_dir("https://acme-v02.api.letsencrypt.org/directory") == \
        "/etc/letsencrypt/accounts/acme-v02.api.letsencrypt.org/directory"


def test_a_hooks_own_output_stays_in_certbots_log():
    output = ("Hook '--manual-auth-hook' for a.example.com ran with error output:\n"
              " dns api: 401 for token=abc123secret\n"
              "\n"
              " retry later\n"
              "Some challenges have failed.\n"
              "Ask for help or search for solutions at https://community.letsencrypt.org.\n")
    said = problem(output)
    assert "abc123secret" not in said and "retry later" not in said
    assert said.startswith("Hook '--manual-auth-hook' for a.example.com ran with error output (in certbot's log)")
