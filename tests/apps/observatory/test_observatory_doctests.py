"""The examples in the Observatory's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "python_cqrs_core.apps.observatory.metrics",
    "python_cqrs_core.apps.observatory.security",
    "python_cqrs_core.apps.observatory.views",
]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
