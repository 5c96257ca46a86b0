"""The project's modules import one another without cycles, and the project package imports no app.

Built statically (ast) from every import statement in the code, those inside functions and under
`if TYPE_CHECKING:` included: two modules that import each other, even lazily, are one module, or a
third one is missing. Apps import the project package's leaf modules (errors, env helpers, the API's
base classes), never the reverse; only the composition roots that Django and the servers load by
name (the URL configuration, the ASGI/WSGI applications, the development server that runs them all)
name the apps. Tests and benchmarks are not part of the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOT_PROJECT = {".venv", "node_modules", "var", "static", ".git", "build", "tests", "bench"}
PROJECT_PACKAGE = "laborchestrator"
# Loaded by name from settings or the command line, and loading the apps is what they are for.
COMPOSITION_ROOTS = {
    "laborchestrator.urls",
    "laborchestrator.api.urls",
    "laborchestrator.asgi",
    "laborchestrator.wsgi",
    "laborchestrator.devserver",
}


def module_files() -> dict[str, Path]:
    modules = {}
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if NOT_PROJECT & set(relative.parts) or relative.parts[0].endswith(".py"):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path, module: str) -> Iterator[str]:
    """Every module name an import statement in `path` may load (`from a import b`: a and a.b)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            # The module itself, or the nearest enclosing package of ours (`from labs import x`).
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(f"{name}."):
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                lowlink[node] = min(lowlink[node], lowlink[target])
            elif target in on_stack:
                lowlink[node] = min(lowlink[node], index[target])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def top_level(module: str) -> str:
    return module.split(".")[0]


def test_no_module_import_cycles() -> None:
    assert cycles(import_graph()) == []


# App-level cycles not broken yet, by the module that closes them: the labs API's lab-progress and
# console-ticket actions reach into the apps built on labs. Each entry must
# still be needed (the test below fails once it is not, so the list only shrinks).
KNOWN_APP_CYCLE_EDGES = {
    ("labs.api.views", "tutorials"),
    ("labs.api.views", "vncproxy"),
    ("labs.api.serializers", "vncproxy"),
}


def app_graph(*, leave_out: set[tuple[str, str]]) -> dict[str, set[str]]:
    apps: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        if module in COMPOSITION_ROOTS:
            continue
        apps.setdefault(top_level(module), set()).update(
            top_level(target)
            for target in targets
            if top_level(target) != top_level(module) and (module, top_level(target)) not in leave_out
        )
    return apps


def test_no_import_cycles_between_apps() -> None:
    assert cycles(app_graph(leave_out=KNOWN_APP_CYCLE_EDGES)) == []


def test_every_known_app_cycle_is_still_there() -> None:
    graph = import_graph()
    gone = {
        (module, app)
        for module, app in KNOWN_APP_CYCLE_EDGES
        if not any(top_level(target) == app for target in graph.get(module, ()))
    }
    assert gone == set(), "broken: remove them from KNOWN_APP_CYCLE_EDGES"
    assert cycles(app_graph(leave_out=set())) != []


def test_the_project_package_imports_no_app() -> None:
    graph = import_graph()
    apps = {top_level(module) for module in graph} - {PROJECT_PACKAGE}
    offending = {
        module: sorted(target for target in targets if top_level(target) in apps)
        for module, targets in graph.items()
        if top_level(module) == PROJECT_PACKAGE and module not in COMPOSITION_ROOTS
    }
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_the_checks_see_a_cycle_and_a_relative_import(tmp_path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "views.py"
    source.write_text(
        "from . import models\nfrom ..core import errors\n\ndef f():\n    import labs.cluster\n"
    )
    assert set(imported_names(source, "app.sub.views")) == {
        "app.sub",
        "app.sub.models",
        "app.core",
        "app.core.errors",
        "labs.cluster",
    }
