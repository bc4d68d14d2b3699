"""python_cqrs_core.testing as a package: light to import, documented, examples run."""

from __future__ import annotations

import doctest
import importlib
import inspect
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import python_cqrs_core.testing as testing

MODULES = [
    "python_cqrs_core.testing",
    "python_cqrs_core.testing.capture",
    "python_cqrs_core.testing.chains",
    "python_cqrs_core.testing.pytest_plugin",
]


def test_importing_the_helpers_imports_neither_pytest_nor_the_store_contract():
    script = (
        "import sys\n"
        "from python_cqrs_core.testing import assert_chain, capture\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')))\n"
        "print('python_cqrs_core.testing.store_contract' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split("\n")[:2] == ["[]", "False"]


def test_the_pytest_plugin_is_never_registered_to_load_by_itself():
    registered = {entry.value for entry in entry_points(group="pytest11")}
    assert not [value for value in registered if value.startswith("python_cqrs_core")]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring(module_name: str):
    module = importlib.import_module(module_name)
    assert module.__doc__ and module.__doc__.strip()
    checked = 0
    for name in module.__all__:
        # a pytest fixture wraps its function; a type alias has no docstring of its own
        obj = getattr(getattr(module, name), "__wrapped__", getattr(module, name))
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
            checked += 1
    assert checked >= 3


def test_the_package_exports_the_helpers_of_its_modules():
    assert testing.__all__ == [
        "Capture",
        "ChainSource",
        "ChainSpecError",
        "Dispatch",
        "DispatchOutcome",
        "assert_chain",
        "capture",
        "render_chain",
    ]


@pytest.mark.parametrize("module_name", MODULES[1:3])
def test_docstring_examples_run(module_name: str):
    module = importlib.import_module(module_name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    if module_name.endswith("capture"):
        assert runner.tries >= 5
