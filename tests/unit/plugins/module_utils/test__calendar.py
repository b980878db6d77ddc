from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._calendar import elapses, longest_gap_seconds

# systemd 257 (trixie) and 252 (bookworm) print the iterations differently.
TRIXIE = """\
  Original form: *:0/5
Normalized form: *-*-* *:00/5:00
    Next elapse: Tue 2026-12-01 15:15:00 UTC
       From now: 1min 43s left
   Iteration #2: Tue 2026-12-01 15:20:00 UTC
       From now: 6min left
   Iteration #3: Tue 2026-12-01 15:25:00 UTC
       From now: 11min left
"""
BOOKWORM_UNEVEN = """\
  Original form: *-*-* 00,06:00:00
Normalized form: *-*-* 00,06:00:00
    Next elapse: Wed 2026-12-02 00:00:00 CET
       (in UTC): Tue 2026-12-01 23:00:00 UTC
       From now: 7h left
       Iter. #2: Wed 2026-12-02 06:00:00 CET
       (in UTC): Wed 2026-12-02 05:00:00 UTC
       Iter. #3: Thu 2026-12-03 00:00:00 CET
       (in UTC): Wed 2026-12-02 23:00:00 UTC
"""


@pytest.mark.parametrize("output,gap", [
    (TRIXIE, 300.0),
    (BOOKWORM_UNEVEN, 18 * 3600.0),
    ("    Next elapse: Tue 2026-12-01 15:15:00 UTC\n", None),
    ("", None),
])
def test_the_longest_gap_between_runs(output, gap):
    assert longest_gap_seconds(output) == gap


def test_local_times_are_read_not_the_utc_echo():
    assert [t.hour for t in elapses(BOOKWORM_UNEVEN)] == [0, 6, 0]
