"""The directories a role still has to create or fix, from one stat command's output."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._host_paths import directories_to_fix, stat_argv

CONFIG = {"path": "/etc/rotor/haproxy", "owner": "root", "group": 99, "mode": "0750"}
RUN = {"path": "/var/lib/rotor/postgres/run", "owner": 999, "group": 999, "mode": "3775"}
LINES = {
    "config": "/etc/rotor/haproxy\tdirectory\t0\troot\t99\tUNKNOWN\t750\n",
    "run": "/var/lib/rotor/postgres/run\tdirectory\t999\tUNKNOWN\t999\tUNKNOWN\t3775\n",
}


def test_stat_argv_names_every_path():
    assert stat_argv([CONFIG, RUN]) == ["stat", "--printf=%n\\t%F\\t%u\\t%U\\t%g\\t%G\\t%a\\n",
                                        "/etc/rotor/haproxy", "/var/lib/rotor/postgres/run"]


@pytest.mark.parametrize("wanted, output, to_fix", [
    ([CONFIG, RUN], LINES["config"] + LINES["run"], []),
    ([CONFIG, RUN], LINES["run"], [CONFIG]),  # missing: stat said so on stderr only
    ([CONFIG], LINES["config"].replace("\t750\n", "\t755\n"), [CONFIG]),
    ([CONFIG], LINES["config"].replace("\t0\troot\t", "\t1000\tadmin\t"), [CONFIG]),
    ([CONFIG], LINES["config"].replace("\t99\tUNKNOWN\t", "\t0\troot\t"), [CONFIG]),
    ([CONFIG], LINES["config"].replace("directory", "regular file"), [CONFIG]),
    ([dict(CONFIG, group="haproxy")], LINES["config"].replace("UNKNOWN", "haproxy"), []),  # by name
    ([dict(CONFIG, owner=0)], LINES["config"], []),  # by number
    ([{"path": "/etc/rotor/haproxy"}], LINES["config"], []),  # nothing named, nothing compared
    ([RUN], LINES["run"].replace("3775", "775"), [RUN]),  # setgid and sticky bits count
    ([RUN, CONFIG], "", [RUN, CONFIG]),
])
def test_directories_to_fix(wanted, output, to_fix):
    assert directories_to_fix(wanted, output) == to_fix
