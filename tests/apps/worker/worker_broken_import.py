"""A service module that fails when it is imported (a dependency is missing)."""

import no_such_dependency  # noqa: F401

worker = None
