"""Every example in the docstrings of the core modules runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import inspect
from types import ModuleType

import pytest

CORE_MODULES = [
    "python_cqrs_core._ids",
    "python_cqrs_core.cloudevents",
    "python_cqrs_core.codec",
    "python_cqrs_core.context",
    "python_cqrs_core.errors",
    "python_cqrs_core.headers",
    "python_cqrs_core.interfaces",
    "python_cqrs_core.lifecycle",
    "python_cqrs_core.mediator",
    "python_cqrs_core.messages",
    "python_cqrs_core.names",
    "python_cqrs_core.pii",
    "python_cqrs_core.propagation",
    "python_cqrs_core.registry",
    "python_cqrs_core.transports.routing",
    "python_cqrs_core.validation",
    "python_cqrs_core",  # last: its re-exports were collected from their own modules
]


def doctests_of(module: ModuleType) -> list[doctest.DocTest]:
    """The doctests the standard finder sees, plus those of public names it skips
    (``uuid4`` is a ``functools.partial`` with a docstring, not a function)."""
    found = {t.name: t for t in doctest.DocTestFinder().find(module) if t.examples}
    parser = doctest.DocTestParser()
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        doc = getattr(obj, "__doc__", None)
        qualified = f"{module.__name__}.{name}"
        if not doc or ">>>" not in doc or qualified in found or doc == type(obj).__doc__:
            continue  # no examples, already found, or the docstring of its type (int)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and obj.__module__ != module.__name__:
            continue  # re-exported: its own module runs it
        found[qualified] = parser.get_doctest(doc, dict(vars(module)), qualified, None, 0)
    return list(found.values())


def collect() -> list[doctest.DocTest]:
    tests: dict[str, doctest.DocTest] = {}  # by docstring: a re-export runs once
    for name in CORE_MODULES:
        for test in doctests_of(importlib.import_module(name)):
            tests.setdefault(test.docstring or test.name, test)
    return list(tests.values())


ALL_DOCTESTS = [pytest.param(test, id=test.name) for test in collect()]


def test_the_documented_examples_are_found():
    names = {param.id for param in ALL_DOCTESTS}
    for expected in (
        "python_cqrs_core._ids.uuid4",
        "python_cqrs_core.context",
        "python_cqrs_core.headers",
        "python_cqrs_core.messages.BaseCommand",
        "python_cqrs_core.messages.PaginatedQuery",
        "python_cqrs_core.messages.message_kind",
        "python_cqrs_core.pii",
        "python_cqrs_core.validation.validate_correlation_id",
        "python_cqrs_core.propagation",
        "python_cqrs_core.registry.MessageRegistry",
        "python_cqrs_core.errors.exception_message",
    ):
        assert expected in names


@pytest.mark.parametrize("test", ALL_DOCTESTS)
def test_docstring_examples_run(test: doctest.DocTest):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
    assert result.attempted == len(test.examples)
