"""The packages the roles still have to install, from dpkg-query's output."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._deb_packages import dpkg_query_argv, missing_packages


def test_dpkg_query_argv_asks_for_name_and_status_of_each_package():
    assert dpkg_query_argv(["docker.io", "docker-cli"]) == [
        "dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", "docker.io", "docker-cli"]


@pytest.mark.parametrize("packages, output, missing", [
    (["a", "b"], "a installed\nb installed\n", []),
    (["a", "b"], "a installed\n", ["b"]),  # unknown to dpkg: not in the output at all
    (["a", "b"], "a installed\nb config-files\n", ["b"]),  # removed, not purged
    (["a", "b"], "a half-installed\nb not-installed\n", ["a", "b"]),
    (["b", "a"], "", ["b", "a"]),  # the order of the input is kept
    (["docker.io:amd64"], "docker.io installed\n", []),
    (["docker.io"], "docker.io:amd64 installed\n", []),
    ([], "", []),
    (["a"], "garbage line here\na\n", ["a"]),
])
def test_missing_packages(packages, output, missing):
    assert missing_packages(packages, output) == missing
