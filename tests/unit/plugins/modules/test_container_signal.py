"""container_signal's input and check mode (the signal itself: test__docker_engine.py, and the roles' reloads
in the lab, after which a killed container comes back: integration/test_credentials.py)."""

from __future__ import annotations


def test_bad_input_names_each_option_and_its_rule(run_module):
    result = run_module("container_signal", {"name": "web; rm -rf /", "signal": "HUPP",
                                             "docker_host": "file:///var/run/docker.sock"})
    assert result["failed"] is True
    for words in ("name: ", "signal: 'HUPP' is not a signal name such as SIGHUP or USR1", "docker_host: "):
        assert words in result["msg"], result["msg"]


def test_check_mode_sends_nothing_and_reports_the_change(run_module):
    # No engine answers at this address: check mode does not reach for it.
    result = run_module("container_signal", {"name": "rotor-prometheus", "signal": "SIGHUP",
                                             "docker_host": "unix:///nonexistent/docker.sock"}, check=True)
    assert result.get("failed") is not True and result["changed"] is True and result["sent_by"] == "", result


def test_an_engine_that_does_not_answer_is_a_clear_error(run_module):
    result = run_module("container_signal", {"name": "rotor-prometheus", "signal": "SIGHUP",
                                             "docker_host": "unix:///nonexistent/docker.sock"})
    assert result["failed"] is True and "could not reach the Docker engine at unix:///nonexistent" in result["msg"]
