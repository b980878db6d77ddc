"""The engine client: log reading (lines since a moment, with older SDKs that take whole seconds only), and
signals to a container's main process."""

from __future__ import annotations

import calendar
import signal
import time

import pytest

from ansible_collections.rotor.vps.plugins.module_utils import _docker_engine
from ansible_collections.rotor.vps.plugins.module_utils._docker_engine import (
    DockerEngine,
    EngineError,
    lines_since,
    process_in_container,
    signal_number,
)

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


# ---------------------------------------------------------------------------------------------------------------
# Signals: by kill(2) on this host, never through Docker's kill (which counts the container as stopped by hand)


class FakeContainer:
    def __init__(self, running=True, pid=4242, cid="c0ffee" * 10):
        self.id = cid
        self.attrs = {"State": {"Running": running, "Pid": pid}}
        self.api_signals = []

    def kill(self, signal):
        self.api_signals.append(signal)


class FakeEngine(DockerEngine):
    def __init__(self, container, local=True):  # pylint: disable=super-init-not-called
        self.local = local
        self.errors = type("errors", (), {"NotFound": KeyError, "APIError": RuntimeError})
        self.client = type("client", (), {"containers": type("c", (), {"get": staticmethod(
            lambda name: container if name == "web" else (_ for _ in ()).throw(KeyError(name)))})})


def test_signal_names_with_or_without_sig():
    assert signal_number("HUP") == signal_number("SIGHUP") == signal_number("sighup") == signal.SIGHUP
    assert signal_number("USR2") == signal.SIGUSR2
    for bad in ("HUPP", "SIG_DFL", "", "9", "SIGHUP; rm"):
        with pytest.raises(EngineError, match="not a signal name"):
            signal_number(bad)


def test_a_process_is_in_a_container_when_its_cgroup_names_it(tmp_path):
    cid = "ab" * 32
    (tmp_path / "17").mkdir()
    (tmp_path / "17" / "cgroup").write_text("0::/system.slice/docker-%s.scope\n" % cid)
    assert process_in_container(17, cid, proc=str(tmp_path))
    assert not process_in_container(17, "cd" * 32, proc=str(tmp_path))
    assert not process_in_container(18, cid, proc=str(tmp_path))  # no such process
    assert not process_in_container(0, cid, proc=str(tmp_path))


def test_a_local_container_gets_the_signal_by_kill_not_by_the_api(monkeypatch):
    container = FakeContainer()
    sent = []
    monkeypatch.setattr(_docker_engine, "process_in_container", lambda pid, cid: (pid, cid) == (4242, container.id))
    monkeypatch.setattr(_docker_engine.os, "kill", lambda pid, number: sent.append((pid, number)))
    assert FakeEngine(container).signal("web", "SIGHUP") == "kill"
    assert sent == [(4242, signal.SIGHUP)] and container.api_signals == []


def test_a_remote_engine_or_a_process_elsewhere_gets_the_api_kill(monkeypatch):
    monkeypatch.setattr(_docker_engine.os, "kill", lambda pid, number: pytest.fail("kill(2) on a foreign process"))
    container = FakeContainer()
    assert FakeEngine(container, local=False).signal("web", "USR2") == "api"
    monkeypatch.setattr(_docker_engine, "process_in_container", lambda pid, cid: False)
    assert FakeEngine(container).signal("web", "USR2") == "api"
    assert container.api_signals == [signal.SIGUSR2, signal.SIGUSR2]


def test_a_stopped_or_missing_container_is_a_clear_error():
    with pytest.raises(EngineError, match="could not send SIGHUP to container web: it is not running"):
        FakeEngine(FakeContainer(running=False)).signal("web", "SIGHUP")
    with pytest.raises(EngineError, match="container other does not exist"):
        FakeEngine(FakeContainer()).signal("other", "SIGHUP")
