from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.filter.rotation import (
    FilterModule,
    rotation_backends,
    rotation_plan,
    rotation_service_errors,
    rotation_schedule_textfile,
    rotation_summary,
    rotation_timers,
)

WEB = {
    "name": "web",
    "image": "rotor-lab/demo-web:1",
    "replicas": 2,
    "port": 8080,
    "health_path": "/healthz",
    "tmpfs": [{"path": "/tmp", "size": "16m", "uid": 1000}, {"path": "/scratch", "size": "16m", "mode": "0700"}],
    "env": {"LOG_LEVEL": "info"},
    "hosts": ["web.lab.test", "www.web.lab.test"],
    "interval": "*-*-* 00/6:00:00",
    "jitter": "10m",
    "max_age": "6h",
    "memory": "128m",
    "cpus": 0.5,
    "pids_limit": 64,
    "networks": ["app"],
}


def svc(**changes):
    service = dict(WEB, **changes)
    return {k: v for k, v in service.items() if v is not None}


@pytest.mark.parametrize(
    "services,expected",
    [
        ([], []),
        ([WEB], []),
        ([{"name": "api", "image": "example/api:3"}], []),
        ([{"name": "old", "state": "absent"}], []),
        ([svc(interval="hourly", jitter=0)], []),
        ([svc(interval="*:*:0/20", jitter="0")], []),
        ([svc(name="Web")], ["rotation_services[0].name: 'Web' must start with a lowercase letter"]),
        ([svc(name="w" * 32)], ["rotation_services[0].name: '%s' must start" % ("w" * 32)]),
        ([svc(name=None)], ["rotation_services[0].name: None must start with a lowercase letter"]),
        ([svc(state="stopped")], ["rotation_services[0].state: 'stopped' must be one of present, absent"]),
        ([svc(image=None)], ["rotation_services[0].image: required unless state is absent"]),
        ([svc(image="  ")], ["rotation_services[0].image: required unless state is absent"]),
        ([svc(replicas=0)], ["rotation_services[0].replicas: 0 must be a whole number of at least 1"]),
        ([svc(replicas="two")], ["rotation_services[0]: argument 'replicas' is of type str"]),
        ([svc(replicas=True)], ["rotation_services[0].replicas: True must be a whole number"]),
        ([svc(port=70000)], ["rotation_services[0].port: 70000 must be a whole number from 1 to 65535"]),
        ([svc(health_path="healthz")], ["rotation_services[0].health_path: 'healthz' must start with / and contain no spaces"]),
        ([svc(backend="be web")], ["rotation_services[0].backend: 'be web' must start with a letter or digit"]),
        ([svc(hosts=["Web.lab.test"])], ["rotation_services[0].hosts[0]: 'Web.lab.test' must be a lowercase host name"]),
        ([svc(hosts=["web..test"])], ["rotation_services[0].hosts[0]: 'web..test' must be a lowercase host name"]),
        ([svc(hosts=["-web.test"])], ["rotation_services[0].hosts[0]: '-web.test' must be a lowercase host name"]),
        ([svc(hosts={"web.lab.test": 1})], ["rotation_services[0]: argument 'hosts' is of type dict"]),
        (
            [svc(tmpfs=[{"path": "/tmp", "size": "10X"}])],
            ["rotation_services[0].tmpfs[0].size: must be a positive whole number with an optional k, m or g suffix"],
        ),
        ([svc(tmpfs=[{"path": "/tmp"}])], ["rotation_services[0]: missing required arguments: size found in tmpfs"]),
        ([svc(tmpfs=[{"path": "tmp", "size": "8m"}])], ["rotation_services[0].tmpfs[0].path: 'tmp' must be an absolute path"]),
        ([svc(tmpfs=[{"path": "/", "size": "8m"}])], ["rotation_services[0].tmpfs[0].path: '/' must be an absolute path"]),
        ([svc(tmpfs=[{"path": "/t", "size": "8m", "mode": "rwx"}])], ["rotation_services[0].tmpfs[0].mode: 'rwx' must be an octal"]),
        ([svc(tmpfs=[{"path": "/t", "size": "8m", "uid": -1}])], ["rotation_services[0].tmpfs[0].uid: -1 must be a whole number of at least 0"]),
        (
            [svc(tmpfs=[{"path": "/t", "size": "8m"}, {"path": "/t", "size": "1m"}])],
            ["rotation_services[0].tmpfs[1].path: '/t' is already used by rotation_services[0].tmpfs[0]"],
        ),
        (
            [svc(tmpfs={"path": "/t"})],
            ["rotation_services[0]: argument 'tmpfs' is of type dict and we were unable to convert to list",
             "rotation_services[0]: missing required arguments: size found in tmpfs"],
        ),
        ([svc(interval="every day\nsoon")], ["rotation_services[0].interval: 'every day\\nsoon' must be a systemd OnCalendar"]),
        ([svc(interval="hourly; rm -rf /")], ["rotation_services[0].interval: 'hourly; rm -rf /' must be a systemd OnCalendar"]),
        ([svc(jitter="10 minutes")], ["rotation_services[0].jitter: must be a positive whole number with an optional s, m, h or d suffix"]),
        ([svc(max_age="6 hours")], ["rotation_services[0].max_age: must be a positive whole number with an optional s, m, h or d suffix"]),
        ([svc(max_age="0s")], ["rotation_services[0].max_age: must be a positive"]),
        ([svc(max_age=True)], ["rotation_services[0].max_age: must be a positive"]),
        ([svc(memory="lots")], ["rotation_services[0].memory: 'lots' must be a positive whole number"]),
        ([svc(cpus=0)], ["rotation_services[0].cpus: 0.0 must be a number greater than 0"]),
        ([svc(pids_limit=0)], ["rotation_services[0].pids_limit: 0 must be a whole number of at least 1"]),
        ([svc(env={"1BAD": "x"})], ["rotation_services[0].env: '1BAD' is not a valid environment variable name"]),
        ([svc(networks=["app net"])], ["rotation_services[0].networks[0]: 'app net' must start with a letter or digit"]),
        (
            [WEB, svc(hosts=[], backend="other")],
            ["rotation_services[1].name: 'web' is already used by rotation_services[0]; names must be unique"],
        ),
        (
            [WEB, svc(name="api", backend="web", hosts=[])],
            ["rotation_services[1]: backend 'web' is already used by rotation_services[0]; each backend belongs to one service"],
        ),
        (
            [WEB, svc(name="api", hosts=["web.lab.test"])],
            ["rotation_services[1]: host name 'web.lab.test' is already used by rotation_services[0]"],
        ),
        (["web"], ["rotation_services[0]: must be a mapping with at least name and image"]),
        (
            [svc(replicas=0, port=0)],
            ["rotation_services[0].replicas: 0", "rotation_services[0].port: 0"],
        ),
    ],
)
def test_rotation_service_errors(services, expected):
    errors = rotation_service_errors(services)
    assert len(errors) == len(expected), errors
    for error, prefix in zip(errors, expected):
        assert error.startswith(prefix), (error, prefix)


def test_rotation_service_errors_needs_a_list():
    assert rotation_service_errors({"name": "web"}) == ["rotation_services: must be a list of services"]


def test_rotation_service_errors_names_the_input_it_was_given():
    assert rotation_service_errors([svc(replicas=0)], where="lab")[0].startswith("lab[0].replicas:")


@pytest.mark.parametrize(
    "services,expected",
    [
        (None, []),
        ([], []),
        ([WEB], [{"name": "web", "health_path": "/healthz"}]),
        ([{"name": "api", "image": "x"}], [{"name": "api", "health_path": "/healthz"}]),
        ([{"name": "api", "backend": "be_api", "health_path": "/ready"}], [{"name": "be_api", "health_path": "/ready"}]),
        ([{"name": "old", "state": "absent"}], [{"name": "old", "health_path": "/healthz"}]),
        ([{"image": "no-name"}, "junk"], []),
    ],
)
def test_rotation_backends(services, expected):
    assert rotation_backends(services) == expected


@pytest.mark.parametrize(
    "services,expected",
    [
        (None, []),
        (
            [WEB],
            [{"name": "web", "unit": "rotor-rotate-web", "on_calendar": "*-*-* 00/6:00:00", "randomized_delay_sec": 600}],
        ),
        (
            [{"name": "api", "image": "x"}],
            [{"name": "api", "unit": "rotor-rotate-api", "on_calendar": "daily", "randomized_delay_sec": 300}],
        ),
        (
            [{"name": "api", "image": "x", "interval": " *:*:0/20 ", "jitter": 0}],
            [{"name": "api", "unit": "rotor-rotate-api", "on_calendar": "*:*:0/20", "randomized_delay_sec": 0}],
        ),
        ([{"name": "api", "image": "x", "jitter": "90s"}], [{"name": "api", "unit": "rotor-rotate-api", "on_calendar": "daily", "randomized_delay_sec": 90}]),
        ([{"name": "old", "state": "absent"}], []),
    ],
)
def test_rotation_timers(services, expected):
    assert rotation_timers(services, interval="daily", jitter="5m") == expected


AGED = {"name": "aged", "image": "x", "max_age": "6h"}
PLAIN = {"name": "plain", "image": "x"}
GONE = {"name": "gone", "state": "absent"}


@pytest.mark.parametrize(
    "run,select,expected",
    [
        ("converge", None, [("aged", "present", None), ("plain", "present", None), ("gone", "absent", None)]),
        ("converge", ["plain"], [("aged", "present", None), ("plain", "present", None), ("gone", "absent", None)]),
        ("auto", None, [("aged", "present", "6h"), ("plain", "rotated", None)]),
        ("auto", [], [("aged", "present", "6h"), ("plain", "rotated", None)]),
        ("auto", ["plain"], [("plain", "rotated", None)]),
        ("auto", ["gone"], []),
        ("rotated", None, [("aged", "rotated", None), ("plain", "rotated", None)]),
        ("present", ["aged"], [("aged", "present", None)]),
    ],
)
def test_rotation_plan(run, select, expected):
    plan = rotation_plan([AGED, PLAIN, GONE], run=run, select=select)
    assert [(p["name"], p["state"], p["max_age"]) for p in plan] == expected
    assert all(p["service"]["name"] == p["name"] for p in plan)


def test_rotation_plan_rejects_unknown_runs():
    with pytest.raises(ValueError, match="run must be one of converge, auto, rotated, present, got 'sometimes'"):
        rotation_plan([PLAIN], run="sometimes")


REPLACED = {
    "item": {"name": "web", "state": "rotated", "max_age": None},
    "changed": True,
    "actions": ["replace web-1", "replace web-2"],
    "replacements": [
        {"action": "replace", "old": "web-1", "new": "web-3", "reason": "rotation requested", "result": "ok",
         "duration": 1.92, "sessions_cut": 0},
        {"action": "replace", "old": "web-2", "new": "web-4", "reason": "rotation requested", "result": "ok",
         "duration": 2.08, "sessions_cut": 2},
    ],
    "servers": ["web-3", "web-4"],
}


@pytest.mark.parametrize(
    "results,expected",
    [
        (None, []),
        (
            [REPLACED],
            [
                "web (rotated): 2 change(s) in 4.0 s - replace web-1 -> web-3 (rotation requested, took 1.9 s); "
                "replace web-2 -> web-4 (rotation requested, took 2.1 s, 2 session(s) cut); serving web-3, web-4"
            ],
        ),
        (
            [{"item": {"name": "api", "state": "present", "max_age": "6h"}, "changed": False, "replacements": [],
              "servers": ["api-1"]}],
            ["api (present, older than 6h): nothing to replace; serving api-1"],
        ),
        (
            [{"item": {"name": "api", "state": "rotated"}, "changed": True, "actions": ["replace api-1"],
              "replacements": [], "servers": ["api-1"]}],
            ["api (rotated): replace api-1; serving api-1"],
        ),
        (
            [{"item": {"name": "api", "state": "rotated"}, "failed": True, "msg": "Could not start api-2: boom"}],
            ["api (rotated): FAILED - Could not start api-2: boom"],
        ),
        ([{"item": {"name": "api", "state": "rotated"}, "skipped": True}], ["api (rotated): skipped"]),
        (
            [{"item": {"name": "old", "state": "absent"}, "changed": True,
              "replacements": [{"action": "remove", "old": "old-1", "reason": "service absent", "result": "ok"}],
              "servers": []}],
            ["old (absent): 1 change(s) in 0.0 s - remove old-1 (service absent); serving none"],
        ),
    ],
)
def test_rotation_summary(results, expected):
    assert rotation_summary(results) == expected


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "rotation_service_errors",
        "rotation_backends",
        "rotation_timers",
        "rotation_plan",
        "rotation_summary",
        "rotation_schedule_textfile",
    }


def test_rotation_schedule_textfile():
    results = [
        {"item": {"name": "web", "randomized_delay_sec": 30},
         "stdout": "    Next elapse: Tue 2026-12-01 15:15:00 UTC\n   Iteration #2: Tue 2026-12-01 15:20:00 UTC\n"},
        {"item": {"name": "odd", "randomized_delay_sec": 0}, "stdout": "no times"},
    ]
    text = rotation_schedule_textfile(results)
    assert 'rotor_rotation_interval_seconds{service="web"} 300\n' in text
    assert 'rotor_rotation_jitter_seconds{service="web"} 30\n' in text
    assert "odd" not in text
