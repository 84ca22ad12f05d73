"""The package's shape, kept by tests: no import circles between modules, no arrow back up between its rooms (a
subpackage, or a top-level module), and a plugin entry point that stays cheap to import.

The import graph is read from the source (every import, lazy ones and those for type checkers included), so a
circle closed only inside a function or under ``TYPE_CHECKING`` still counts: it is still two modules that need
each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from benchmarks.plugin_import import bytecode_env, one_run

HARNESS = Path(__file__).resolve().parents[2] / "harness"
PLUGIN_IMPORT_MS_MAX = 50.0  # beyond pytest; measured 13.6 to 25.4 ms (README, benchmarks/plugin_import.py)
Graph = Mapping[str, set[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(HARNESS.rglob("*.py"))}


def imported(tree: ast.AST, known: Iterable[str]) -> set[str]:
    """The harness modules a module's source imports (a name imported from a package counts as its submodule when
    one of that name exists)."""
    names = set(known)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in names:
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in names else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the harness modules it imports. ``harness/__init__.py`` is left out: it only names the public API
    for type checkers and loads each name on first use."""
    known = modules()
    return {name: imported(ast.parse(path.read_text(encoding="utf-8")), known) - {name}
            for name, path in known.items() if name != "harness"}


def room(module: str) -> str:
    """A subpackage is one room (``harness.checks``); a top-level module is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def room_graph(graph: Graph) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        rooms.setdefault(room(module), set()).update(room(target) for target in targets if target != "harness")
    for name, targets in rooms.items():
        targets.discard(name)
    return rooms


def circles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
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


def ties(graph: Graph, component: list[str]) -> list[str]:
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    assert len(graph) > 50 and graph["harness.plugin"], "the import graph was not read"
    found = circles(graph)
    assert found == [], [ties(graph, component) for component in found]


def test_no_room_imports_a_room_that_imports_it_back() -> None:
    """Rooms stand in layers: an arrow back up (``checks`` imports ``deploy`` and ``deploy`` imports ``checks``) is
    a circle between rooms even where no two files import each other."""
    rooms = room_graph(import_graph())
    found = circles(rooms)
    assert found == [], [ties(rooms, component) for component in found]


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_circles_are_found(graph: Graph, expected: list[list[str]]) -> None:
    """The checks above can fail: a two- and a three-module circle are found, a chain is not one."""
    assert circles(graph) == expected


def test_a_lazy_import_back_up_counts(tmp_path: Path) -> None:
    """An import inside a function or under TYPE_CHECKING ties two modules as much as one at the top."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.a import X\n"
                     "def f():\n    from harness import b\n    import harness.c\n")
    assert imported(tree, {"harness", "harness.a", "harness.b", "harness.c"}) == {"harness.a", "harness.b",
                                                                                   "harness.c"}
    assert room_graph({"harness.checks.x": {"harness.deploy.y"}, "harness.deploy.y": {"harness.checks.z"}}) == {
        "harness.checks": {"harness.deploy"}, "harness.deploy": {"harness.checks"}}


# What importing the entry point loads beyond pytest: the settings table and what the hooks need at start. A module
# added here costs every pytest run of the environment; the heavy ones (numpy, yaml, jsonschema, onnxruntime,
# the session, the checks) load only when a run engages the harness.
ENTRY_POINT_MODULES = {
    "harness", "harness.builtins", "harness.capacity", "harness.capacity.memory", "harness.config",
    "harness.config.profiles", "harness.config.settings", "harness.errors", "harness.fixtures", "harness.hookspecs",
    "harness.locations", "harness.plugin", "harness.properties", "harness.run_state", "harness.shard",
    "harness.terminal", "harness.text",
}


def test_the_plugin_entry_point_loads_only_what_every_run_needs() -> None:
    script = ("import sys, pytest; before = set(sys.modules); import harness.plugin; "
              "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = set(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                encoding="utf-8").stdout.split())
    assert {name for name in loaded if name.startswith("harness")} == ENTRY_POINT_MODULES
    assert not loaded & {"numpy", "yaml", "jsonschema", "onnxruntime", "onnxruntime_genai", "psutil", "filelock"}


@pytest.mark.serial
def test_the_plugin_entry_point_imports_in_under_50_ms(tmp_path: Path) -> None:
    """Every pytest run of the environment imports ``harness.plugin``: the fastest of seven fresh interpreters (the
    one least disturbed by other tenants of the cores), bytecode cached as an installed package has it, pytest's own
    import excluded (``python -X importtime``; the README's median comes from benchmarks/plugin_import.py)."""
    env = bytecode_env(tmp_path)
    one_run(env)  # compiles and caches the bytecode
    times = [one_run(env)[0] for _ in range(7)]
    assert min(times) < PLUGIN_IMPORT_MS_MAX, times
