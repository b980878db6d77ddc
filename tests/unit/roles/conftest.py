"""Render a role's templates with Ansible itself, for tests of the rendered configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RENDER_PLAYBOOK = Path(__file__).resolve().parent / "files" / "render_observability.yml"


def render_observability(out: Path, templates: list[str], **variables) -> Path:
    """Render ``templates`` (paths under roles/observability/templates/) into ``out`` with the role's
    defaults and vars, ``variables`` on top (as extra vars); return ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for template in templates:
        (out / template).parent.mkdir(parents=True, exist_ok=True)
    # The test's own interpreter runs the template module: the one Ansible would discover may not be there.
    extra = dict(variables, render_out=str(out), render_templates=templates, ansible_python_interpreter=sys.executable)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(RENDER_PLAYBOOK),
         "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(name="render_observability")
def _render_observability(tmp_path):
    def render(templates: list[str], **variables) -> Path:
        return render_observability(tmp_path / "rendered", templates, **variables)
    return render


@pytest.fixture(name="render_observability_module", scope="module")
def _render_observability_module(tmp_path_factory):
    """The same, once per test module: a module renders all it checks in one or two runs of Ansible."""

    def render(templates: list[str], **variables) -> Path:
        return render_observability(tmp_path_factory.mktemp("rendered"), templates, **variables)
    return render
