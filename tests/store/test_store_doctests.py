"""The examples in the store modules' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

STORE_MODULES = [
    "python_cqrs_core.store.backends",
    "python_cqrs_core.store.base",
    "python_cqrs_core.store.columns",
    "python_cqrs_core.store.feed",
    "python_cqrs_core.store.memory",
    "python_cqrs_core.store.records",
    "python_cqrs_core.store.sql",
    "python_cqrs_core.store.sqlite",
    "python_cqrs_core.testing.store_contract",
]


@pytest.mark.parametrize("name", STORE_MODULES)
def test_the_docstring_examples_of_a_store_module_hold(name: str) -> None:
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0, f"{name} has no examples"
    assert results.failed == 0
