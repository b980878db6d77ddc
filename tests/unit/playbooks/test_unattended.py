"""No playbook and no role waits for someone at a keyboard.

AWX job templates, schedules and the systemd timers run the playbooks with nobody to answer: a
vars_prompt, a pause without a duration, a debugger or an ask_* setting would hang the job (or fail
it) instead of running. Every input is a variable (an extra var, a survey answer, the inventory).
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PAUSE = {"pause", "ansible.builtin.pause", "ansible.legacy.pause"}
# Task keywords that hold further tasks.
NESTED = ("block", "rescue", "always")


def _files() -> list[Path]:
    files = sorted((ROOT / "playbooks").glob("*.yml"))
    for kind in ("tasks", "handlers"):
        files += sorted((ROOT / "roles").glob("*/%s/**/*.yml" % kind))
    return files


def _ask_keys(data, where: str) -> list[str]:
    """Every ask_* (or *_ask_pass) key anywhere in ``data``."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and (key.startswith("ask_") or key.endswith("_ask_pass")):
                found.append("%s: %s" % (where, key))
            found += _ask_keys(value, where)
    elif isinstance(data, list):
        for item in data:
            found += _ask_keys(item, where)
    return found


def _pause_args(task: dict, module: str) -> dict:
    args = task[module]
    if isinstance(args, str):  # free form: pause: seconds=5
        return dict(part.split("=", 1) for part in args.split() if "=" in part)
    return args or {}


def task_prompts(task: dict, where: str) -> list[str]:
    """What in one task (and the tasks it holds) would wait for an answer."""
    found = []
    name = "%s: task %r" % (where, task.get("name", "(unnamed)"))
    if "debugger" in task:
        found.append("%s sets debugger" % name)
    for module in PAUSE & set(task):
        args = _pause_args(task, module)
        if "prompt" in args:
            found.append("%s pauses with a prompt" % name)
        elif not {"seconds", "minutes"} & set(args):
            found.append("%s pauses until someone presses enter (no seconds or minutes)" % name)
    for key in NESTED:
        for inner in task.get(key) or []:
            found += task_prompts(inner, where)
    return found


def play_prompts(play: dict, where: str) -> list[str]:
    """What in one play would wait for an answer."""
    found = []
    name = "%s: play %r" % (where, play.get("name", "(unnamed)"))
    if "vars_prompt" in play:
        found.append("%s has vars_prompt" % name)
    if "debugger" in play:
        found.append("%s sets debugger" % name)
    if str(play.get("strategy", "")).rsplit(".", maxsplit=1)[-1] == "debug":
        found.append("%s runs the debug strategy" % name)
    for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
        for task in play.get(section) or []:
            found += task_prompts(task, where)
    return found


def prompts(path_name: str, data) -> list[str]:
    """Everything in a playbook (a list of plays) or a task file (a list of tasks) that prompts."""
    found = _ask_keys(data, path_name)
    for item in data or []:
        is_play = "hosts" in item or "import_playbook" in item or "ansible.builtin.import_playbook" in item
        found += play_prompts(item, path_name) if is_play else task_prompts(item, path_name)
    return found


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_never_prompts(path):
    assert prompts(str(path.relative_to(ROOT)), yaml.safe_load(path.read_text())) == []


def test_every_playbook_is_checked():
    names = {p.name for p in _files()}
    assert {"site.yml", "rotate.yml", "tenant.yml", "renew_certs.yml"} <= names
    assert any(p.parts[-3:-1] == ("rotation", "tasks") for p in _files())


def test_ansible_cfg_asks_nothing():
    """AWX runs ansible-playbook in the project's root, so this ansible.cfg applies to its jobs too."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "ansible.cfg")
    asking = [(section, key) for section in config.sections() for key, value in config.items(section)
              if (key.startswith("ask_") or key.endswith("_ask_pass")) and value.strip().lower() in ("true", "yes", "1", "on")]
    assert not asking


def test_example_inventory_asks_nothing():
    for path in sorted((ROOT / "inventories" / "example").rglob("*.yml")):
        assert _ask_keys(yaml.safe_load(path.read_text()), str(path)) == []


# The checks themselves, on playbooks made to fail them.

@pytest.mark.parametrize(("text", "expected"), [
    ("- hosts: all\n  vars_prompt: [{name: x, prompt: Go}]\n", ["p.yml: play '(unnamed)' has vars_prompt"]),
    ("- hosts: all\n  debugger: on_failed\n", ["p.yml: play '(unnamed)' sets debugger"]),
    ("- hosts: all\n  strategy: ansible.builtin.debug\n", ["p.yml: play '(unnamed)' runs the debug strategy"]),
    ("- hosts: all\n  tasks:\n    - name: Wait\n      ansible.builtin.pause:\n",
     ["p.yml: task 'Wait' pauses until someone presses enter (no seconds or minutes)"]),
    ("- name: Ask\n  ansible.builtin.pause:\n    prompt: Go on?\n", ["p.yml: task 'Ask' pauses with a prompt"]),
    ("- name: Ask\n  ansible.builtin.pause:\n    prompt: Go on?\n    seconds: 5\n", ["p.yml: task 'Ask' pauses with a prompt"]),
    ("- name: B\n  block:\n    - name: Wait\n      pause: prompt=Go\n",
     ["p.yml: task 'Wait' pauses with a prompt"]),
    ("- name: B\n  block: []\n  rescue:\n    - name: Stop\n      debugger: always\n      ansible.builtin.fail:\n",
     ["p.yml: task 'Stop' sets debugger"]),
    ("- hosts: all\n  vars:\n    ask_vault_pass: true\n", ["p.yml: ask_vault_pass"]),
    ("- name: Sleep\n  ansible.builtin.pause:\n    seconds: 5\n", []),
    ("- name: Sleep\n  pause: minutes=1\n", []),
    ("- hosts: all\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n", []),
])
def test_prompt_detection(text, expected):
    assert prompts("p.yml", yaml.safe_load(text)) == expected
