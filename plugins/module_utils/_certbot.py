# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""certbot as the ACME client of one site: its command line, and what its output says went wrong.

The caller decides whether a certificate is due (``_acme.order_reason``) and then always asks
certbot for a new one (``--force-renewal``): certbot 4.0 has its own rule (30 days before expiry,
or a third of the lifetime), which would skip a certificate the site's ``renew_days`` makes due
and renew a short-lived one on every call.

certbot's console shows an ACME problem by its short type and detail ("Type: unauthorized",
"Detail: ..."), or as "title :: detail" for other errors; the full ``urn:ietf:params:acme:error:``
code is only in its log. A rejected anti-replay nonce is retried once by certbot's ACME library;
a second one in a row fails the run, and is worth one more run (Pebble rejects 5% of nonces).
An account the CA no longer knows (Pebble forgets them all when it restarts) is set aside, and
certbot registers a new one. A new name for the account key rolls it: the account is deactivated at
the CA (``unregister``) and a new one, with a new key, registered (``register``).
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlparse

# Inside the certbot container (the host's directories are mounted there).
CONFIG_DIR = "/etc/letsencrypt"
WORK_DIR = "/var/lib/letsencrypt"
LOGS_DIR = "/var/log/letsencrypt"
WEBROOT = "/var/www/acme"
# In certbot's config directory: the name of the account key in use with each CA (directory URL -> name).
ACCOUNT_KEYS_FILE = "rotor-account-keys.json"
DNS_HOOK = "/usr/local/lib/rotor/dns-hook"


def cert_name(domains: list) -> str:
    """certbot's lineage (and HAProxy's file) name for a certificate: its first name, ``*.`` as ``_.``."""
    return domains[0].replace("*.", "_.", 1)


def certonly_args(site: dict, *, directory_url: str, webroot: str = WEBROOT, dns_hook: str = DNS_HOOK,
                  config_dir: str = CONFIG_DIR, work_dir: str = WORK_DIR, logs_dir: str = LOGS_DIR) -> list[str]:
    """certbot's arguments (after the program) to order one certificate for ``site``'s domains."""
    args = ["certonly", "--non-interactive", "--agree-tos", "--no-eff-email", "--force-renewal",
            "--server", directory_url, "--cert-name", cert_name(site["domains"]),
            "--config-dir", config_dir, "--work-dir", work_dir, "--logs-dir", logs_dir]
    if site.get("key_type", "ecdsa") == "rsa":
        args += ["--key-type", "rsa", "--rsa-key-size", "2048"]
    else:
        args += ["--key-type", "ecdsa", "--elliptic-curve", "secp256r1"]
    args += ["-m", site["email"]] if site.get("email") else ["--register-unsafely-without-email"]
    if site.get("challenge", "http-01") == "dns-01":
        args += ["--manual", "--preferred-challenges", "dns",
                 "--manual-auth-hook", "%s add" % dns_hook, "--manual-cleanup-hook", "%s del" % dns_hook]
    else:
        args += ["--webroot", "-w", webroot]
    for domain in site["domains"]:
        args += ["-d", domain]
    return args


def account_args(command: str, *, directory_url: str, email: Optional[str] = None, config_dir: str = CONFIG_DIR,
                 work_dir: str = WORK_DIR, logs_dir: str = LOGS_DIR) -> list[str]:
    """certbot's arguments to ``register`` a new account (a new key) with the CA, or to ``unregister`` the
    current one: deactivated at the CA, from then on refused, and its files removed."""
    if command not in ("register", "unregister"):
        raise ValueError("no account command %r" % command)
    args = [command, "--non-interactive", "--server", directory_url,
            "--config-dir", config_dir, "--work-dir", work_dir, "--logs-dir", logs_dir]
    if command == "register":
        args += ["--agree-tos", "--no-eff-email"] + (["-m", email] if email else ["--register-unsafely-without-email"])
    return args


def lineage_files(name: str, config_dir: str = CONFIG_DIR) -> dict:
    """Where certbot keeps the current key and certificate chain of lineage ``name``."""
    live = "%s/live/%s" % (config_dir, name)
    return {"key": "%s/privkey.pem" % live, "chain": "%s/fullchain.pem" % live}


_PROBLEM_RE = re.compile(r"Domain:\s*(\S+)\s*\n\s*Type:\s*(\S+)\s*\n\s*Detail:\s*(.+)")
_UNEXPECTED_RE = re.compile(r"An unexpected error occurred:\s*\n\s*(.+)")


_HOOK_OUTPUT_RE = re.compile(r"(ran with (?:error )?output):[ \t]*\n(?:(?:[ \t][^\n]*)?\n)*(?:[ \t][^\n]*$)?")


def problem(output: str) -> str:
    """What went wrong, from certbot's output: each domain with the CA's problem, or certbot's own error."""
    found = _PROBLEM_RE.findall(output)
    if found:
        return "; ".join("%s: %s (%s)" % (domain, kind, detail.strip()) for domain, kind, detail in found)
    unexpected = _UNEXPECTED_RE.search(output)
    if unexpected:
        return unexpected.group(1).strip()
    # A hook's own output (indented under certbot's line about it) may hold what its author never meant to show,
    # such as a DNS provider's token in an error: it stays in certbot's log.
    output = _HOOK_OUTPUT_RE.sub(r"\1 (in certbot's log)\n", output)
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("Saving debug log")]
    return " ".join(lines[-3:])[:1000] or "certbot failed without a message"


def bad_nonce(output: str) -> bool:
    """Whether certbot failed on a rejected anti-replay nonce (worth one more run)."""
    return "anti-replay nonce" in output or "badNonce" in output


def account_unknown(output: str) -> bool:
    """Whether the CA no longer knows certbot's account (a test CA restarted, an account deactivated)."""
    return "accountDoesNotExist" in output or bool(re.search(r"Account \S+ not found", output))


def accounts_dir(directory_url: str, config_dir: str = CONFIG_DIR) -> str:
    """Where certbot keeps its accounts with the CA of ``directory_url``."""
    parsed = urlparse(directory_url)
    return "%s/accounts/%s/%s" % (config_dir, parsed.netloc, parsed.path.strip("/"))


def acme_type(log_text: str) -> Optional[str]:
    """The last full ACME error type (``urn:ietf:params:acme:error:...``) in certbot's log, if any."""
    found = re.findall(r"urn:ietf:params:acme:error:[A-Za-z]+", log_text)
    return found[-1] if found else None
