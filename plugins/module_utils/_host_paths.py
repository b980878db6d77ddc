# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which of a role's directories are not yet as it wants them, from one stat command.

A role's directories (path, owner, group, mode) are read with one ``stat`` on the host, and the
file module runs only for those that are missing or differ: on a converged host that is one
command instead of one module run per directory.
"""

from __future__ import annotations

# stat --printf fields, one line per path: name, type, uid, user, gid, group, octal mode.
STAT_FORMAT = "%n\\t%F\\t%u\\t%U\\t%g\\t%G\\t%a\\n"


def stat_argv(directories: list[dict]) -> list[str]:
    """The command that describes every ``path`` of ``directories`` (missing ones go to stderr)."""
    return ["stat", "--printf=" + STAT_FORMAT] + [str(entry["path"]) for entry in directories]


def _matches(wanted, uid_or_id: str, name: str) -> bool:
    return wanted is None or str(wanted) in (uid_or_id, name)


def directories_to_fix(directories: list[dict], stat_output: str) -> list[dict]:
    """The entries of ``directories`` that stat did not show as a directory with their owner, group and mode.

    Each entry has ``path`` and optionally ``owner`` and ``group`` (a name or a number) and ``mode``
    (an octal string such as ``"0750"``); what an entry does not name is not compared.
    """
    seen = {}
    for line in stat_output.splitlines():
        fields = line.split("\t")
        if len(fields) == 7:
            seen[fields[0]] = fields
    to_fix = []
    for entry in directories:
        fields = seen.get(str(entry["path"]))
        if (fields is None or fields[1] != "directory"
                or not _matches(entry.get("owner"), fields[2], fields[3])
                or not _matches(entry.get("group"), fields[4], fields[5])
                or (entry.get("mode") is not None and int(str(entry["mode"]), 8) != int(fields[6], 8))):
            to_fix.append(entry)
    return to_fix
