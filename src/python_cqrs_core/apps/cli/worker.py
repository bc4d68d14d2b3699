"""``cqrs worker MODULE:ATTRIBUTE``: run a service's consumers and outbox relay.

::

    cqrs worker services.inventory:worker
    cqrs worker services.inventory:make_worker --grace 20 --metrics-port 9100 --log-json

The attribute is a :class:`~python_cqrs_core.apps.worker.Worker`, or a function or
async context manager making one (see :mod:`python_cqrs_core.apps.worker.loading`);
the module is imported from the current directory (or ``--app-dir``).  The command
configures correlated logging
(:func:`~python_cqrs_core.integrations.logging.configure_logging`: text lines, or
JSON with ``--log-json``), serves the worker's metrics to Prometheus on
``--metrics-port`` (needs the ``[prometheus]`` extra; without the option, the metrics
appear in the worker's status lines in the log), runs the worker, and stops it on
``SIGTERM`` or ``SIGINT`` within ``--grace`` seconds.

Exit codes: ``0`` the worker stopped cleanly (every delivery in flight finished and
acknowledged); ``1`` it did not (work cancelled at the end of the grace, a consumer
loop or the relay failed, the worker's factory raised); ``2`` invalid input (a name
that does not lead to a worker, a bad option, ``--metrics-port`` without
``prometheus_client``).

:func:`register` adds the command to the ``cqrs`` application
(:mod:`python_cqrs_core.apps.cli.commands` calls it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from typing import Annotated, Final

import typer

__all__ = ["INSTALL_PROMETHEUS", "register", "worker"]

INSTALL_PROMETHEUS: Final = (
    "--metrics-port serves Prometheus metrics with prometheus_client, which is not "
    "installed: pip install 'python-cqrs-core[prometheus]' (or leave --metrics-port out: "
    "the worker's status lines in the log carry the same figures)"
)
_LEVELS: Final = ("debug", "info", "warning", "error")


def worker(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTRIBUTE",
            help="The worker to run: a Worker, or a function or async context manager "
            "making one, e.g. services.inventory:worker.",
        ),
    ],
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            help="Seconds a stop may take to finish the messages in flight; what is still "
            "running then is cancelled (and delivered again later).",
        ),
    ] = 30.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            metavar="PORT",
            help="Serve Prometheus metrics on this port (needs prometheus_client).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="The address the metrics are served on.")
    ] = "127.0.0.1",
    app_dir: Annotated[
        str,
        typer.Option("--app-dir", metavar="DIR", help="The directory MODULE is imported from."),
    ] = ".",
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning or error.")
    ] = "info",
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log JSON lines instead of key=value text.")
    ] = False,
) -> None:
    """Run a service's consumers and outbox relay until SIGTERM or Ctrl-C.

    On SIGTERM (or SIGINT) the worker stops taking new messages, finishes and
    acknowledges those in flight, stops the relay, and exits within --grace seconds:
    0 when it stopped cleanly, 1 when work had to be cancelled or something failed.
    """
    # commands imports this module to register it: its helpers are imported here.
    from .commands import CliError, _user_errors

    with _user_errors():
        level = log_level.strip().lower()
        if level not in _LEVELS:
            raise CliError(
                f"--log-level: expected one of {', '.join(_LEVELS)}, got {log_level!r}",
                exit_code=2,
            )
        if metrics_port is not None and importlib.util.find_spec("prometheus_client") is None:
            raise CliError(INSTALL_PROMETHEUS, exit_code=2)
        directory = os.path.abspath(app_dir)
        if not os.path.isdir(directory):
            raise CliError(f"--app-dir: {app_dir!r} is not a directory", exit_code=2)
        sys.path.insert(0, directory)
        clean = asyncio.run(_run(target, grace, metrics_port, metrics_host, level, log_json))
    raise typer.Exit(0 if clean else 1)


async def _run(
    spec: str,
    grace: float,
    metrics_port: int | None,
    metrics_host: str,
    level: str,
    log_json: bool,
) -> bool:
    from ...integrations.logging import configure_logging
    from ...names import WORKER_LOGGER
    from ..worker import WorkerLoadError, load_target, open_worker
    from .commands import CliError

    configure_logging(json=log_json, level=level.upper())
    log = logging.getLogger(WORKER_LOGGER)
    try:
        target = load_target(spec)
        async with open_worker(target) as running:
            server = None
            if metrics_port is not None:
                from ..worker.metrics import serve_metrics

                try:
                    server = serve_metrics(running, metrics_port, metrics_host)
                except OSError as exc:
                    raise CliError(
                        f"--metrics-port: cannot listen on {metrics_host}:{metrics_port}: "
                        f"{exc.strerror or exc}"
                    ) from None
                log.info(
                    "worker %s: metrics on http://%s:%d/metrics",
                    running.name,
                    metrics_host,
                    server.port,
                )
            try:
                return await running.run(grace=grace)
            finally:
                if server is not None:
                    server.close()
    except WorkerLoadError as exc:
        raise CliError(str(exc), exit_code=2) from None
    except (CliError, KeyboardInterrupt):
        raise
    except Exception as exc:
        log.exception("worker %s failed", spec)
        raise CliError(f"the worker {spec} failed: {type(exc).__name__}: {exc}") from None


def register(app: typer.Typer) -> None:
    """Add ``cqrs worker`` to ``app``."""
    app.command("worker")(worker)
