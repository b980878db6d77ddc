# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgbouncer.ini ``[databases]`` entries and userlist.txt users, edited without touching any other byte.

Both files belong to the operator as much as to us: comments, spacing, order and line endings
(LF or CRLF, line by line) survive an edit exactly; only the one line we add, replace or remove
changes. A file we cannot read the way PgBouncer reads it is refused with the line number
(IniError), never "repaired": guessing at a broken file could silently change what PgBouncer does.

What we accept in pgbouncer.ini, following PgBouncer's own parser: blank lines, comment lines
starting with ``;`` or ``#``, ``[section]`` headers, ``%include`` lines and ``key = value`` where the
key is letters, digits and ``_.-*`` (no quoting: PgBouncer 1.24 rejects ``"name" =``). There are
no inline comments: everything after ``=`` is the value. In ``[databases]`` the value is a
connection string, space-separated ``key=value`` pairs whose values may be single-quoted with
``''`` for a quote. An ``%include`` is kept as it is; entries inside the included file are not seen.

userlist.txt holds one ``"user" "secret"`` per line (``""`` for a quote inside), ``;`` comments
and blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from ansible_collections.rotor.vps.plugins.module_utils._scram import is_verifier

DATABASES = "databases"
# A name PgBouncer can read without quoting that is also a PostgreSQL identifier without quoting;
# 63 is PostgreSQL's identifier limit (NAMEDATALEN - 1).
TENANT_NAME_RE = re.compile(r"\A[a-z][a-z0-9_]*\Z")
TENANT_NAME_MAX = 63
# PgBouncer's admin console, PostgreSQL's own databases, and names this collection keeps for itself.
RESERVED_NAMES = frozenset(("pgbouncer", "postgres", "template0", "template1", "admin", "rotor"))

# C isspace(): what PgBouncer skips around keys, values and at line ends.
_SPACE = " \t\n\v\f\r"
# Split into lines with findall(); every other pattern is used with fullmatch(), since "$" would also
# match before a trailing newline.
_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+$")
_SECTION_RE = re.compile(r"\[([^\]]*)\][ \t\v\f\r]*(?:[;#].*)?")
_ENTRY_RE = re.compile(r"([A-Za-z0-9_.*-]+)[ \t]*=[ \t]*(.*)")
_CONN_KEY_RE = re.compile(r"[a-z][a-z0-9_]*")
_USER_RE = re.compile(r'[ \t]*"((?:[^"\n]|"")*)"[ \t]+"((?:[^"\n]|"")*)"[ \t\r]*')

ConnValue = Union[str, int]


class IniError(ValueError):
    """A file we refuse to edit; ``lineno`` (1-based) says where, when one line is to blame."""

    def __init__(self, message: str, lineno: Optional[int] = None):
        super().__init__("line %d: %s" % (lineno, message) if lineno else message)
        self.lineno = lineno


@dataclass(frozen=True)
class IniLine:
    """One line exactly as read: ``body`` (without the line ending) and ``ending`` (``\\r\\n``, ``\\n`` or ``''``).

    ``kind`` is blank, comment, section, include or entry; ``section`` is the lowercased name of the
    section the line is in (None before the first header); ``key`` and ``value`` are set for entries.
    """

    body: str
    ending: str
    kind: str
    section: Optional[str] = None
    key: Optional[str] = None
    value: Optional[str] = None

    def text(self) -> str:
        """The line as it was read, ending included."""
        return self.body + self.ending


def _split_lines(text: str) -> list[tuple[str, str]]:
    """(body, ending) pairs; a lone ``\\r`` inside a line stays part of the body, as in PgBouncer."""
    pairs = []
    for chunk in _LINE_RE.findall(text):
        if chunk.endswith("\r\n"):
            pairs.append((chunk[:-2], "\r\n"))
        elif chunk.endswith("\n"):
            pairs.append((chunk[:-1], "\n"))
        else:
            pairs.append((chunk, ""))
    return pairs


def _newline(lines: list[IniLine]) -> str:
    """The line ending new lines get: the file's first one, LF for a file without any."""
    for line in lines:
        if line.ending:
            return line.ending
    return "\n"


def parse_ini(text: str) -> list[IniLine]:
    """Read pgbouncer.ini into lines that render back to exactly ``text`` (see render_ini).

    Raises IniError for a line PgBouncer would not accept, an entry outside any section, a second
    ``[databases]`` section, a database defined twice, or a connection string we cannot read.
    """
    lines: list[IniLine] = []
    section: Optional[str] = None
    seen_sections: dict[str, int] = {}
    seen_databases: dict[str, int] = {}
    for lineno, (body, ending) in enumerate(_split_lines(text), start=1):
        stripped = body.strip(_SPACE)
        if not stripped:
            lines.append(IniLine(body, ending, "blank", section))
        elif stripped[0] in ";#":
            lines.append(IniLine(body, ending, "comment", section))
        elif stripped.startswith("["):
            match = _SECTION_RE.fullmatch(stripped)
            if not match:
                raise IniError("%r is not a section header such as [databases]" % stripped, lineno)
            section = match.group(1).lower()
            if section == DATABASES and DATABASES in seen_sections:
                raise IniError(
                    "a second [databases] section (the first is on line %d); merge them by hand" % seen_sections[DATABASES],
                    lineno,
                )
            seen_sections.setdefault(section, lineno)
            lines.append(IniLine(body, ending, "section", section))
        elif stripped.startswith("%include"):
            lines.append(IniLine(body, ending, "include", section))
        else:
            match = _ENTRY_RE.fullmatch(stripped)
            # Neither message quotes the line: it may hold a password.
            if not match:
                raise IniError("neither 'key = value' (a key of letters, digits and _.-*), a [section], a comment nor blank", lineno)
            if section is None:
                raise IniError("'key = value' before any [section] header", lineno)
            key, value = match.group(1), match.group(2)
            if section == DATABASES:
                if key in seen_databases:
                    raise IniError(
                        "database %r is defined twice (first on line %d); remove one by hand" % (key, seen_databases[key]), lineno
                    )
                seen_databases[key] = lineno
                parse_connstring(value, lineno=lineno, name=key)
            lines.append(IniLine(body, ending, "entry", section, key, value))
    return lines


def render_ini(lines: list[IniLine]) -> str:
    """The text of ``lines``; for an unmodified parse_ini() result, exactly the text it read."""
    return "".join(line.text() for line in lines)


def parse_connstring(value: str, *, lineno: Optional[int] = None, name: Optional[str] = None) -> dict[str, str]:
    """Read a ``[databases]`` value such as ``host=db port=5432 password='it''s'`` into a dict.

    Space-separated ``key=value`` pairs; a value in single quotes may hold spaces and ``''`` for a
    quote. A key given twice keeps its last value, as in PgBouncer. Raises IniError when unreadable;
    the message names the database ``name`` and the setting, never the value (it may be a password).
    """
    what = "the connection string of database %r" % name if name is not None else "the connection string"
    result: dict[str, str] = {}
    pos, end = 0, len(value)
    while True:
        while pos < end and value[pos] in _SPACE:
            pos += 1
        if pos >= end:
            return result
        start = pos
        while pos < end and value[pos] != "=" and value[pos] not in _SPACE:
            pos += 1
        key = value[start:pos]
        while pos < end and value[pos] in _SPACE:
            pos += 1
        if not key or pos >= end or value[pos] != "=":
            raise IniError("%s: expected key=value at character %d" % (what, start + 1), lineno)
        pos += 1
        while pos < end and value[pos] in " \t":
            pos += 1
        if pos < end and value[pos] == "'":
            pos += 1
            chars = []
            while True:
                if pos >= end:
                    raise IniError("%s: the quoted value of %r has no closing quote" % (what, key), lineno)
                if value[pos] == "'":
                    if value[pos + 1:pos + 2] == "'":
                        chars.append("'")
                        pos += 2
                        continue
                    pos += 1
                    break
                chars.append(value[pos])
                pos += 1
            if pos < end and value[pos] not in _SPACE:
                raise IniError("%s: the quoted value of %r must be followed by a space" % (what, key), lineno)
            result[key] = "".join(chars)
        else:
            start = pos
            while pos < end and value[pos] not in _SPACE:
                pos += 1
            result[key] = value[start:pos]


def _render_conn_value(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("database setting %r must be a string or a whole number, got %s" % (key, type(value).__name__))
    text = str(value)
    if any(char in text for char in "\n\r\x00"):
        raise ValueError("database setting %r must not contain a line break or NUL character" % key)
    if text and not any(char in text for char in _SPACE + "'"):
        return text
    return "'%s'" % text.replace("'", "''")


def render_connstring(value: dict[str, ConnValue]) -> str:
    """Render settings as a ``[databases]`` value, quoting what needs quoting; the inverse of parse_connstring."""
    parts = []
    for key, setting in value.items():
        if not isinstance(key, str) or not _CONN_KEY_RE.fullmatch(key):
            raise ValueError("database setting name %r must be lowercase letters, digits and '_'" % (key,))
        parts.append("%s=%s" % (key, _render_conn_value(key, setting)))
    return " ".join(parts)


def tenant_name_errors(name: object, where: str) -> list[str]:
    """Check a tenant (database) name: what PgBouncer reads unquoted and PostgreSQL needs no quotes for.

    A lowercase letter, then lowercase letters, digits and '_'; at most 63 characters; not reserved.
    """
    if not isinstance(name, str):
        return ["%s: %r must be a string, not %s" % (where, name, type(name).__name__)]
    if not name:
        return ["%s: a name is required" % where]
    errors = []
    if len(name) > TENANT_NAME_MAX:
        errors.append("%s: %r is longer than %d characters (PostgreSQL's limit for a name)" % (where, name, TENANT_NAME_MAX))
    if not TENANT_NAME_RE.fullmatch(name):
        errors.append(
            "%s: %r must start with a lowercase letter and contain only lowercase letters, digits and '_' "
            "(PgBouncer cannot read a quoted database name)" % (where, name)
        )
    if name in RESERVED_NAMES:
        errors.append("%s: %r is reserved; the reserved names are %s" % (where, name, ", ".join(sorted(RESERVED_NAMES))))
    return errors


def databases(text: str) -> dict[str, dict[str, str]]:
    """The ``[databases]`` entries of pgbouncer.ini: name -> connection settings. Raises IniError."""
    return {
        line.key: parse_connstring(line.value or "")
        for line in parse_ini(text)
        if line.kind == "entry" and line.section == DATABASES and line.key is not None
    }


def _terminated(line: IniLine, newline: str) -> IniLine:
    """The line with a line ending, so that something can follow it (only the last line lacks one)."""
    return line if line.ending else IniLine(line.body, newline, line.kind, line.section, line.key, line.value)


def set_database(text: str, name: str, value: dict[str, ConnValue]) -> str:
    """Add or replace the ``[databases]`` entry ``name``; every other line stays byte for byte.

    An entry whose settings already equal ``value`` is left as it is, spacing included, so the
    result equals ``text`` when nothing needs to change. A new entry goes after the last entry of
    ``[databases]`` (a new section at the end of the file when there is none). Raises ValueError
    for a bad name or setting and IniError for a file we refuse to edit.
    """
    errors = tenant_name_errors(name, "database name")
    if errors:
        raise ValueError("; ".join(errors))
    if not isinstance(value, dict):
        raise ValueError("the settings of database %r must be a dict, got %s" % (name, type(value).__name__))
    rendered = render_connstring(value)
    wanted = parse_connstring(rendered)
    lines = parse_ini(text)
    newline = _newline(lines)
    body = ("%s = %s" % (name, rendered)).rstrip(" ")
    header, last_entry = None, None
    for index, line in enumerate(lines):
        if line.section != DATABASES:
            continue
        if line.kind == "section":
            header = index
        elif line.kind == "entry":
            if line.key == name:
                if parse_connstring(line.value or "") == wanted:
                    return text
                lines[index] = IniLine(body, line.ending, "entry", DATABASES, name, rendered)
                return render_ini(lines)
            last_entry = index
    new = IniLine(body, newline, "entry", DATABASES, name, rendered)
    after = last_entry if last_entry is not None else header
    if after is None:
        # No [databases] yet: a new section at the end, one blank line after the existing text.
        section = [IniLine("[%s]" % DATABASES, newline, "section", DATABASES), new]
        if lines:
            gap = [] if lines[-1].kind == "blank" else [IniLine("", newline, "blank", lines[-1].section)]
            lines[-1] = _terminated(lines[-1], newline)
            section = gap + section
        return render_ini(lines + section)
    lines[after] = _terminated(lines[after], newline)
    lines.insert(after + 1, new)
    return render_ini(lines)


def remove_database(text: str, name: str) -> str:
    """Remove the ``[databases]`` entry ``name``; ``text`` unchanged when there is none. Raises IniError."""
    lines = parse_ini(text)
    kept = [line for line in lines if not (line.kind == "entry" and line.section == DATABASES and line.key == name)]
    return text if len(kept) == len(lines) else render_ini(kept)


@dataclass(frozen=True)
class UserLine:
    """One userlist.txt line as read; ``user`` and ``secret`` (unescaped) are set for entries."""

    body: str
    ending: str
    user: Optional[str] = None
    secret: Optional[str] = None

    def text(self) -> str:
        """The line as it was read, ending included."""
        return self.body + self.ending


def parse_userlist(text: str) -> list[UserLine]:
    """Read userlist.txt into lines that render back to exactly ``text``.

    Raises IniError for a line that is not ``"user" "secret"``, a ``;`` comment or blank, and for a
    user listed twice.
    """
    lines = []
    seen: dict[str, int] = {}
    for lineno, (body, ending) in enumerate(_split_lines(text), start=1):
        stripped = body.strip(_SPACE)
        if not stripped or stripped.startswith(";"):
            lines.append(UserLine(body, ending))
            continue
        match = _USER_RE.fullmatch(body)
        if not match:
            # The line may hold a password: say what is wrong with it, never what it says.
            raise IniError('userlist entry is not \'"user" "secret"\' (double quotes, "" for a quote inside), a ; comment or blank', lineno)
        user = match.group(1).replace('""', '"')
        if user in seen:
            raise IniError("user %r is listed twice (first on line %d); remove one by hand" % (user, seen[user]), lineno)
        seen[user] = lineno
        lines.append(UserLine(body, ending, user, match.group(2).replace('""', '"')))
    return lines


def userlist_entries(text: str) -> dict[str, str]:
    """userlist.txt as user -> secret. Raises IniError for a file we refuse to read."""
    return {line.user: line.secret or "" for line in parse_userlist(text) if line.user is not None}


def _quote(text: str) -> str:
    return '"%s"' % text.replace('"', '""')


def set_user(text: str, user: str, verifier: str) -> str:
    """Add or replace ``user`` in userlist.txt with a SCRAM-SHA-256 verifier; other lines stay byte for byte.

    Only verifiers are accepted: a plaintext password must never be written to disk. The result
    equals ``text`` when the user already has this verifier.
    """
    if not isinstance(user, str) or not user or any(char in user for char in "\n\r\x00"):
        raise ValueError("userlist user %r must be a non-empty string without line breaks or NUL" % (user,))
    if not is_verifier(verifier):
        # Deliberately not echoed: the refused value may be a password.
        raise ValueError("refusing to write the secret of user %r: it is not a SCRAM-SHA-256 verifier (plaintext is never written)" % user)
    lines = parse_userlist(text)
    body = "%s %s" % (_quote(user), _quote(verifier))
    for index, line in enumerate(lines):
        if line.user == user:
            if line.secret == verifier:
                return text
            lines[index] = UserLine(body, line.ending, user, verifier)
            return "".join(item.text() for item in lines)
    newline = next((line.ending for line in lines if line.ending), "\n")
    if lines and not lines[-1].ending:
        lines[-1] = UserLine(lines[-1].body, newline, lines[-1].user, lines[-1].secret)
    lines.append(UserLine(body, newline, user, verifier))
    return "".join(item.text() for item in lines)


def remove_user(text: str, user: str) -> str:
    """Remove ``user`` from userlist.txt; ``text`` unchanged when the user is not listed. Raises IniError."""
    lines = parse_userlist(text)
    kept = [line for line in lines if line.user != user]
    return text if len(kept) == len(lines) else "".join(line.text() for line in kept)
