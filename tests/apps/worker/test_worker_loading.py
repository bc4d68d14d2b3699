"""``module:attribute``: a worker, or a factory making one in the worker's loop."""

from __future__ import annotations

import pytest
import worker_targets

from python_cqrs_core.apps.worker import Worker, WorkerLoadError, load_target, open_worker


@pytest.mark.parametrize(
    "spec", ["worker_targets:worker", "worker_targets:Services.worker", " worker_targets:worker "]
)
def test_a_name_leads_to_the_object_it_names(spec):
    assert load_target(spec) is worker_targets.worker


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("worker_targets", "expected module:attribute"),
        ("worker_targets:", "expected module:attribute"),
        (":worker", "expected module:attribute"),
        ("no_such_module_here:worker", "no module named 'no_such_module_here'"),
        ("worker_targets:nothing", "module 'worker_targets' has no attribute 'nothing'"),
        ("worker_targets:Services.nothing", "has no attribute 'Services.nothing'"),
    ],
)
def test_a_name_that_leads_nowhere_says_why(spec, problem):
    with pytest.raises(WorkerLoadError, match=problem):
        load_target(spec)


def test_an_error_inside_the_module_is_the_modules_own():
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        load_target("worker_broken_import:worker")


@pytest.mark.parametrize("attribute", ["worker", "make_worker", "make_worker_in_the_loop"])
async def test_a_worker_or_a_function_making_one_opens_as_a_worker(attribute):
    async with open_worker(getattr(worker_targets, attribute)) as opened:
        assert isinstance(opened, Worker)
        assert opened.name == "stock"


async def test_an_async_context_manager_closes_what_it_opened_after_the_block():
    worker_targets.events.clear()
    async with open_worker(worker_targets.opened_worker) as opened:
        assert worker_targets.events == ["opened"]
        assert await opened.stop() is True
    assert worker_targets.events == ["opened", "closed"]


@pytest.mark.parametrize(
    ("attribute", "problem"),
    [
        (
            "not_a_worker",
            "expected a Worker, or a function or async context manager making one; got int",
        ),
        ("makes_text", "makes_text gave str, not a Worker"),
    ],
)
async def test_anything_else_is_refused_saying_what_it_is(attribute, problem):
    with pytest.raises(WorkerLoadError, match=problem):
        async with open_worker(getattr(worker_targets, attribute)):
            pass
