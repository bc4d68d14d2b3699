"""The ``cqrs`` commands: read causation trees out of a message store from a terminal.

Installed with the ``cli`` extra (``pip install "python-cqrs-core[cli]"``)::

    cqrs demo                              # record two concurrent requests, print them
    cqrs list                              # the most recent correlation ids
    cqrs trace req-4f1c2a9b7d3e            # one business operation as a tree
    cqrs trace req-4f1c2a9b7d3e --flat     # ... as a chronological table
    cqrs show 6c1f0d1e-...                 # one message with its payload and headers
    cqrs effects 6c1f0d1e-...              # everything a message caused
    cqrs causes 6c1f0d1e-...               # the chain from the root down to a message

Every reading command takes ``--store URL`` and ``--json`` (machine-readable output on
stdout and nothing else).  The store is ``--store``, else the ``CQRS_STORE_URL``
environment variable, else ``sqlite:///cqrs.db`` in the current directory.  Reading
commands open the store read-only: a missing store is reported, never created or
migrated by them.

Exit codes: ``0`` success, ``1`` nothing found (unknown id, missing store, store
unreachable), ``2`` invalid input (malformed id or URL, unknown option).  User errors
are one line on stderr, never a traceback.

Rendering uses rich: colours on a terminal, plain text in pipes and CI logs (rich
drops styles when stdout is not a TTY, and honours ``NO_COLOR`` and ``COLUMNS``).
The core library never imports this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.json import JSON
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ...store import (
    DEFAULT_STORE_URL,
    STORE_URL_ENV,
    CausationNode,
    MessageRecord,
    MessageStore,
    StoreOpenError,
    open_store,
)
from ...validation import validate_correlation_id

if TYPE_CHECKING:
    from ._demo import DemoResult

__all__ = [
    "CliError",
    "app",
    "record_line",
    "render_chain",
    "render_record",
    "render_table",
    "render_tree",
    "resolve_store_url",
    "short_id",
]

# Width used when stdout is not a terminal and COLUMNS is unset: wide enough that a
# message stays on one line in CI logs and for grep (rich's default would be 80).
_PIPE_WIDTH = 400

_KIND_STYLE = {"command": "cyan", "query": "blue", "event": "magenta"}
_OK, _FAILED = "✓", "✗"


class CliError(Exception):
    """A user error: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


app = typer.Typer(
    name="cqrs",
    help="Inspect the causation trees recorded in a python-cqrs-core message store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        metavar="URL",
        help=(
            f"Store URL: memory://, sqlite:///path.db or postgresql://... "
            f"[default: ${STORE_URL_ENV}, else {DEFAULT_STORE_URL}]"
        ),
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts (and nothing else on stdout).")
]
FullIdsOption = Annotated[
    bool, typer.Option("--full-ids", help="Print whole message ids instead of 8 hex digits.")
]
MessageIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="MESSAGE_ID", help="A message id (UUID), as `cqrs trace --full-ids` prints it."
    ),
]


# -- store URL and running ---------------------------------------------------------------


def resolve_store_url(option: str | None) -> str:
    """The store to read: ``--store``, else ``$CQRS_STORE_URL``, else ``./cqrs.db``.

    >>> resolve_store_url("memory://")
    'memory://'
    """
    for candidate in (option, os.environ.get(STORE_URL_ENV)):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return DEFAULT_STORE_URL


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (``None`` for other schemes, or in-memory)."""
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://").removeprefix("/").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


async def _open_existing(url: str) -> MessageStore:
    """Open the store read-only; a missing SQLite file is an error, not a new store."""
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        raise CliError(
            f"no message store at {path} (from {url}); run `cqrs demo` to create one, "
            f"or pass --store / set {STORE_URL_ENV}"
        )
    return await _open(url, read_only=True)


async def _open(url: str, *, read_only: bool = False) -> MessageStore:
    try:
        return await open_store(url, read_only=read_only)
    except ValueError as exc:
        raise CliError(f"invalid store URL {url!r}: {exc}", exit_code=2) from None
    except StoreOpenError as exc:
        # Opening fails for reasons the user fixes: server down, unknown database,
        # wrong credentials, a file that is not a store.  Name the cause, no traceback.
        raise CliError(str(exc)) from None


def _run(store_option: str | None, action: Callable[[MessageStore, str], Awaitable[None]]) -> None:
    """Open the store, run ``action(store, url)`` on it, close it."""
    url = resolve_store_url(store_option)

    async def run() -> None:
        store = await _open_existing(url)
        try:
            await action(store, url)
        finally:
            await store.close()

    asyncio.run(run())


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a :class:`CliError` into one line on stderr and its exit code."""
    try:
        yield
    except CliError as err:
        _stderr().print(f"error: {err}")
        raise typer.Exit(err.exit_code) from None


def _parse_message_id(value: str) -> UUID:
    try:
        return UUID(value.strip())
    except ValueError:
        raise CliError(
            f"{value!r} is not a message id: expected a UUID such as "
            "6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44 (`cqrs trace ... --full-ids` prints them)",
            exit_code=2,
        ) from None


def _parse_correlation_id(value: str) -> str:
    try:
        return str(validate_correlation_id(value.strip()))
    except ValueError as exc:
        raise CliError(f"{value!r} is not a correlation id: {exc}", exit_code=2) from None


# -- consoles and JSON ---------------------------------------------------------------------


def _stdout() -> Console:
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH
    return _console(width=width)


def _stderr() -> Console:
    return _console(stderr=True, soft_wrap=True)


def _console(**options: Any) -> Console:
    # Stored text (ids, types, error messages) is printed as is: no rich markup,
    # no :emoji: codes, no automatic highlighting.
    return Console(markup=False, emoji=False, highlight=False, **options)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# -- rendering -----------------------------------------------------------------------------


def short_id(value: UUID | str | None, *, full: bool = False) -> str:
    """The first 8 hex digits of a UUID (an opaque id is kept whole; ``None`` is ``-``).

    >>> short_id(UUID("6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44"))
    '6c1f0d1e'
    """
    if value is None:
        return "-"
    if isinstance(value, UUID):
        return str(value) if full else value.hex[:8]
    try:
        parsed = UUID(value)
    except ValueError:
        return value
    return str(parsed) if full else parsed.hex[:8]


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _error_of(record: MessageRecord) -> tuple[str, str] | None:
    """The error a failed record shows: its own, else its first failed handler's."""
    if not record.failed:
        return None
    if record.error_type is not None:
        return record.error_type, record.error_message or ""
    for handler in record.handlers:
        if handler.outcome == "failed":
            return handler.error_type or "Exception", handler.error_message or ""
    return "Exception", ""


def _handlers_text(record: MessageRecord) -> Text:
    if not record.handlers:
        return Text("no handler", style="dim")
    several = len(record.handlers) > 1
    text = Text()
    for index, handler in enumerate(record.handlers):
        if index:
            text.append(", ")
        text.append(handler.handler)
        if several and handler.outcome == "failed":
            text.append(f" {_FAILED}", style="red")
    return text


def record_line(record: MessageRecord, *, full_ids: bool = False) -> Text:
    """One message on one line: outcome mark, kind, type, id, handlers, duration, who, when
    and, for a failure, the error type and message.

    ``✓ command PlaceOrder 6c1f0d1e  PlaceOrderHandler  48.2 ms  by user:alice  23:40:01.123``
    """
    failed = record.failed
    line = Text()
    line.append(_FAILED if failed else _OK, style="bold red" if failed else "green")
    line.append(" ")
    line.append(record.kind, style=_KIND_STYLE.get(record.kind, ""))
    line.append(" ")
    line.append(record.message_type, style="bold")
    line.append(" ")
    line.append(short_id(record.message_id, full=full_ids), style="dim")
    line.append("  ")
    line.append_text(_handlers_text(record))
    line.append(f"  {_duration(record.duration_ms)}")
    if record.requested_by is not None:
        line.append(f"  by {record.requested_by}")
    line.append(f"  {_clock(record.requested_at)}", style="dim")
    error = _error_of(record)
    if error is not None:
        error_type, message = error
        line.append(f"  {error_type}", style="bold red")
        if message:
            line.append(f": {_one_line(message)}", style="red")
    return line


def _one_line(text: str, limit: int = 240) -> str:
    r"""The first line of ``text``, at most ``limit`` characters (``…`` marks a cut).

    >>> _one_line("connection refused\nretrying in 5 s")
    'connection refused …'
    """
    lines = text.strip().splitlines() or [""]
    first = lines[0]
    if len(first) > limit:
        return first[: limit - 1] + "…"
    return first + " …" if len(lines) > 1 else first


def render_tree(node: CausationNode, *, full_ids: bool = False) -> Tree:
    """A causation tree as a rich :class:`~rich.tree.Tree`, one :func:`record_line` each.

    A root that is an *orphan* (its cause is not in the store) says so.
    """
    tree = Tree(_node_line(node, full_ids=full_ids), guide_style="dim")
    stack: list[tuple[CausationNode, Tree]] = [(node, tree)]
    while stack:  # iterative: a deep chain does not hit the recursion limit
        current, branch = stack.pop()
        for child in current.children:
            stack.append((child, branch.add(_node_line(child, full_ids=full_ids))))
    return tree


def _node_line(node: CausationNode, *, full_ids: bool) -> Text:
    line = record_line(node.record, full_ids=full_ids)
    if node.orphan:
        cause = short_id(node.record.causation_id, full=full_ids)
        line.append(f"  (caused by {cause}, which is not in this tree)", style="yellow")
    return line


def render_chain(chain: Sequence[MessageRecord], *, full_ids: bool = False) -> Tree:
    """A root-to-target causation chain, each message indented under its cause."""
    if not chain:
        raise ValueError("an empty chain has nothing to render")
    tree = Tree(record_line(chain[0], full_ids=full_ids), guide_style="dim")
    branch = tree
    for record in chain[1:]:
        branch = branch.add(record_line(record, full_ids=full_ids))
    return tree


def render_table(records: Iterable[MessageRecord], *, full_ids: bool = False) -> Table:
    """Messages as a chronological table with correlation and causation columns."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    # Cells never wrap: a table too wide for the terminal is printed whole (see
    # _print_wide) and the terminal wraps its lines, as kubectl and docker do, rather
    # than folding ids and names into unreadable slivers.  The outcome names the error
    # type; the tree view and `cqrs show` print the message too.
    for header in ("time (UTC)", "kind", "type", "id", "caused by", "correlation", "handler"):
        table.add_column(header, no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("requested by", no_wrap=True)
    for record in _chronological(records):
        error = _error_of(record)
        outcome = (
            Text(f"{_OK} succeeded", style="green")
            if error is None
            else Text(f"{_FAILED} {error[0]}", style="red")
        )
        table.add_row(
            _clock(record.requested_at),
            Text(record.kind, style=_KIND_STYLE.get(record.kind, "")),
            Text(record.message_type, style="bold"),
            short_id(record.message_id, full=full_ids),
            short_id(record.causation_id, full=full_ids),
            record.correlation_id,
            _handlers_text(record),
            _duration(record.duration_ms),
            outcome,
            record.requested_by or "-",
        )
    return table


def _chronological(records: Iterable[MessageRecord]) -> list[MessageRecord]:
    """Sorted by creation time (a cause is created before its effects), then position."""
    return sorted(
        records, key=lambda r: (r.requested_at, r.position if r.position is not None else -1)
    )


def render_record(record: MessageRecord) -> RenderableType:
    """One message in full: ids, times, outcome per handler, headers and payload."""
    error = _error_of(record)
    handlers: list[Text] = []
    for handler in record.handlers:
        ok = handler.outcome == "succeeded"
        line = Text(f"{_OK if ok else _FAILED} ", style="green" if ok else "red")
        line.append(f"{handler.handler}  {_duration(handler.duration_ms)}")
        if not ok:
            line.append(f"  {handler.error_type}: {handler.error_message}", style="red")
        handlers.append(line)
    fields: list[tuple[str, list[Text]]] = [
        (
            "outcome",
            [
                Text(f"{_OK} succeeded", style="green")
                if error is None
                else Text(f"{_FAILED} failed: {error[0]}: {error[1]}".rstrip(": "), style="red")
            ],
        ),
        ("duration", [Text(_duration(record.duration_ms))]),
        ("handlers", handlers or [Text("none", style="dim")]),
        ("correlation id", [Text(record.correlation_id)]),
        ("caused by", [Text(record.causation_id or "- (a root message)")]),
        ("requested by", [Text(record.requested_by or "-")]),
        ("requested at", [Text(record.requested_at.astimezone(UTC).isoformat())]),
        ("recorded at", [Text(record.recorded_at.astimezone(UTC).isoformat())]),
        ("position", [Text("-" if record.position is None else str(record.position))]),
        (
            "headers",
            [Text(f"{key}: {value}") for key, value in sorted(record.headers.items())]
            or [Text("none", style="dim")],
        ),
    ]
    width = max(len(label) for label, _ in fields) + 2
    body = Text()
    for label, values in fields:
        for index, value in enumerate(values):
            body.append(f"{label if index == 0 else '':<{width}}", style="bold")
            body.append_text(value)
            body.append("\n")
    title = Text()
    title.append(record.kind, style=_KIND_STYLE.get(record.kind, ""))
    title.append(" ")
    title.append(record.message_type, style="bold")
    title.append(f" {record.message_id}")
    body.rstrip()
    return Group(title, body, Text("payload", style="bold"), JSON.from_data(record.payload))


def _print_wide(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width, even when that is wider than the console."""
    unbounded = console.options.update_width(_PIPE_WIDTH * 10)
    width = Measurement.get(console, unbounded, table).maximum
    if width > console.width:
        console = _console(width=width)
    console.print(table, crop=False)


def _print_trees(
    console: Console, correlation_id: str, trees: Sequence[CausationNode], *, full_ids: bool
) -> None:
    records = [node.record for tree in trees for _, node in tree.walk()]
    failed = sum(record.failed for record in records)
    first = min(record.requested_at for record in records)
    header = Text()
    header.append(f"correlation {correlation_id}", style="bold")
    header.append(
        f"  {_count(len(records), 'message')}, {failed} failed, "
        f"{_count(len(trees), 'root')}, from {_timestamp(first)}"
    )
    console.print(header)
    for tree in trees:
        console.print(render_tree(tree, full_ids=full_ids))


# -- commands --------------------------------------------------------------------------------


@app.command()
def trace(
    correlation_id: Annotated[
        str,
        typer.Argument(
            metavar="CORRELATION_ID", help="The correlation id of the business operation."
        ),
    ],
    store: StoreOption = None,
    flat: Annotated[
        bool, typer.Option("--flat", help="A chronological table instead of the tree.")
    ] = False,
    as_json: JsonOption = False,
    full_ids: FullIdsOption = False,
) -> None:
    """Show every message of one business operation as a causation tree.

    Each line: outcome, kind, type, id, handler(s), duration, requested_by, time, and
    the error of a failure.  Several root messages under one correlation id print one
    tree each.
    """
    with _user_errors():
        cid = _parse_correlation_id(correlation_id)

        async def action(message_store: MessageStore, url: str) -> None:
            if flat:
                records = await message_store.by_correlation(cid)
                if not records:
                    raise CliError(f"no messages with correlation id {cid!r} in {url}")
                if as_json:
                    _print_json([record.to_dict() for record in _chronological(records)])
                else:
                    _print_wide(_stdout(), render_table(records, full_ids=full_ids))
                return
            trees = await message_store.build_causation_tree(cid)
            if not trees:
                raise CliError(f"no messages with correlation id {cid!r} in {url}")
            if as_json:
                _print_json([tree.to_dict() for tree in trees])
            else:
                _print_trees(_stdout(), cid, trees, full_ids=full_ids)

        _run(store, action)


@app.command()
def show(
    message_id: MessageIdArgument, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Show one message: ids, times, handlers, headers and payload."""
    with _user_errors():
        target = _parse_message_id(message_id)

        async def action(message_store: MessageStore, url: str) -> None:
            record = await _get(message_store, target, url)
            if as_json:
                _print_json(record.to_dict())
            else:
                _stdout().print(render_record(record))

        _run(store, action)


@app.command()
def effects(
    message_id: MessageIdArgument,
    store: StoreOption = None,
    as_json: JsonOption = False,
    full_ids: FullIdsOption = False,
) -> None:
    """Show everything a message caused, directly or not, as a tree."""
    with _user_errors():
        target = _parse_message_id(message_id)

        async def action(message_store: MessageStore, url: str) -> None:
            record = await _get(message_store, target, url)
            descendants = await message_store.trace_effects(target)
            if as_json:
                _print_json([effect.to_dict() for effect in descendants])
                return
            console = _stdout()
            console.print(
                f"{_count(len(descendants), 'message')} caused by {record.kind} "
                f"{record.message_type} {short_id(record.message_id, full=full_ids)}"
            )
            console.print(render_tree(_subtree(record, descendants), full_ids=full_ids))

        _run(store, action)


@app.command()
def causes(
    message_id: MessageIdArgument,
    store: StoreOption = None,
    as_json: JsonOption = False,
    full_ids: FullIdsOption = False,
) -> None:
    """Show the chain of causes of a message, from its root down to it."""
    with _user_errors():
        target = _parse_message_id(message_id)

        async def action(message_store: MessageStore, url: str) -> None:
            chain = await message_store.trace_causation(target)
            if not chain:
                raise CliError(f"no message with id {target} in {url}")
            if as_json:
                _print_json([record.to_dict() for record in chain])
                return
            console = _stdout()
            root = chain[0]
            console.print(
                f"{_count(len(chain), 'message')} from the root {root.message_type} "
                f"to {chain[-1].message_type}"
            )
            if root.causation_id is not None:
                console.print(
                    f"(the chain starts at a message whose cause, {root.causation_id}, "
                    "is not in the store)",
                    style="yellow",
                )
            console.print(render_chain(chain, full_ids=full_ids))

        _run(store, action)


@app.command("list")
def list_correlations(
    store: StoreOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="How many correlation ids to list.")
    ] = 20,
    as_json: JsonOption = False,
) -> None:
    """List the recent correlation ids with their outcome and message counts."""

    async def action(message_store: MessageStore, url: str) -> None:
        recent = await message_store.correlations(limit)
        if as_json:
            _print_json([summary.to_dict() for summary in recent])
            return
        console = _stdout()
        if not recent:
            console.print(f"no messages recorded in {url} yet")
            return
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("correlation id")
        table.add_column("first recorded")
        table.add_column("outcome")
        table.add_column("messages", justify="right")
        for summary in recent:
            table.add_row(
                summary.correlation_id,
                _timestamp(summary.first_recorded_at),
                Text(summary.outcome, style="red" if summary.failed else "green"),
                str(summary.message_count),
            )
        console.print(table)

    with _user_errors():
        _run(store, action)


@app.command()
def demo(store: StoreOption = None) -> None:
    """Run the demo shop and print the two causation trees it recorded.

    Two order requests run concurrently, each under its own correlation id; one of
    them fails in the SMS gateway.  Both are recorded in the store (created if it does
    not exist), read back and printed, with the commands that show them again.
    """
    from ._demo import run_demo_on  # the demo domain loads only for this command

    async def run() -> None:
        message_store = await _open(resolve_store_url(store))
        try:
            result = await run_demo_on(message_store)
        finally:
            await message_store.close()
        _print_demo(_stdout(), result)

    with _user_errors():
        asyncio.run(run())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _print_demo(console: Console, result: DemoResult) -> None:
    console.print(
        f"Two requests arrived at once (asyncio.gather), each under its own correlation id; "
        f"recorded in {result.store_url} in {result.elapsed_s:.2f} s:"
    )
    for request in result.requests:
        line = Text(f"  {request.correlation_id}  {request.summary}  -> ")
        if request.error is None:
            line.append(f"{_OK} order {request.order_id} placed", style="green")
        else:
            line.append(
                f"{_FAILED} the request failed with "
                f"{type(request.error).__name__}: {request.error}",
                style="red",
            )
        console.print(line)
    for request in result.requests:
        console.print()
        _print_trees(console, request.correlation_id, request.trees, full_ids=False)
    console.print()
    if result.store_url.startswith("memory:"):
        console.print(
            "memory:// lives only as long as this process: run the demo on "
            f"{DEFAULT_STORE_URL} to inspect the trees again with `cqrs trace`."
        )
        return
    store_flag = f" --store {result.store_url}"
    console.print("See them again with:")
    for request in result.requests:
        console.print(f"  cqrs trace {request.correlation_id}{store_flag}")
    failed = [
        node.record
        for request in result.requests
        for tree in request.trees
        for _, node in tree.walk()
        if node.record.failed and not any(child.record.failed for child in node.children)
    ]
    for record in failed:
        console.print(f"  cqrs show {record.message_id}{store_flag}    # where it failed")
        console.print(f"  cqrs causes {record.message_id}{store_flag}  # how it got there")


async def _get(store: MessageStore, message_id: UUID, url: str) -> MessageRecord:
    record = await store.get(message_id)
    if record is None:
        raise CliError(f"no message with id {message_id} in {url}")
    return record


def _subtree(root: MessageRecord, descendants: Sequence[MessageRecord]) -> CausationNode:
    """Arrange ``trace_effects`` output under its root message, by causation id.

    A descendant whose cause is not among them (it cannot happen in a consistent
    store) is attached to the root rather than dropped.
    """
    nodes = {str(root.message_id): CausationNode(root, [])}
    for record in descendants:
        nodes.setdefault(str(record.message_id), CausationNode(record, []))
    top = nodes[str(root.message_id)]
    for record in descendants:
        node = nodes[str(record.message_id)]
        parent = nodes.get(str(record.causation_id)) if record.causation_id else None
        (parent if parent is not None and parent is not node else top).children.append(node)
    return top
