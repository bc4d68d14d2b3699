"""Helpers for testing code built on python-cqrs-core: capture what a mediator
dispatched, and assert whole causation chains in one readable spec.

::

    from python_cqrs_core.testing import assert_chain, capture

    with capture(bus) as dispatched:
        await bus.send(PlaceOrder(order_id="o-1"))

    assert_chain(dispatched, '''
        PlaceOrder
        └── OrderPlaced
            ├── ReserveInventory
            └── NotifyCustomer  !failed
    ''')

- :func:`capture` / :class:`Capture` / :class:`Dispatch`: every message dispatched
  through a mediator, with its outcome, error, handlers and parent
  (:mod:`python_cqrs_core.testing.capture`);
- :func:`assert_chain`, :func:`render_chain`, :class:`ChainSpecError`: check a
  captured or recorded causation tree against a drawn spec
  (:mod:`python_cqrs_core.testing.chains`);
- pytest fixtures (``cqrs_bus``, ``cqrs_dispatched``, ``cqrs_store``,
  ``cqrs_recorder``), opt-in with
  ``pytest_plugins = ["python_cqrs_core.testing.pytest_plugin"]``.

This package imports neither pytest nor any store backend driver; only the plugin
module imports pytest.
"""

from .capture import Capture, Dispatch, DispatchOutcome, capture
from .chains import ChainSource, ChainSpecError, assert_chain, render_chain

__all__ = [
    "Capture",
    "ChainSource",
    "ChainSpecError",
    "Dispatch",
    "DispatchOutcome",
    "assert_chain",
    "capture",
    "render_chain",
]
