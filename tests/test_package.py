"""The package as a whole: what importing the core pulls in, and what it exports."""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys

import python_cqrs_core

INTEGRATIONS = (
    "opentelemetry",
    "sentry_sdk",
    "prometheus_client",
    "structlog",
    "asyncpg",
    "typer",
    "rich",
    "starlette",
    "fastapi",
    "httpx",
    "sqlite3",
)


def test_importing_the_core_imports_no_integration_library():
    script = (
        "import sys, python_cqrs_core\n"
        "from python_cqrs_core import Mediator, BaseCommand, correlation_scope\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({INTEGRATIONS!r}))\n"
        "ours = sorted(m for m in sys.modules if m.startswith('python_cqrs_core.'))\n"
        "print(bad); print(ours)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    bad, ours = result.stdout.splitlines()
    assert bad == "[]"
    for module in ("integrations", "store", "apps", "headers"):
        assert not [name for name in ours if name.startswith(f"'python_cqrs_core.{module}")]


def test_every_public_class_and_function_has_a_docstring():
    checked = 0
    for name in python_cqrs_core.__all__:
        obj = getattr(python_cqrs_core, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or isinstance(obj, functools.partial):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
            checked += 1
    assert checked >= 20
