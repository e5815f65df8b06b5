"""The package's layout holds: imports flow one way (README, "Layout"), with no cycles,
no deferred imports that hide one, and no private names used across packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import longplay

ROOT = Path(longplay.__file__).parent

LEAVES = {"errors", "atomic", "digests"}
"""Modules that import nothing of longplay, so that any package may use them."""
FOUNDATIONS = {"layers", "audio"}
"""Import nothing internal but the leaves."""
MODEL_PACKAGES = {"autoencoder", "conditioning", "transformer"}
MODELS_NEVER_IMPORT = {"pipelines", "training", "server", "cli", "ui", "diffusion", "config",
                       "checkpoints", "builders", "data", "evaluation"}
TOP_OF_THE_STACK = {"cli": set(), "ui": {"cli"}, "server": {"cli"}}
"""Entry points, and the only units that may import each."""
OPTIONAL_EXTRAS = {"server", "ui"}
"""Units that need an optional extra (FastAPI, Gradio): the command line imports them
inside the command that uses them, so that the others run without the extra."""
SLOW_TO_IMPORT = {"training"}
"""Units whose import costs seconds (the training engine, lightning): the command line
imports them inside the commands that train, export or sample, so that generation
starts without it."""


@dataclass(frozen=True)
class Import:
    importer: str  # the unit (package or top-level module) that imports
    target: str  # the imported unit
    module: str  # the full imported module name
    names: tuple[str, ...]
    deferred: bool  # inside a function
    where: str  # file:line


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> list[Import]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        importer = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        tree = ast.parse(path.read_text(), filename=str(path))
        deferred_nodes = {id(n) for f in ast.walk(tree)
                          if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                          for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [(node.module or "", tuple(a.name for a in node.names))]
            elif isinstance(node, ast.Import):
                modules = [(a.name, ()) for a in node.names]
            else:
                continue
            for module, names in modules:
                if module == "longplay" or not module.startswith("longplay."):
                    continue
                found.append(Import(importer, _unit(module), module, names,
                                    id(node) in deferred_nodes, f"{rel}:{node.lineno}"))
    return found


IMPORTS = _imports()


def _cross(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.importer != i.target]


def test_the_scan_sees_the_package() -> None:
    importers = {i.importer for i in IMPORTS}
    assert {"pipelines", "checkpoints", "cli", "builders"} <= importers
    assert any(i.target == "diffusion" and i.importer == "pipelines" for i in IMPORTS)


def test_leaves_and_foundations_import_nothing_internal() -> None:
    for i in _cross(IMPORTS):
        if i.importer in LEAVES:
            raise AssertionError(f"{i.where}: the leaf {i.importer} imports {i.module}")
        if i.importer in FOUNDATIONS:
            assert i.target in LEAVES, f"{i.where}: {i.importer} imports {i.module}"


def test_model_packages_stay_below_the_rest() -> None:
    for i in _cross(IMPORTS):
        if i.importer in MODEL_PACKAGES:
            assert i.target not in MODELS_NEVER_IMPORT, (
                f"{i.where}: {i.importer} imports {i.module}")


def test_diffusion_works_on_any_network() -> None:
    assert not [i.where for i in _cross(IMPORTS) if i.importer == "diffusion"]


def test_nothing_imports_the_entry_points() -> None:
    for i in _cross(IMPORTS):
        if i.target in TOP_OF_THE_STACK:
            assert i.importer in TOP_OF_THE_STACK[i.target], (
                f"{i.where}: {i.importer} imports the entry point {i.module}")


def test_the_units_form_no_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for i in _cross(IMPORTS):
        graph[i.importer].add(i.target)
    state: dict[str, str] = {}

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = "open"
        for nxt in sorted(graph[unit]):
            if state.get(nxt) == "open":
                cycle = [*path[path.index(nxt):], nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])


def test_no_deferred_import_hides_a_dependency() -> None:
    deferred = [i for i in _cross(IMPORTS) if i.deferred]
    for i in deferred:
        assert i.importer == "cli" and i.target in OPTIONAL_EXTRAS | SLOW_TO_IMPORT, (
            f"{i.where}: {i.module} is imported inside a function; import it at the top "
            "(only the optional extras server and ui, and training, are imported where "
            "they are used)")


def test_the_command_line_starts_without_the_training_engine() -> None:
    """``import longplay.cli.main`` (what every command runs first) leaves lightning and
    longplay.training unimported: a fresh interpreter, so that no other test's imports
    count."""
    code = ("import sys, longplay.cli.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning' "
            "or m.startswith('longplay.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", f"imported at start: {out.strip()[:300]}"


def test_private_names_stay_in_their_unit() -> None:
    for i in _cross(IMPORTS):
        private = [n for n in i.names if n.startswith("_")]
        assert not private, f"{i.where}: {i.importer} imports private {private} from {i.module}"
