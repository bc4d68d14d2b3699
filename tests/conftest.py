"""Fixtures shared by the whole suite.

Keep this file small: fixtures used by one area of the suite belong in that
subfolder's own ``conftest.py``.
"""

from __future__ import annotations

import pytest

from python_cqrs_core import Mediator


@pytest.fixture
def bus() -> Mediator:
    """A fresh mediator with no handlers, middleware or listeners."""
    return Mediator()
