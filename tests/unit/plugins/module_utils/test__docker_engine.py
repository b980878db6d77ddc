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
    namespace_init,
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
    def __init__(self, running=True, pid=4242, cid="c0ffee" * 10, pid_after=None):
        self.id = cid
        self.attrs = {"State": {"Running": running, "Pid": pid}}
        self.pid_after = pid_after
        self.api_signals = []

    def kill(self, signal):
        self.api_signals.append(signal)

    def reload(self):
        if self.pid_after is not None:
            self.attrs["State"]["Pid"] = self.pid_after


class FakeEngine(DockerEngine):
    def __init__(self, container, local=True):  # pylint: disable=super-init-not-called
        self.local = local
        self.errors = type("errors", (), {"NotFound": KeyError, "APIError": RuntimeError, "DockerException": RuntimeError})

        def get(name):
            if name != "web":
                raise KeyError(name)
            return container

        self.client = type("client", (), {"containers": type("c", (), {"get": staticmethod(get)})})


@pytest.fixture
def host(monkeypatch):
    """kill(2) by pidfd on a pretend host: process 4242 is the container's main process; what was sent."""
    sent = []

    def pidfd_open(pid):
        if pid != 4242:
            raise ProcessLookupError(3, "No such process")
        return 900 + pid

    monkeypatch.setattr(_docker_engine.os, "pidfd_open", pidfd_open)
    monkeypatch.setattr(_docker_engine.os, "close", lambda fd: None)
    monkeypatch.setattr(_docker_engine.signals, "pidfd_send_signal", lambda fd, number: sent.append((fd - 900, number)))
    monkeypatch.setattr(_docker_engine, "process_in_container", lambda pid, cid: (pid, cid) == (4242, "c0ffee" * 10))
    monkeypatch.setattr(_docker_engine, "namespace_init", lambda pid: pid == 4242)
    return sent


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


def test_a_container_main_process_is_pid_1_of_its_namespace(tmp_path):
    for pid, nspid in ((17, "17\t1"), (18, "18"), (19, "19\t5")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text("Name:\tx\nNSpid:\t%s\n" % nspid)
    assert namespace_init(17, proc=str(tmp_path))
    assert not namespace_init(18, proc=str(tmp_path)) and not namespace_init(19, proc=str(tmp_path))
    assert not namespace_init(20, proc=str(tmp_path))


def test_a_local_container_gets_the_signal_by_pidfd_not_by_the_api(host):
    container = FakeContainer()
    assert FakeEngine(container).signal("web", "SIGHUP") == ""
    assert host == [(4242, signal.SIGHUP)] and container.api_signals == []


def test_a_pid_docker_no_longer_reports_is_never_signalled(host):
    container = FakeContainer(pid_after=4343)  # restarted between the inspect and the pidfd
    why = FakeEngine(container).signal("web", "SIGHUP")
    assert why == "process 4242 on this host is not the container's main process" and host == []
    assert container.api_signals == [signal.SIGHUP]


def test_a_remote_engine_or_a_process_elsewhere_gets_the_api_kill_and_says_why(host):
    container = FakeContainer()
    assert FakeEngine(container, local=False).signal("web", "USR2") == "the Docker engine is not on this host"
    other = FakeContainer(pid=5000)
    assert FakeEngine(other).signal("web", "USR2").startswith("its main process 5000 could not be opened here")
    assert host == [] and container.api_signals == other.api_signals == [signal.SIGUSR2]


def test_a_stopped_or_missing_container_is_a_clear_error():
    with pytest.raises(EngineError, match="could not send SIGHUP to container web: it is not running"):
        FakeEngine(FakeContainer(running=False)).signal("web", "SIGHUP")
    with pytest.raises(EngineError, match="container other does not exist"):
        FakeEngine(FakeContainer()).signal("other", "SIGHUP")


CHECK = {"test": ["CMD", "true"], "interval": "5s", "timeout": "3s", "retries": 3, "start_period": "30s"}


@pytest.mark.parametrize("api_version", ["1.44", "1.45", " 1.47\n", "2.0"])
def test_a_start_interval_where_the_engine_has_one(api_version):
    assert _docker_engine.with_start_interval(CHECK, api_version) == dict(CHECK, start_interval="1s")
    assert _docker_engine.with_start_interval(CHECK, api_version, "500ms")["start_interval"] == "500ms"
    assert "start_interval" not in CHECK


@pytest.mark.parametrize("api_version", ["1.43", "1.41", "", "unknown", None, "1"])
def test_the_check_unchanged_on_an_older_or_unknown_engine(api_version):
    assert _docker_engine.with_start_interval(CHECK, api_version) is CHECK


def test_the_check_unchanged_without_a_start_period():
    check = {key: value for key, value in CHECK.items() if key != "start_period"}
    assert _docker_engine.with_start_interval(check, "1.45") is check
