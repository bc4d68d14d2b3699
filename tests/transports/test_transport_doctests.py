"""The examples in the docstrings of the transports run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "python_cqrs_core.integrations.otel",
    "python_cqrs_core.transports.consumer",
    "python_cqrs_core.transports.inbox",
    "python_cqrs_core.transports.memory",
    "python_cqrs_core.transports.redis",
]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_of_the_module_run(name: str):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [test for test in finder.find(module) if test.examples]
    assert tests, f"{name} has no examples"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
