# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ACME certificates: which names a certificate must cover, when it is due, how long to back off.

The rules of a site's certificate, apart from how it is obtained: its input (names, challenge,
CA, account email), what the certificate in place says (names, serial, validity), whether a new
order is needed, and how long to wait after a failed one.

Renewal suits any lifetime: by default a certificate is due once a third of its lifetime remains
(a 90-day certificate at 30 days left, a 45-day one at 15, a 6-day one at 2), or at a fixed
number of days left when ``renew_days`` is set. After a failed order the next attempt waits,
longer after each failure, so that a timer cannot run into the CA's failed-validation limits.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._validate import HOSTNAME_RE, shown

# ACME directories by name; any other https:// URL names a CA of its own (with its CA bundle).
DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
CHALLENGES = ("http-01", "dns-01")
KEY_TYPES = ("ecdsa", "rsa")
DAY = 86400
# After the n-th failed order in a row, wait BACKOFF_BASE * 2**(n-1) seconds, at most BACKOFF_CAP.
BACKOFF_BASE = 300
BACKOFF_CAP = DAY
# The account's address: the local part as sign-up forms take it (no quotes or shell characters).
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@([^@\s]+)$")
EMAIL_MAX = 254
# The name of the ACME account key in use (a date, a counter); a new name rolls the account key.
ACCOUNT_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# An ACME directory URL: https, a host name or address, an optional port, a path of plain segments and no
# '.' or '..' segment (its host and path name certbot's account directory on the host).
DIRECTORY_URL_MAX = 1024
DIRECTORY_URL_RE = re.compile(r"^https://([a-z0-9.-]+|\[[0-9a-f:]+\])(:[0-9]{1,5})?((/[A-Za-z0-9._~%-]+)*/?)$")


def acme_directory_url(value: str) -> str:
    """The directory URL of ``value``: a name of ``DIRECTORIES`` or an https:// URL."""
    if value in DIRECTORIES:
        return DIRECTORIES[value]
    match = DIRECTORY_URL_RE.fullmatch(value) if isinstance(value, str) and len(value) <= DIRECTORY_URL_MAX else None
    if match and not any(part in (".", "..") for part in match.group(3).split("/")):
        return value
    raise ValueError("must be %s or an https:// URL of at most %d characters (a lowercase host, an optional port and "
                     "a path of letters, digits and ._~%%-, no '.' or '..' segments), got %s"
                     % (" or ".join(sorted(DIRECTORIES)), DIRECTORY_URL_MAX, shown(value)))


def domain_errors(domains: object, where: str, *, challenge: str) -> list[str]:
    """The names of one certificate: at least one, valid, no repeats; wildcards only with dns-01."""
    if not isinstance(domains, list) or not domains:
        return ["%s: at least one domain is required (the first names the certificate)" % where]
    errors, seen = [], set()
    for index, name in enumerate(domains):
        item = "%s[%d]" % (where, index)
        bare = name[2:] if isinstance(name, str) and name.startswith("*.") else name
        if not isinstance(bare, str) or not HOSTNAME_RE.fullmatch(bare) or "." not in bare:
            errors.append("%s: %r must be a lowercase DNS name with a dot, such as www.example.com, or a wildcard "
                          "*.example.com (no port, no scheme)" % (item, name))
            continue
        if bare is not name and challenge != "dns-01":
            errors.append("%s: %r is a wildcard: the CA validates wildcards with dns-01 only, not %s"
                          % (item, name, challenge))
        elif bare.rsplit(".", 1)[-1].isdigit():
            errors.append("%s: %r is an address, not a name: ACME CAs certify names" % (item, name))
        if name in seen:
            errors.append("%s: %r is listed twice" % (item, name))
        seen.add(name)
    for index, name in enumerate(domains):
        parent = name.split(".", 1)[-1] if isinstance(name, str) and "." in name and not name.startswith("*.") else None
        if parent and "*." + parent in seen:
            errors.append("%s[%d]: %r is already covered by *.%s in the same certificate (the CA refuses both)"
                          % (where, index, name, parent))
    return errors


def site_errors(p: dict, where: str = "") -> list[str]:
    """Every rule the options of one site's certificate break, each naming the option."""
    def at(name: str) -> str:
        return where + name

    challenge = p.get("challenge", "http-01")
    errors = []
    if challenge not in CHALLENGES:
        errors.append("%s: %r must be one of %s" % (at("challenge"), challenge, ", ".join(CHALLENGES)))
    errors += domain_errors(p.get("domains"), at("domains"), challenge=challenge)
    email = p.get("email")
    if email is not None:
        match = EMAIL_RE.fullmatch(email) if isinstance(email, str) and len(email) <= EMAIL_MAX else None
        if not match or not HOSTNAME_RE.fullmatch(match.group(1).lower()) or "." not in match.group(1):
            errors.append("%s: %s must be an address such as admin@example.com (the CA writes to it about expiry "
                          "and its terms): at most %d characters, only letters, digits and ._%%+- before the @"
                          % (at("email"), shown(email), EMAIL_MAX))
    try:
        acme_directory_url(p.get("acme_directory", "letsencrypt"))
    except ValueError as exc:
        errors.append("%s: %s" % (at("acme_directory"), exc))
    if p.get("key_type", "ecdsa") not in KEY_TYPES:
        errors.append("%s: %r must be one of %s" % (at("key_type"), p.get("key_type"), ", ".join(KEY_TYPES)))
    days = p.get("renew_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        errors.append("%s: %r must be a whole number of days of at least 1, or unset (renew when a third of the "
                      "lifetime remains)" % (at("renew_days"), days))
    account_key = p.get("account_key")
    if account_key not in (None, "") and not (isinstance(account_key, str) and ACCOUNT_KEY_RE.fullmatch(account_key)):
        errors.append("%s: %s must name the account key (a date or a number, changed to roll the key): 1 to 64 "
                      "letters, digits, '.', '_' and '-', starting with a letter or digit" % (at("account_key"), shown(account_key)))
    if challenge == "dns-01" and not p.get("dns_hook"):
        errors.append("%s: required with challenge dns-01 (the command that publishes the TXT record)" % at("dns_hook"))
    return errors


@dataclass(frozen=True)
class Certificate:
    """What a certificate in place says: its names (subject alternative names), serial, validity, key."""

    names: frozenset
    serial: int
    not_before: float  # epoch seconds
    not_after: float
    key_type: str = ""  # ecdsa or rsa ("" when not known)

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def uses_fixed_days(self, renew_days: Optional[int]) -> bool:
        """Whether ``renew_days`` applies: set, and shorter than the lifetime (else a third of it)."""
        return bool(renew_days) and renew_days * DAY < self.lifetime

    def due_at(self, renew_days: Optional[int] = None) -> float:
        """When it is due: ``renew_days`` before it expires, or once a third of its lifetime remains
        (also when ``renew_days`` is not shorter than the lifetime: it would be due at once, every run)."""
        return self.not_after - (renew_days * DAY if self.uses_fixed_days(renew_days) else self.lifetime / 3)

    @classmethod
    def from_pem(cls, pem: bytes) -> "Certificate":
        """The first certificate of a PEM file (the leaf of a chain)."""
        from cryptography import x509  # the modules' host has it (python3-cryptography)
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        cert = x509.load_pem_x509_certificate(pem)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = frozenset(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = frozenset()
        key = cert.public_key()
        key_type = "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa" if isinstance(key, rsa.RSAPublicKey) else ""
        return cls(names=names, serial=cert.serial_number, not_before=_utc(cert, "not_valid_before"),
                   not_after=_utc(cert, "not_valid_after"), key_type=key_type)


def _utc(cert, field_name: str) -> float:
    """A validity bound in epoch seconds; cryptography before 42 (Debian 12 has 38) has only the naive UTC one."""
    aware = getattr(cert, field_name + "_utc", None)
    if aware is not None:
        return aware.timestamp()
    return getattr(cert, field_name).replace(tzinfo=datetime.timezone.utc).timestamp()


def order_reason(current: Optional[Certificate], domains: list, now: float, renew_days: Optional[int] = None,
                 key_type: str = "") -> str:
    """Why a new certificate must be ordered, or "" when the one in place covers exactly ``domains``
    with a ``key_type`` key (when given) and is not due."""
    if current is None:
        return "no certificate yet"
    wanted = frozenset(domains)
    if current.names != wanted:
        added, removed = sorted(wanted - current.names), sorted(current.names - wanted)
        return "the names differ (%s)" % "; ".join(
            part for part in ("added " + ", ".join(added) if added else "",
                              "removed " + ", ".join(removed) if removed else "") if part)
    if key_type and current.key_type and current.key_type != key_type:
        return "its key is %s, %s wanted" % (current.key_type, key_type)
    if now >= current.not_after:
        return "it expired %s" % _days(now - current.not_after)
    due = current.due_at(renew_days)
    if now >= due:
        rule = "%d days before expiry" % renew_days if current.uses_fixed_days(renew_days) else "a third of its lifetime left"
        return "it is due (%s left; renews at %s)" % (_days(current.not_after - now), rule)
    return ""


def _days(seconds: float) -> str:
    """A span as people read it: days, or hours and seconds for short-lived certificates."""
    if seconds >= DAY:
        return "%.1f days" % (seconds / DAY)
    return "%.1f hours" % (seconds / 3600) if seconds >= 3600 else "%d s" % seconds


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failed orders in a row (none after 0)."""
    if failures < 1:
        return 0.0
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures - 1, 20)))


def after_failure(record: dict, now: float, error: str) -> dict:
    """The back-off record after one more failed order (``record`` as last kept; {} when none)."""
    failures = int(record.get("failures", 0)) + 1
    return {"failures": failures, "last_failure": now, "last_error": error[:500],
            "next_attempt": now + backoff_delay(failures)}


def waiting(record: dict, now: float) -> float:
    """Seconds until the next order may be tried (0 when it may be now)."""
    return max(0.0, float(record.get("next_attempt", 0)) - now)
