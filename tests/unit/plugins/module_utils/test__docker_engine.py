"""The engine client's log reading: lines since a moment, with older SDKs that take whole seconds only."""

from __future__ import annotations

import calendar
import time

from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import lines_since

BASE = calendar.timegm(time.strptime("2026-12-01T04:05:01", "%Y-%m-%dT%H:%M:%S"))
LOG = ("2026-12-01T04:05:01.100000000Z before the reload\n"
       "2026-12-01T04:05:01.500000000Z RELOAD command issued\n"
       "2026-12-01T04:05:02.000000001Z ERROR something after\n")


def test_lines_before_the_moment_are_dropped_and_timestamps_removed():
    assert lines_since(LOG, BASE + 0.5) == "RELOAD command issued\nERROR something after\n"
    assert lines_since(LOG, BASE) == "before the reload\nRELOAD command issued\nERROR something after\n"
    assert lines_since(LOG, BASE + 1) == "ERROR something after\n"
    assert lines_since(LOG, BASE + 1.5) == ""


def test_a_line_without_a_timestamp_counts_as_old():
    assert lines_since("no timestamp here\n", BASE) == ""
