"""The execution environment definition has what the collection needs to run from AWX.

ansible-builder reads meta/execution-environment.yml twice over: as this collection's metadata (when
rotor.vps is installed in an execution environment, its requirement files are named relative to the
collection's root) and as the definition that `ansible-builder build` makes an image from (the
checkout's root execution-environment.yml, a link to it, so that the same relative names resolve).
Both readings run here through ansible-builder itself; then the requirement files are checked
against what the code imports and uses: a Python package a plugin imports, a filter's library, a
collection a role calls.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS = ROOT / ".cache" / "collections"
DEFINITION = ROOT / "meta" / "execution-environment.yml"
BUILD_DEFINITION = ROOT / "execution-environment.yml"
BUILDER = Path(sys.executable).parent / "ansible-builder"

# What the controller needs by the project's own requirements (the runtime libraries of
# requirements/dev.txt): the Docker SDK, psycopg with its binary libpq, passlib (password_hash),
# cryptography, Jinja2.
PROJECT_PACKAGES = {"docker": set(), "psycopg": {"binary"}, "passlib": set(), "cryptography": set(), "jinja2": set()}

# Filters the roles call whose library Ansible imports on the controller only when they run.
FILTER_PACKAGES = {"password_hash": "passlib"}

# Collections whose content runs from playbooks without being a dependency (this one, and ansible-core's).
OWN_COLLECTIONS = {"rotor.vps", "ansible.builtin", "ansible.legacy"}

# One line of a bindep file: a package name, optional [profiles] and optional version constraints.
BINDEP_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*(\s+\[[!A-Za-z0-9:._ -]+\])?(\s+(<|<=|>|>=|==|!=)[^\s]+)*$")

FQCN = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\b")


def _definition() -> dict:
    return yaml.safe_load(DEFINITION.read_text())


def _requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a pip or bindep file: comments and blank lines dropped."""
    lines = (re.sub(r"(^|\s+)#.*$", "", line).strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _python_requirements() -> dict[str, Requirement]:
    path = ROOT / _definition()["dependencies"]["python"]
    return {canonicalize_name(req.name): req for req in map(Requirement, _requirement_lines(path))}


def third_party_imports(sources: dict[str, str]) -> dict[str, list[str]]:
    """Top-level modules imported by ``sources`` (name -> Python text) outside the standard library,
    Ansible and the collections namespace, each with the files that import it."""
    found: dict[str, list[str]] = {}
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", "ansible", "ansible_collections"):
                    continue
                found.setdefault(top, [])
                if name not in found[top]:
                    found[top].append(name)
    return found


def missing_packages(imports: dict[str, list[str]], requirements: dict[str, Requirement],
                     distributions: dict[str, list[str]]) -> list[str]:
    """One message per imported module that no requirement provides (``distributions`` maps a
    top-level module to the distributions that install it)."""
    missing = []
    for module, files in sorted(imports.items()):
        provided_by = {canonicalize_name(dist) for dist in distributions.get(module, [])}
        if not provided_by:
            missing.append("%s (imported by %s) is installed by no distribution here: add it to requirements/dev.txt"
                           % (module, ", ".join(files)))
        elif not provided_by & set(requirements):
            missing.append("%s (imported by %s) needs one of %s in the EE's python requirements"
                           % (module, ", ".join(files), ", ".join(sorted(provided_by))))
    return missing


def used_collections(texts: dict[str, str], known: set[str]) -> dict[str, list[str]]:
    """Collections (namespace.name, among ``known``) whose content ``texts`` name by FQCN, with the files."""
    used: dict[str, list[str]] = {}
    for name, text in texts.items():
        for match in FQCN.finditer(text):
            collection = "%s.%s" % match.groups()
            if collection in known and collection not in OWN_COLLECTIONS:
                used.setdefault(collection, [])
                if name not in used[collection]:
                    used[collection].append(name)
    return used


def _installed_collections() -> set[str]:
    """Every collection this Python environment can import (the `ansible` package's and this one)."""
    import ansible_collections  # pylint: disable=import-outside-toplevel

    names = set()
    for base in ansible_collections.__path__:
        for manifest in Path(base).glob("*/*/MANIFEST.json"):
            names.add("%s.%s" % (manifest.parent.parent.name, manifest.parent.name))
    return names


def _ansible_texts() -> dict[str, str]:
    """The playbooks, the roles' YAML and templates and the plugins: where collections are named."""
    paths = list((ROOT / "playbooks").glob("*.yml")) + list((ROOT / "plugins").rglob("*.py"))
    paths += [p for p in (ROOT / "roles").rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml", ".j2")]
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted(paths)}


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BUILDER), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)
    assert proc.returncode == 0, "ansible-builder %s failed:\n%s%s" % (args[0], proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


@pytest.fixture(name="introspected", scope="module")
def _introspected(tmp_path_factory):
    """`ansible-builder introspect` over the collections path where this checkout is rotor.vps,
    with the definition's requirement files as the user's: what the EE build runs in its builder stage.
    (Sanitizing, which --sanitize once asked for, is what introspect always does since ansible-builder 3.)"""
    out = tmp_path_factory.mktemp("introspect")
    assert (COLLECTIONS / "ansible_collections" / "rotor" / "vps" / "galaxy.yml").exists(), "make collection first"
    deps = _definition()["dependencies"]
    proc = _run("introspect", str(COLLECTIONS), "--user-pip", str(ROOT / deps["python"]),
                "--user-bindep", str(ROOT / deps["system"]),
                "--write-pip", str(out / "requirements.txt"), "--write-bindep", str(out / "bindep.txt"))
    assert "non-PEP508" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    data = yaml.safe_load(proc.stdout.split("\n---\n", 1)[1])
    return {"data": data, "pip": out / "requirements.txt", "bindep": out / "bindep.txt"}


def _from(lines: list[str], source: str) -> list[str]:
    suffix = "  # from collection %s" % source
    return [line[:-len(suffix)] for line in lines if line.endswith(suffix)]


@pytest.mark.parametrize("kind", ["python", "system"])
def test_introspect_finds_the_collections_requirements(introspected, kind):
    expected = _requirement_lines(ROOT / _definition()["dependencies"][kind])
    assert expected, "%s requirements are empty" % kind
    lines = introspected["data"][kind]
    # Once as rotor.vps's own metadata (paths relative to the collection's root) ...
    assert _from(lines, "rotor.vps") == expected
    # ... and once as the EE definition's (the user's) requirements.
    assert _from(lines, "user") == expected
    written = (introspected["pip" if kind == "python" else "bindep"]).read_text().splitlines()
    assert [line for line in written if line] == lines


def test_python_requirements_parse():
    for line in _requirement_lines(ROOT / _definition()["dependencies"]["python"]):
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            pytest.fail("meta/ee-requirements.txt: %r is no PEP 508 requirement: %s" % (line, exc))


def test_system_requirements_parse():
    for line in _requirement_lines(ROOT / _definition()["dependencies"]["system"]):
        assert BINDEP_LINE.match(line), "meta/ee-bindep.txt: %r is no bindep line" % line


def test_build_context_is_made_from_the_definition(tmp_path):
    """`ansible-builder create` (what `build` does before it runs the container engine) resolves the
    definition's files; the context holds exactly them and the galaxy collections."""
    assert BUILD_DEFINITION.is_symlink() and BUILD_DEFINITION.resolve() == DEFINITION
    _run("create", "-f", str(BUILD_DEFINITION), "-c", str(tmp_path / "context"))
    built = tmp_path / "context" / "_build"
    deps = _definition()["dependencies"]
    assert (built / "requirements.txt").read_text() == (ROOT / deps["python"]).read_text()
    assert (built / "bindep.txt").read_text() == (ROOT / deps["system"]).read_text()
    assert yaml.safe_load((built / "requirements.yml").read_text()) == deps["galaxy"]


def test_plugins_imports_are_ee_requirements():
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "plugins").rglob("*.py"))}
    # The helper a role runs on the controller with ansible-playbook's interpreter.
    sources.update({str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "roles").glob("*/files/*.py"))})
    imports = third_party_imports(sources)
    assert imports, "no third-party import found in plugins/: the scan is broken"
    missing = missing_packages(imports, _python_requirements(), importlib.metadata.packages_distributions())
    assert not missing, "\n".join(missing)


def test_filters_libraries_are_ee_requirements():
    requirements = _python_requirements()
    texts = _ansible_texts()
    for filter_name, package in FILTER_PACKAGES.items():
        users = [name for name, text in texts.items() if re.search(r"\|\s*%s\b" % filter_name, text)]
        if users:
            assert package in requirements, "%s (filter %s in %s) is not an EE requirement" % (package, filter_name, users)


def test_project_packages_are_ee_requirements():
    requirements = _python_requirements()
    for package, extras in PROJECT_PACKAGES.items():
        assert package in requirements, "%s is missing from meta/ee-requirements.txt" % package
        assert extras <= requirements[package].extras, "%s needs the extras %s" % (package, sorted(extras))


def test_used_collections_are_dependencies():
    galaxy_yml = yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"]
    ee_collections = {c["name"]: c.get("version", "*") for c in _definition()["dependencies"]["galaxy"]["collections"]}
    used = used_collections(_ansible_texts(), _installed_collections())
    assert {"community.docker", "community.postgresql"} <= set(used), "the FQCN scan found %s" % sorted(used)
    for collection, files in sorted(used.items()):
        assert collection in galaxy_yml, "%s (used in %s) is not in galaxy.yml's dependencies" % (collection, files[0])
        assert collection in ee_collections, "%s (used in %s) is not in the EE's galaxy collections" % (collection, files[0])
    # One list, kept in two files: the same collections and version ranges.
    assert ee_collections == galaxy_yml


# The checks themselves, on inputs made to fail them.

def test_import_scan_sees_what_is_outside_the_standard_library():
    sources = {"a.py": "import os\nimport yaml\nfrom ansible.module_utils.basic import AnsibleModule\n",
               "b.py": "try:\n    from requests.adapters import HTTPAdapter\nexcept ImportError:\n    pass\n",
               "c.py": "from . import sibling\nfrom ansible_collections.rotor.vps.plugins import x\n"}
    assert third_party_imports(sources) == {"yaml": ["a.py"], "requests": ["b.py"]}


@pytest.mark.parametrize(("imports", "requirements", "expected"), [
    ({"docker": ["m.py"]}, ["docker>=7"], []),
    ({"yaml": ["m.py"]}, ["PyYAML"], []),
    ({"requests": ["m.py"]}, ["docker>=7"], ["requests (imported by m.py) needs one of requests"]),
    ({"nowhere": ["m.py"]}, [], ["nowhere (imported by m.py) is installed by no distribution"]),
])
def test_missing_packages(imports, requirements, expected):
    reqs = {canonicalize_name(r.name): r for r in map(Requirement, requirements)}
    distributions = {"docker": ["docker"], "yaml": ["PyYAML"], "requests": ["requests"]}
    messages = missing_packages(imports, reqs, distributions)
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected):
        assert message.startswith(start), message


def test_collection_scan():
    texts = {"t.yml": "- community.general.ini_file:\n- rotor.vps.haproxy_rotate:\n- ansible.builtin.debug:\n",
             "u.yml": "hosts: [acme.example.com]\nx: \"{{ y | community.general.json_query('a') }}\"\n"}
    known = {"community.general", "rotor.vps", "ansible.builtin"}
    assert used_collections(texts, known) == {"community.general": ["t.yml", "u.yml"]}


def test_project_sync_installs_this_checkout(tmp_path):
    """What AWX runs in the project's root at a project sync (without the dependencies, which come
    from Galaxy there): rotor.vps is installed from the checkout, without what galaxy.yml ignores."""
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "ANSIBLE_COLLECTIONS_PATH": str(tmp_path),
           "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "install", "-r",
                           "collections/requirements.yml", "--collections-path", str(tmp_path), "--no-deps"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = tmp_path / "ansible_collections" / "rotor" / "vps"
    assert (installed / "playbooks" / "rotate.yml").exists() and (installed / "MANIFEST.json").exists()
    assert not (installed / ".venv").exists() and not (installed / ".cache").exists()
