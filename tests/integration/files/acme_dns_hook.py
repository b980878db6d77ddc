#!/usr/bin/env python3
"""certbot's dns-01 hook in the lab: publish (``add``) or remove (``del``) the TXT record
_acme-challenge.$CERTBOT_DOMAIN at pebble-challtestsrv, Pebble's DNS server (its management API).

certbot runs it in its container, with CERTBOT_DOMAIN (without ``*.``) and CERTBOT_VALIDATION.
"""

import json
import os
import sys
import urllib.request

MANAGEMENT = os.environ.get("ROTOR_CHALLTESTSRV", "http://challtestsrv:8055")


def main() -> None:
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action not in ("add", "del"):
        sys.exit("usage: acme_dns_hook.py add|del (with CERTBOT_DOMAIN and CERTBOT_VALIDATION set)")
    host = "_acme-challenge.%s." % os.environ["CERTBOT_DOMAIN"]
    if action == "add":
        path, body = "set-txt", {"host": host, "value": os.environ["CERTBOT_VALIDATION"]}
    else:
        path, body = "clear-txt", {"host": host}
    request = urllib.request.Request("%s/%s" % (MANAGEMENT, path), json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


if __name__ == "__main__":
    main()
