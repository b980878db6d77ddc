# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Debian packages a host still lacks, read from dpkg's own database.

The roles ask ``dpkg-query`` first (one quick command) and run the apt module only for what is
missing: apt opens its whole package cache on every call, which made most of a converge that had
nothing to install.
"""

from __future__ import annotations

# The format the roles pass to dpkg-query -W: one "<name> <status>" line per package it knows.
DPKG_QUERY_FORMAT = "${Package} ${db:Status-Status}\\n"


def dpkg_query_argv(packages: list[str]) -> list[str]:
    """The command that reports ``packages``: dpkg-query -W with DPKG_QUERY_FORMAT."""
    return ["dpkg-query", "-W", "-f=" + DPKG_QUERY_FORMAT] + list(packages)


def missing_packages(packages: list[str], dpkg_query_output: str) -> list[str]:
    """The entries of ``packages`` that dpkg-query did not report as installed, in their order.

    A package dpkg does not know at all is not in the output (dpkg-query says so on stderr), and
    one that was removed but not purged shows another status: both count as missing. An
    architecture qualifier (``name:amd64``) is compared without it.
    """
    installed = set()
    for line in dpkg_query_output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == "installed":
            installed.add(fields[0].split(":", 1)[0])
    return [package for package in packages if package.split(":", 1)[0] not in installed]
