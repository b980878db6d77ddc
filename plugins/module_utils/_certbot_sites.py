# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certbot role's sites: which certificates a VPS needs, their rules, and the certbot_site options.

A site is one certificate: ``domains`` (the first names it) and any certbot_site option the role
passes through (``SITE_KEYS``); the role's ``certbot_*`` defaults fill in the rest. Without
``certbot_sites`` the role derives one site per present rotated service and per present tenant of
the host, each with that service's or tenant's HAProxy host names, so that every name HAProxy
routes gets a certificate.
"""

from __future__ import annotations

from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._acme import site_errors
from ansible_collections.rotor.vps.plugins.module_utils._certbot import cert_name
from ansible_collections.rotor.vps.plugins.module_utils._validate import claim_errors

STATES = ("present", "absent")
# certbot_site options a site may set; the ones after "state" have role-wide defaults too, and the account
# key's name is role-wide only (one account per CA on a host).
SITE_KEYS = ("domains", "state", "email", "acme_directory", "key_type", "renew_days", "challenge", "dns_hook")
DEFAULT_KEYS = SITE_KEYS[2:] + ("account_key",)


def derived_sites(services: list, tenants: list, host: str) -> list[dict]:
    """One site per present rotated service and per present tenant of ``host`` that has host names."""
    sites = []
    for service in services:
        if isinstance(service, dict) and service.get("state", "present") == "present" and service.get("hosts"):
            sites.append({"domains": list(service["hosts"])})
    for tenant in tenants:
        if not isinstance(tenant, dict) or tenant.get("state", "present") != "present" or not tenant.get("hosts"):
            continue
        if tenant.get("vps") in (None, "", host):
            sites.append({"domains": list(tenant["hosts"])})
    return sites


def effective(site: dict, defaults: dict) -> dict:
    """The site with the role's defaults filled in; unset and empty defaults are left out."""
    out = {key: value for key, value in defaults.items() if key in DEFAULT_KEYS and value not in (None, "", 0)}
    out.update({key: value for key, value in site.items() if value is not None})
    out.setdefault("state", "present")
    return out


def certbot_sites_errors(sites: object, defaults: dict, where: str = "certbot_sites") -> list[str]:
    """Every site by certbot_site's rules, known keys only, and each certificate and name once."""
    if not isinstance(sites, list):
        return ["%s: must be a list of sites (each a mapping with domains)" % where]
    errors, valid = [], []
    for index, site in enumerate(sites):
        item = "%s[%d]" % (where, index)
        if not isinstance(site, dict):
            errors.append("%s: must be a mapping with domains" % item)
            continue
        unknown = sorted(str(key) for key in site if key not in SITE_KEYS)
        if unknown:
            errors.append("%s: unknown key(s) %s; known ones are %s" % (item, ", ".join(unknown), ", ".join(SITE_KEYS)))
            continue
        inherited = [key for key in DEFAULT_KEYS if key not in site and defaults.get(key) not in (None, "", 0)]
        site = effective(site, defaults)
        # A default's own problem is reported once, as certbot_<key> (certbot_defaults_errors).
        problems = [message for message in site_errors(site, item + ".")
                    if not any(message.startswith("%s.%s:" % (item, key)) for key in inherited)]
        if site["state"] not in STATES:
            problems.append("%s.state: %r must be one of %s" % (item, site["state"], ", ".join(STATES)))
        errors += problems
        if not problems:
            valid.append(site)
    errors += claim_errors(valid, lambda s: [cert_name(s["domains"])], "certificate name", where, "site")
    present = [s for s in valid if s["state"] == "present"]
    errors += claim_errors(present, lambda s: s["domains"], "domain", where, "site")
    return errors


def certbot_defaults_errors(defaults: dict) -> list[str]:
    """The role-wide defaults, by the rules of the option each stands for (``certbot_<option>``)."""
    probe = {key: value for key, value in defaults.items() if value not in (None, "", 0)}
    probe["domains"] = ["example.com"]
    if probe.get("challenge") == "dns-01" and not probe.get("dns_hook"):
        probe["dns_hook"] = "-"  # the sites that use dns-01 must name it; checked per site
    return [message.replace(key + ":", "certbot_%s:" % key, 1)
            for message in site_errors(probe) for key in DEFAULT_KEYS if message.startswith(key + ":")]


def certbot_site_jobs(sites: list, defaults: dict, only: Optional[list] = None) -> list[dict]:
    """The certbot_site options of every site (checked already), in the order given; with ``only``, just the
    sites that have one of those names."""
    wanted = set(only or [])
    return [effective(site, defaults) for site in sites if not wanted or wanted & set(site.get("domains") or [])]


def only_errors(only: object, sites: object, where: str = "certbot_only") -> list[str]:
    """Names asked for that no site has."""
    if not only:
        return []
    if not isinstance(only, list):
        return ["%s: must be a list of domain names" % where]
    known = {name for site in sites if isinstance(site, dict) for name in site.get("domains") or []} \
        if isinstance(sites, list) else set()
    return ["%s: %r is not a domain of any site in certbot_sites" % (where, name) for name in only if name not in known]
