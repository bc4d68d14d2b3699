"""The shape of the package: no import cycles, and each module imports only what its
extra installs (the core: pydantic only).

Both are checked over *every* module of every subpackage, found on disk, so a new
module is covered the day it is added.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

PACKAGE = "python_cqrs_core"
SOURCE = Path(__file__).resolve().parent.parent / "src" / PACKAGE


def all_modules() -> list[str]:
    """Every module of the package, by dotted name (packages by their ``__init__``)."""
    names = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def module_path(name: str) -> Path:
    base = SOURCE.parent.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


# -- import cycles ------------------------------------------------------------------------


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: module level and inside module-level
    ``try``/``if`` blocks, but not under ``if TYPE_CHECKING:`` nor inside functions."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                stack.extend(node.orelse)
                continue
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                stack.extend(handler.body)


def internal_edges(name: str, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports at import time."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        edges.update(target for target in targets if target in modules and target != name)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as a path that returns to its start, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_package_imports_itself_back_through_a_cycle():
    modules = set(all_modules())
    graph = {name: internal_edges(name, modules) for name in modules}
    assert sum(len(edges) for edges in graph.values()) > 50  # the walk saw the imports
    assert find_cycle(graph) is None


# -- third-party imports per module ----------------------------------------------------------

CORE_DEPENDENCIES = {"pydantic"}

# The extra whose libraries a module may import (directly, anywhere in its code).  Every
# other module, new ones included, is held to the core's rule: importing it loads
# nothing but pydantic (drivers are imported only when a backend is opened).
EXTRA_OF = {
    "python_cqrs_core.integrations.otel": "otel",
    "python_cqrs_core.integrations.structlog": "structlog",
    "python_cqrs_core.integrations.prometheus": "prometheus",
    "python_cqrs_core.integrations.sentry": "sentry",
    "python_cqrs_core.apps.cli.commands": "cli",
    "python_cqrs_core.apps.cli._demo": "cli",
    "python_cqrs_core.apps.cli.worker": "cli",
    "python_cqrs_core.apps.cli.dlq": "cli",
    "python_cqrs_core.apps.cli.observatory": "cli",
    "python_cqrs_core.apps.worker.metrics": "prometheus",
    "python_cqrs_core.store.postgres": "postgres",
    "python_cqrs_core.outbox.postgres": "postgres",
    "python_cqrs_core.outbox.sqlalchemy": "sqlalchemy",
    "python_cqrs_core.outbox.tracing": "otel",
    "python_cqrs_core.integrations.faststream": "faststream",
    "python_cqrs_core.transports.redis": "redis",
    "python_cqrs_core.apps.observatory": "observatory",
    "python_cqrs_core.apps.observatory.app": "observatory",
    "python_cqrs_core.apps.observatory.feed": "observatory",
    "python_cqrs_core.apps.observatory.metrics": "observatory",
    "python_cqrs_core.apps.observatory.models": "observatory",
    "python_cqrs_core.apps.observatory.security": "observatory",
    "python_cqrs_core.apps.observatory.views": "observatory",
}
# Modules that use an extra's library when it is installed, importing it lazily inside a
# function guarded by ``except ImportError`` (the runtime test below checks that merely
# importing them loads nothing).
USES_WHEN_INSTALLED = {
    "python_cqrs_core._optional_otel": "otel",
    "python_cqrs_core.integrations.logging": "structlog",
}
# Modules whose libraries are development tools rather than an extra.
DEV_ONLY = {
    "python_cqrs_core.testing.pytest_plugin": {"pytest", "pytest-asyncio"},
    "python_cqrs_core.testing.store_contract": {"pytest"},
}


def _requirement_names(requirements: list[str], extra: str | None) -> set[str]:
    """Distribution names required, for ``extra`` (or unconditionally when None)."""
    names = set()
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        marker = marker.replace("'", '"')
        if extra is None and "extra" in marker:
            continue
        if extra is not None and f'extra == "{extra}"' not in marker:
            continue
        name = spec.strip().split("[")[0]
        for stop in "<>=!~ (":
            name = name.split(stop)[0]
        names.add(_canonical(name))
    return names


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def closure(distributions: set[str]) -> set[str]:
    """``distributions`` and everything they require, transitively."""
    seen: set[str] = set()
    todo = list(distributions)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_names(requires, None) - seen)
    return seen


def direct_third_party_imports(module: str) -> set[str]:
    """Top-level names of the libraries ``module``'s own code imports, anywhere in it."""
    tree = ast.parse(module_path(module).read_text())
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops - set(sys.stdlib_module_names) - {PACKAGE, "__future__"}


def test_a_module_with_an_extra_imports_only_the_libraries_of_that_extra():
    owners = metadata.packages_distributions()
    own = metadata.requires("python-cqrs-core") or []
    problems = []
    for module in all_modules():
        allowed = {_canonical(d) for d in CORE_DEPENDENCIES | DEV_ONLY.get(module, set())}
        for table in (EXTRA_OF, USES_WHEN_INSTALLED):
            if module in table:
                allowed |= _requirement_names(own, table[module])
        for top in sorted(direct_third_party_imports(module)):
            distributions = {_canonical(d) for d in owners.get(top, [top])}
            if not distributions & closure(allowed):
                problems.append(f"{module} imports {top} ({', '.join(sorted(distributions))})")
    assert problems == []
    assert EXTRA_OF.keys() | USES_WHEN_INSTALLED.keys() <= set(all_modules())  # real modules


_PROBE = """
import json, sys
before = set(sys.modules)
import importlib
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


def imported_top_levels(module: str) -> set[str]:
    """Top-level modules that importing ``module`` loads, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_any_module_without_an_extra_loads_pydantic_and_nothing_else():
    """The core, the store, the testing helpers, every subpackage's ``__init__``: in a
    fresh interpreter, importing one loads no third-party library but pydantic's."""
    modules = [m for m in all_modules() if m not in EXTRA_OF and m not in DEV_ONLY]
    assert {"python_cqrs_core.mediator", "python_cqrs_core.store.sqlite"} <= set(modules)
    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = dict(zip(modules, pool.map(imported_top_levels, modules), strict=True))
    owners = metadata.packages_distributions()
    allowed = closure({_canonical(d) for d in CORE_DEPENDENCIES})
    problems = []
    for module, tops in sorted(loaded.items()):
        for top in sorted(tops - set(sys.stdlib_module_names) - {PACKAGE}):
            if top.startswith("_") and top not in owners:
                continue  # an interpreter-private module (_sysconfigdata..., _virtualenv)
            distributions = {_canonical(d) for d in owners.get(top, [top])}
            if not distributions & allowed:
                problems.append(f"{module} loads {top} ({', '.join(sorted(distributions))})")
    assert problems == []
