"""Finding a service's worker by name: ``module:attribute``, as ``cqrs worker`` takes it.

The attribute is either a :class:`~python_cqrs_core.apps.worker.Worker`, or a factory
that makes one when the worker's event loop runs, so that connections (an asyncpg
pool, a store) are opened in the loop that uses them and closed after it:

- a function, plain or ``async``, returning a ``Worker``;
- an async context manager function (``@asynccontextmanager``) yielding a ``Worker``:
  what it opens before the ``yield`` it closes after, once the worker stopped::

      @asynccontextmanager
      async def worker() -> AsyncIterator[Worker]:
          pool = await asyncpg.create_pool(DATABASE_URL)
          try:
              yield Worker(name="inventory", ...)
          finally:
              await pool.close()

``cqrs worker services.inventory:worker`` imports ``services.inventory`` (from the
current directory, as ``python -m`` would) and runs what :func:`open_worker` gives.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ...errors import CQRSError
from .worker import Worker

__all__ = ["WorkerLoadError", "load_target", "open_worker"]


class WorkerLoadError(CQRSError):
    """``module:attribute`` does not name a worker: a malformed name, a module or
    attribute that does not exist, or an object that is not a worker nor makes one."""


def load_target(spec: str) -> object:
    """The object ``spec`` (``"package.module:attribute"``, the attribute possibly
    dotted) names, importing its module.

    A module that is not there, or an attribute it lacks, is a
    :class:`WorkerLoadError` naming it; an exception raised *by* the module while it
    is imported (a bug in it, a missing setting) propagates unchanged.

    >>> load_target("python_cqrs_core.apps.worker:Worker") is Worker
    True
    >>> load_target("python_cqrs_core.apps.worker")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    python_cqrs_core.apps.worker.loading.WorkerLoadError: expected module:attribute, ...
    """
    module_name, separator, attribute = spec.strip().partition(":")
    if not separator or not module_name or not attribute:
        raise WorkerLoadError(
            f"expected module:attribute, such as services.inventory:worker, got {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise WorkerLoadError(
                f"no module named {module_name!r} (run cqrs worker from the directory that "
                "holds it, or pass --app-dir)"
            ) from None
        raise
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise WorkerLoadError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return found


@asynccontextmanager
async def open_worker(target: object) -> AsyncIterator[Worker]:
    """The worker ``target`` is or makes (see the module documentation), open for the
    block; what a factory opened is closed when the block ends.  Anything else is a
    :class:`WorkerLoadError` saying what it got."""
    if isinstance(target, Worker):
        yield target
        return
    if not callable(target):
        raise WorkerLoadError(
            f"expected a Worker, or a function or async context manager making one; got "
            f"{type(target).__name__}"
        )
    made = target()
    if isinstance(made, AbstractAsyncContextManager) or hasattr(made, "__aenter__"):
        async with made as worker:
            yield _checked(worker, target)
        return
    if inspect.isawaitable(made):
        made = await made
    yield _checked(made, target)


def _checked(made: object, factory: object) -> Worker:
    if not isinstance(made, Worker):
        name = getattr(factory, "__qualname__", repr(factory))
        raise WorkerLoadError(f"{name} gave {type(made).__name__}, not a Worker")
    return made
