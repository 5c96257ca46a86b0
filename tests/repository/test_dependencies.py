"""Every module the code imports comes from a declared dependency, and the lock files pin them all.

The virtualenv is installed from `requirements-dev.lock` with `--require-hashes --no-deps`, so a
package that is only there because another one pulled it in would vanish the day that one stops
needing it; importing it directly means declaring it in pyproject.toml (and `make lock`).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOT_CODE = {".venv", "node_modules", "var", "static", ".git", "build"}
# Imported only by the test suite or the benchmarks: may come from the `dev` extra.
DEV_ONLY_TREES = {"tests", "bench"}
DEV_ONLY_FILES = {Path("localcluster/pytest_plugin.py")}
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
LOCK_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def declared(requirements: list[str]) -> dict[str, str]:
    """name → exact version, from `name==version[; marker]` entries."""
    pins = {}
    for requirement in requirements:
        spec = requirement.split(";")[0].strip()
        name, _, version = spec.partition("==")
        pins[normalise(re.sub(r"\[.*\]", "", name))] = version.strip()
    return pins


def own_top_level_names() -> set[str]:
    names = {path.parent.name for path in REPO.glob("*/__init__.py")}
    names |= {path.stem for path in REPO.glob("*.py")}
    return names | DEV_ONLY_TREES


def imports_by_file() -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if NOT_CODE & set(relative.parts):
            continue
        modules = set()
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
        found[relative] = modules
    return found


@functools.cache
def installed_modules() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def distribution_of(module: str) -> str | None:
    """The installed distribution that provides a top-level module (its own name if several do)."""
    candidates = installed_modules().get(module) or []
    for candidate in candidates:
        if normalise(candidate) == normalise(module):
            return normalise(candidate)
    return normalise(candidates[0]) if candidates else None


def test_every_imported_module_is_a_declared_dependency():
    project = pyproject()["project"]
    runtime = set(declared(project["dependencies"]))
    dev = set(declared(project["optional-dependencies"]["dev"]))
    own = own_top_level_names()
    undeclared = []
    for path, modules in sorted(imports_by_file().items()):
        dev_only = path.parts[0] in DEV_ONLY_TREES or path in DEV_ONLY_FILES
        allowed = runtime | dev if dev_only else runtime
        for module in sorted(modules):
            if module in sys.stdlib_module_names or module in own or module == "__future__":
                continue
            distribution = distribution_of(module)
            if distribution not in allowed:
                undeclared.append(f"{path}: import {module} (from {distribution or 'nothing installed'})")
    assert undeclared == []


def lock_pins(name: str) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for package, version in LOCK_ENTRY.findall((REPO / name).read_text()):
        pins.setdefault(normalise(package), set()).add(version)
    return pins


@pytest.mark.parametrize("lock_file", ["requirements.lock", "requirements-dev.lock"])
def test_the_lock_files_pin_the_declared_versions_with_hashes(lock_file):
    project = pyproject()["project"]
    wanted = declared(project["dependencies"])
    if lock_file == "requirements-dev.lock":
        wanted |= declared(project["optional-dependencies"]["dev"])
    pins = lock_pins(lock_file)

    stale = {
        name: (version, pins.get(name))
        for name, version in wanted.items()
        if version not in pins.get(name, ())
    }
    assert stale == {}, f"pyproject.toml and {lock_file} disagree: run `make lock`"
    text = (REPO / lock_file).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text[text.index("\n", text.index("uv pip compile")) :].strip())
    assert entries and all("--hash=sha256:" in entry for entry in entries)


def test_the_development_lock_agrees_with_the_production_lock():
    runtime, dev = lock_pins("requirements.lock"), lock_pins("requirements-dev.lock")
    assert {name: runtime[name] for name in runtime} == {name: dev.get(name) for name in runtime}
