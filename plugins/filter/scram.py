# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 verifiers for roles, as a filter.

``scram_verifier(password, seed)`` returns the verifier PostgreSQL would store for ``password``,
with a salt derived from ``seed`` and the password (HMAC-SHA256, first 16 bytes) instead of a random
one: the same input always gives the same text, so a file holding it (PgBouncer's userlist.txt)
changes only when the password does. A new password gets a new salt.
"""

from __future__ import annotations

import hashlib
import hmac

from ansible.errors import AnsibleFilterError
from ansible_collections.rotor.vps.plugins.module_utils._scram import DEFAULT_SALT_LEN, make_verifier


def derived_salt(password: str, seed: str) -> bytes:
    """The salt for (seed, password): HMAC-SHA256 keyed with the seed, over the password."""
    key = seed.encode("utf-8", "surrogateescape")
    message = password.encode("utf-8", "surrogateescape")
    return hmac.new(key, message, hashlib.sha256).digest()[:DEFAULT_SALT_LEN]


def scram_verifier(password: object, seed: object) -> str:
    """Return the SCRAM-SHA-256 verifier of ``password`` with a salt derived from ``seed``."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("scram_verifier: the password must be a non-empty string")
    if not isinstance(seed, str) or not seed:
        raise AnsibleFilterError("scram_verifier: the seed must be a non-empty string (e.g. inventory_hostname ~ user)")
    try:
        return make_verifier(str(password), salt=derived_salt(str(password), str(seed)))
    except ValueError as exc:
        # The message never repeats the password.
        raise AnsibleFilterError("scram_verifier: %s" % exc) from None


class FilterModule:
    """rotor.vps SCRAM-SHA-256 filters."""

    def filters(self):
        return {"scram_verifier": scram_verifier}
