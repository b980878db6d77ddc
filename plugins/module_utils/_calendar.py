# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd calendar expressions as systemd itself reads them (``systemd-analyze calendar --iterations=N``).

systemd is the authority on what an OnCalendar expression means; this only reads the times it
prints, so an alert can say "twice the interval" for any expression, even an uneven one, as far as
the iterations it was asked for reach (the rotation role asks for 200 from a fixed Monday midnight:
a week and more of hourly runs, a weekend's gap in a weekday-only schedule).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Optional

# "    Next elapse: Tue 2026-12-01 15:15:00 UTC" and "Iteration #2: ..." (systemd 257) or "Iter. #2: ..." (252).
_ELAPSE_RE = re.compile(r"^\s*(?:Next elapse|Iter(?:ation|\.) #\d+):\s+\S+\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)",
                        re.MULTILINE)


def elapses(output: str) -> list[datetime]:
    """The times of the runs that ``systemd-analyze calendar --iterations=N`` printed, in order."""
    return [datetime.strptime(found, "%Y-%m-%d %H:%M:%S") for found in _ELAPSE_RE.findall(output)]


def longest_gap_seconds(output: str) -> Optional[float]:
    """The longest time between two consecutive runs in that output; None with fewer than two runs."""
    times = elapses(output)
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]
    return max(gaps) if gaps else None
