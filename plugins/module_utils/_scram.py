# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL SCRAM-SHA-256 verifiers: the secret PostgreSQL and PgBouncer store instead of a password.

The stored text is ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64), exactly
what ``CREATE ROLE ... PASSWORD`` stores when ``password_encryption = scram-sha-256`` (RFC 5802,
RFC 7677). A verifier lets the server check a client's proof but does not reveal the password.

SASLprep (RFC 4013), as PostgreSQL's ``pg_saslprep()`` applies it before hashing:

- a pure ASCII password is used as it is (PostgreSQL's shortcut: no mapping, no checks);
- otherwise non-ASCII spaces (table C.1.2) become U+0020, characters "commonly mapped to nothing"
  (table B.1) are dropped, the result is NFKC-normalised, then checked: prohibited characters
  (C.1.2, C.2.1 to C.9), code points unassigned in Unicode 3.2 (A.1) and the bidirectional rule
  (a string with RandALCat characters must not contain LCat ones and must start and end with one);
- when any check fails, PostgreSQL hashes the raw password bytes instead, and so do we.

Unicode tables come from Python's ``stringprep`` module (Unicode 3.2, as RFC 3454 fixes them);
normalisation uses the running Python's Unicode tables, as PostgreSQL uses its own current ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import stringprep
import unicodedata
from dataclasses import dataclass
from typing import Optional

METHOD = "SCRAM-SHA-256"
# PostgreSQL's defaults: SCRAM_DEFAULT_SALT_LEN and SCRAM_SHA_256_DEFAULT_ITERATIONS.
DEFAULT_SALT_LEN = 16
DEFAULT_ITERATIONS = 4096
KEY_LEN = 32

# Every table that makes a SASLprep result invalid (RFC 4013 section 2.3), checked after NFKC.
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


@dataclass(frozen=True)
class Verifier:
    """The four parts of a stored SCRAM-SHA-256 verifier."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def text(self) -> str:
        """Render in PostgreSQL's stored format."""
        return "%s$%d:%s$%s:%s" % (
            METHOD,
            self.iterations,
            _b64(self.salt),
            _b64(self.stored_key),
            _b64(self.server_key),
        )


def saslprep(password: str) -> Optional[str]:
    """Return the SASLprep form of ``password``, or None when SASLprep rejects it.

    None means PostgreSQL would hash the raw password instead (see the module docstring).
    """
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(char) else char for char in password if not stringprep.in_table_b1(char))
    prepared = unicodedata.normalize("NFKC", mapped)
    for char in prepared:
        if any(table(char) for table in _PROHIBITED):
            return None
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            return None
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return None
    return prepared


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str):
        raise ValueError("the password must be a string, got %s" % type(password).__name__)
    if "\x00" in password:
        # PostgreSQL passes passwords as C strings: a NUL byte would silently cut it short.
        raise ValueError("the password must not contain a NUL character")
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes that were not UTF-8 (read with surrogateescape): PostgreSQL's SASLprep gives up
        # on invalid UTF-8 and hashes the raw bytes.
        return password.encode("utf-8", "surrogateescape")
    prepared = saslprep(password)
    return raw if prepared is None else prepared.encode("utf-8")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """StoredKey and ServerKey for a password, salt and iteration count (RFC 5802 section 3)."""
    salted = hashlib.pbkdf2_hmac("sha256", _password_bytes(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def make_verifier(password: str, *, salt: Optional[bytes] = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Return the stored SCRAM-SHA-256 verifier of ``password``.

    A fresh random 16-byte salt is used unless ``salt`` is given, so two calls differ; use
    verifier_matches() to decide whether an existing verifier already holds the password.
    """
    if salt is None:
        salt = os.urandom(DEFAULT_SALT_LEN)
    if not isinstance(salt, bytes) or not salt:
        raise ValueError("the salt must be non-empty bytes")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError("iterations must be a positive whole number, got %r" % (iterations,))
    stored_key, server_key = _keys(password, salt, iterations)
    return Verifier(iterations, salt, stored_key, server_key).text()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    if not text:
        raise ValueError("the %s of the SCRAM-SHA-256 verifier is empty" % what)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        # validate=True: without it, characters outside the alphabet would be skipped silently.
        raise ValueError("the %s %r of the SCRAM-SHA-256 verifier is not base64 (%s)" % (what, text, exc)) from None


def parse_verifier(text: object) -> Verifier:
    """Split a stored verifier into its parts.

    Raises ValueError naming the part that is wrong; the message never repeats the whole text.
    """
    if not isinstance(text, str):
        raise ValueError("a SCRAM-SHA-256 verifier must be a string, got %s" % type(text).__name__)
    parts = text.split("$")
    if len(parts) != 3 or parts[0] != METHOD:
        raise ValueError("not a SCRAM-SHA-256 verifier: expected '%s$<iterations>:<salt>$<StoredKey>:<ServerKey>'" % METHOD)
    head, keys = parts[1].split(":"), parts[2].split(":")
    if len(head) != 2 or len(keys) != 2:
        raise ValueError("not a SCRAM-SHA-256 verifier: expected '%s$<iterations>:<salt>$<StoredKey>:<ServerKey>'" % METHOD)
    # fullmatch, not match with "$": "4096\n" must not pass as a number.
    if not re.fullmatch(r"[1-9][0-9]{0,9}", head[0]) or int(head[0]) > 2**31 - 1:
        raise ValueError("the iteration count %r of the SCRAM-SHA-256 verifier is not a positive whole number" % head[0])
    salt = _unb64(head[1], "salt")
    stored_key = _unb64(keys[0], "StoredKey")
    server_key = _unb64(keys[1], "ServerKey")
    for name, key in (("StoredKey", stored_key), ("ServerKey", server_key)):
        if len(key) != KEY_LEN:
            raise ValueError("the %s of the SCRAM-SHA-256 verifier is %d bytes long, not %d" % (name, len(key), KEY_LEN))
    return Verifier(int(head[0]), salt, stored_key, server_key)


def is_verifier(text: object) -> bool:
    """True when ``text`` is a well-formed SCRAM-SHA-256 verifier (and so not a plaintext password)."""
    try:
        parse_verifier(text)
    except ValueError:
        return False
    return True


def verifier_matches(password: str, verifier_text: str) -> bool:
    """True when ``verifier_text`` was made from ``password``.

    Recomputes with the verifier's own salt and iteration count, so an unchanged password keeps its
    verifier (no new salt, no change reported). A malformed verifier matches nothing.
    """
    try:
        verifier = parse_verifier(verifier_text)
    except ValueError:
        return False
    stored_key, server_key = _keys(password, verifier.salt, verifier.iterations)
    # Constant time: the comparison must not tell an attacker how many leading bytes matched.
    return hmac.compare_digest(stored_key + server_key, verifier.stored_key + verifier.server_key)
