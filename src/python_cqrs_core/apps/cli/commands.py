"""The ``cqrs`` commands: read causation trees out of a message store from a terminal.

Installed with the ``cli`` extra (``pip install "python-cqrs-core[cli]"``)::

    cqrs demo                              # record two concurrent requests, print them
    cqrs list --failed --since 1h          # the operations that failed in the last hour
    cqrs trace req-4f1c2a9b7d3e            # one business operation as a tree
    cqrs trace req-4f1c2a9b7d3e --flat     # ... as a chronological table
    cqrs show 6c1f0d1e                     # one message with its payload and headers
    cqrs effects 6c1f0d1e                  # everything a message caused
    cqrs causes 6c1f0d1e                   # the chain from the root down to a message
    cqrs worker services.inventory:worker  # run a service's consumers and outbox relay
    cqrs dlq list -d orders.events         # dead letters (and show, replay)
    cqrs observatory                       # the live web view of the store

A message id is typed whole, or as a unique prefix of at least 4 hex digits: the 8
digits the trees print are enough.  Every reading command takes ``--store URL`` and
``--json`` (machine-readable output on stdout and nothing else).  The store is
``--store``, else the ``CQRS_STORE_URL`` environment variable, else
``sqlite:///cqrs.db`` in the current directory.  Reading commands open the store
read-only: nothing is ever created, migrated or written by them.

Exit codes: ``0`` success, ``1`` nothing found (unknown id, missing store, store
unreachable or unreadable), ``2`` invalid input (malformed id, URL, option or value).
A user error is one ``error:`` line on stderr, never a traceback, and a password in
the store URL is never printed.

Stored text is printed through :func:`~python_cqrs_core.apps.presentation.printable`:
control characters and escape sequences show as ``\\x1b``, ``\\r``, ``\\u202e``..., so
what a producer recorded can never drive the terminal.  Rendering uses rich: colours on
a terminal, plain text in pipes and CI logs (rich drops styles when stdout is not a
TTY, and honours ``NO_COLOR`` and ``COLUMNS``).  The core library never imports this
module.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar, cast
from urllib.parse import unquote, unquote_plus
from uuid import UUID

import typer
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.highlighter import JSONHighlighter
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from rich.tree import Tree
from typer.core import TyperGroup

from ...store import (
    DEFAULT_STORE_URL,
    MAX_LIMIT,
    STORE_URL_ENV,
    CausationNode,
    CorrelationSummary,
    MessageRecord,
    MessageStore,
    RecordFilter,
    StoreOpenError,
    open_store,
    url_without_password,
)
from ...validation import validate_correlation_id
from ..presentation import (
    chronological,
    clock,
    delivery_line,
    display_handler_name,
    display_type_name,
    duration,
    effects_tree,
    error_summary,
    first_line,
    printable,
    short_id,
    terminal_json,
    timestamp,
)

if TYPE_CHECKING:
    from ._demo import DemoResult

__all__ = [
    "MIN_PREFIX_DIGITS",
    "CliError",
    "StoreUrl",
    "app",
    "command_to_type",
    "parse_since",
    "render_chain",
    "render_record",
    "render_summaries",
    "render_table",
    "render_tree",
    "resolve_store_url",
]

T = TypeVar("T")

# Width used when stdout is not a terminal and COLUMNS is unset: wide enough that a
# message stays on one line in CI logs and for grep (rich's default would be 80).
_PIPE_WIDTH = 400

_KIND_STYLE = {"command": "cyan", "query": "blue", "event": "magenta"}
_OK, _FAILED = "✓", "✗"

MIN_PREFIX_DIGITS = 4
"""The fewest hex digits a message id prefix may have (as git asks of a commit)."""
_CANDIDATES = 10  # how many messages an ambiguous prefix lists
_TYPE_SCAN_PAGE = 500  # summaries per page when --type is a short name
# The two name columns of --flat share what 100 columns leave after time, kind, ids
# and duration (InventoryReserved and OrderTimelineProjection fit whole).
_FLAT_TYPE_WIDTH, _FLAT_HANDLER_WIDTH = 19, 23


class CliError(Exception):
    """A user error: printed as one ``error:`` line on stderr (followed by the indented
    ``details`` lines, if any), then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = tuple(details)


class _UsageError(Protocol):
    """What a command-line parsing error of typer (click's exceptions) offers."""

    exit_code: int

    def format_message(self) -> str: ...


# The module of the exceptions typer raises: its own copy of click's (typer >= 0.2x
# vendors click), or click's (older typer).  Named through a public class, so the CLI
# works with both.
_PARSING_ERRORS = sys.modules[typer.BadParameter.__module__]
_ClickException: type[Exception] = _PARSING_ERRORS.ClickException
_NoArgsIsHelpError: type[Exception] | None = getattr(_PARSING_ERRORS, "NoArgsIsHelpError", None)


class _CqrsGroup(TyperGroup):
    """The ``cqrs`` command group, whose usage errors (an unknown option, a value out
    of range) are one ``error:`` line as well, instead of click's usage block."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            result = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except typer.Abort:
            _print_error("aborted")
            sys.exit(1)
        except _ClickException as exc:
            error = cast(_UsageError, exc)
            if _NoArgsIsHelpError is not None and isinstance(exc, _NoArgsIsHelpError):
                typer.echo(error.format_message(), err=True)  # `cqrs` alone: the help
            else:
                _print_error(f"{error.format_message()}{_help_hint(exc)}")
            sys.exit(error.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


def _help_hint(exc: Exception) -> str:
    command_path = getattr(getattr(exc, "ctx", None), "command_path", None)
    if not isinstance(command_path, str):
        return ""
    words = ["cqrs", *command_path.split()[1:], "--help"]
    return f" (see `{' '.join(words)}`)"


app = typer.Typer(
    name="cqrs",
    cls=_CqrsGroup,
    help="Inspect the causation trees recorded in a python-cqrs-core message store; run "
    "a service's worker, act on its dead letters, serve the Observatory.",
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
        metavar="MESSAGE_ID",
        help=(
            "A message id (UUID), or a unique prefix of it of at least "
            f"{MIN_PREFIX_DIGITS} hex digits, such as the 8 that `cqrs trace` prints."
        ),
    ),
]


# -- the store URL, and never printing its password -------------------------------------


def resolve_store_url(option: str | None) -> str:
    """The store to read: ``--store``, else ``$CQRS_STORE_URL``, else ``./cqrs.db``.

    An empty ``--store`` is a mistake (a variable that was not set, in a script), not
    a request for the default: it is refused.  An empty ``$CQRS_STORE_URL`` counts as
    unset.

    >>> resolve_store_url("memory://")
    'memory://'
    >>> resolve_store_url(" ")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    python_cqrs_core.apps.cli.commands.CliError: --store is empty: give a store URL ...
    """
    if option is not None:
        if not option.strip():
            raise CliError(
                "--store is empty: give a store URL such as sqlite:///cqrs.db, or leave "
                f"--store out to use ${STORE_URL_ENV}, else {DEFAULT_STORE_URL}",
                exit_code=2,
            )
        return option.strip()
    from_environment = os.environ.get(STORE_URL_ENV, "").strip()
    return from_environment or DEFAULT_STORE_URL


_PASSWORD_KEYS = frozenset(("password", "sslpassword"))


@dataclass(frozen=True)
class StoreUrl:
    """A store URL as the user gave it, and what of it may be printed.

    ``shown`` is the URL as :func:`~python_cqrs_core.store.url_without_password`
    prints it.  :meth:`scrub` masks the URL, and its password, in any other text: a
    driver's error message may quote either.  The password is looked for in the URL's
    text itself, between ``user:`` and the last ``@``, and in ``password=`` query
    options, so that one holding ``#``, ``/`` or ``?`` (which a URL parser reads as
    something else) is masked all the same.

    >>> url = StoreUrl.of("postgresql://app:s3cret@db:5432/cqrs")
    >>> url.shown
    'postgresql://app:***@db:5432/cqrs'
    >>> url.scrub("password authentication failed (s3cret) for postgresql://app:s3cret@db:5432/cqrs")
    'password authentication failed (***) for postgresql://app:***@db:5432/cqrs'
    """

    text: str
    shown: str
    passwords: tuple[str, ...]
    given: bool
    """True when the URL came from ``--store`` or ``$CQRS_STORE_URL``, not the default."""

    @classmethod
    def of(cls, url: str, *, given: bool = True) -> StoreUrl:
        """Find the passwords in ``url`` and build its printable form."""
        passwords: set[str] = set()
        _, separator, rest = url.partition("://")
        user_info, at, _ = rest.rpartition("@")
        password = user_info.partition(":")[2]
        if separator and at and password:
            passwords |= {password, unquote(password)}
        query = url.partition("?")[2].partition("#")[0]
        for pair in query.split("&"):
            key, _, value = pair.partition("=")
            if unquote_plus(key).lower() in _PASSWORD_KEYS and value:
                passwords |= {value, unquote_plus(value)}
        ordered = tuple(sorted(passwords, key=len, reverse=True))
        return cls(url, _replace_all(url_without_password(url), ordered), ordered, given)

    def scrub(self, text: str) -> str:
        """``text`` with the URL, and any password of it, masked."""
        return _replace_all(text.replace(self.text, self.shown), self.passwords)

    def explain(self, error: BaseException) -> str:
        """One printable line saying why the store at this URL could not be opened."""
        return self.scrub(_first_line_of(error))


def _first_line_of(error: BaseException) -> str:
    """The first line of an error's message, whole (an error line may be long: it is
    the only thing the user gets), or its type when it has no message."""
    return first_line(str(error), limit=2000) or type(error).__name__


def _replace_all(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:  # longest first, so a decoded form inside another is caught
        text = text.replace(secret, "***")
    return text


def _store_url(option: str | None) -> StoreUrl:
    given = option is not None or bool(os.environ.get(STORE_URL_ENV, "").strip())
    return StoreUrl.of(resolve_store_url(option), given=given)


async def _open(url: StoreUrl, *, read_only: bool) -> MessageStore:
    try:
        return await open_store(url.text, read_only=read_only)
    except (ValueError, TypeError) as exc:
        message = url.explain(exc)
        if url.shown not in message:  # say which URL, unless the store's message does
            message = f"invalid store URL {url.shown}: {message}"
        raise CliError(message, exit_code=2) from None
    except StoreOpenError as exc:
        # Opening fails for reasons the user fixes: server down, unknown database,
        # wrong credentials, a file that is not a store.  Name the cause, no traceback.
        message = url.explain(exc)
        if not url.given:
            message += (
                f" (no --store given and ${STORE_URL_ENV} unset: pass one, or run "
                "`cqrs demo` to create this store)"
            )
        raise CliError(message) from None


def _query(url: StoreUrl, fetch: Callable[[MessageStore, StoreUrl], Awaitable[T]]) -> T:
    """Open the store read-only, return ``await fetch(store, url)``, close the store.

    An error of the store while reading (a corrupted file, a lost connection) is a
    :class:`CliError` naming it, not a traceback.
    """

    async def run() -> T:
        store = await _open(url, read_only=True)
        try:
            return await fetch(store, url)
        except CliError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver's error, e.g. a corrupt file
            raise CliError(
                f"cannot read the message store {url.shown}: "
                f"{type(exc).__name__}: {url.scrub(_first_line_of(exc))}"
            ) from None
        finally:
            await store.close()

    return asyncio.run(run())


@contextmanager
def _showing(url: StoreUrl) -> Iterator[None]:
    """Around printing what the store returned: a value of the wrong type in a
    corrupted or hand-edited row (a duration that is text, a handler that is a
    number), which the store decoded as it was, is a :class:`CliError`, not a
    traceback halfway through the output."""
    try:
        yield
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        raise CliError(
            f"the message store {url.shown} holds a record that cannot be shown (it may be "
            f"corrupted): {type(exc).__name__}: {url.scrub(_first_line_of(exc))}"
        ) from None


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a :class:`CliError` into its ``error:`` line on stderr and its exit code."""
    try:
        yield
    except CliError as err:
        _print_error(str(err), err.details)
        raise typer.Exit(err.exit_code) from None


def _print_error(message: str, details: Sequence[str] = ()) -> None:
    console = _stderr()
    console.print(f"error: {printable(message)}")
    for line in details:
        console.print(f"  {printable(line)}")


# -- parsing ids and filters -----------------------------------------------------------------

_HEX_DIGITS = frozenset("0123456789abcdef")
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))


def _message_ref(value: str) -> UUID | str:
    """A whole message id, or the prefix of one in the text form ``str(uuid)``."""
    text = value.strip().lower()
    try:
        return UUID(text)
    except ValueError:
        pass
    digits = text.replace("-", "")
    if MIN_PREFIX_DIGITS <= len(digits) < 32 and set(digits) <= _HEX_DIGITS:
        return "-".join(digits[start:end] for start, end in _UUID_GROUPS if digits[start:end])
    raise CliError(
        f"{value!r} is not a message id: expected a UUID, or at least {MIN_PREFIX_DIGITS} "
        "of its first hex digits, such as 6c1f0d1e (as `cqrs trace` prints them)",
        exit_code=2,
    )


def _parse_correlation_id(value: str) -> str:
    try:
        return str(validate_correlation_id(value.strip()))
    except ValueError as exc:
        raise CliError(f"{value!r} is not a correlation id: {exc}", exit_code=2) from None


_AGO = re.compile(r"(\d{1,9})\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """The moment ``--since`` names: a time ago (``30m``, ``1h``, ``2d``, also ``s`` and
    ``w``) or an ISO 8601 date or time (without a timezone it is UTC, as every time
    the CLI prints).

    >>> now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    >>> parse_since("90m", now).isoformat()
    '2026-01-02T10:30:00+00:00'
    >>> parse_since("2026-01-01T08:00").isoformat()
    '2026-01-01T08:00:00+00:00'
    >>> parse_since("yesterday")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: expected a time ago such as 30m, 1h or 2d, or an ISO 8601 date or time ...
    """
    text = value.strip()
    ago = _AGO.fullmatch(text)
    if ago is not None:
        amount, unit = ago.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "expected a time ago such as 30m, 1h or 2d, or an ISO 8601 date or time such "
            f"as 2026-01-02T08:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- consoles and JSON -------------------------------------------------------------------------


def _stdout() -> Console:
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH
    return _console(width=width)


def _stderr() -> Console:
    return _console(stderr=True, soft_wrap=True)


def _console(**options: Any) -> Console:
    # No rich markup, no :emoji: codes, no automatic highlighting: stored text is
    # printed as the (escaped) text it is.
    return Console(markup=False, emoji=False, highlight=False, **options)


def _print_json(data: Any) -> None:
    typer.echo(terminal_json(data))


# -- rendering -----------------------------------------------------------------------------


def _handlers_text(record: MessageRecord) -> Text:
    if not record.handlers:
        return Text("no handler", style="dim")
    several = len(record.handlers) > 1
    text = Text()
    for index, handler in enumerate(record.handlers):
        if index:
            text.append(", ")
        text.append(printable(display_handler_name(handler.handler)))
        if several and handler.outcome == "failed":
            text.append(f" {_FAILED}", style="red")
    return text


def _mark(record: MessageRecord) -> Text:
    if record.failed:
        return Text(_FAILED, style="bold red")
    return Text(_OK, style="green")


def _record_text(record: MessageRecord, *, full_ids: bool) -> Text:
    """One message on one line, after its outcome mark: kind, type, id, the service
    that recorded it (when the record names one), handlers, duration, who, when and,
    for a failure, the error type and the first line of its message.

    ``command PlaceOrder 6c1f0d1e [orders]  PlaceOrderHandler  48.2 ms  by ada  23:40:01.123``

    Type and handler names are shown short (their last part); every stored text is
    escaped (:func:`~python_cqrs_core.apps.presentation.printable`).
    """
    line = Text()
    line.append(record.kind, style=_KIND_STYLE.get(record.kind, ""))
    line.append(" ")
    line.append(printable(display_type_name(record.message_type)), style="bold")
    line.append(" ")
    line.append(short_id(record.message_id, full=full_ids), style="dim")
    if record.service is not None:  # which service recorded it, when services share a store
        line.append(f" [{printable(record.service)}]", style="cyan")
    line.append("  ")
    line.append_text(_handlers_text(record))
    line.append(f"  {duration(record.duration_ms)}")
    if record.requested_by is not None:
        line.append(f"  by {printable(record.requested_by)}")
    line.append(f"  {clock(record.requested_at)}", style="dim")
    error = error_summary(record)
    if error is not None:
        line.append(f"  {printable(error.type)}", style="bold red")
        if error.message:
            line.append(f": {printable(error.message)}", style="red")
    return line


class _Hanging:
    """A lead (an outcome mark, a field's label), then a text whose further lines (its
    own, or wrapped on a narrow terminal) are indented under the text's start: a tree
    node keeps its lines under itself, right of its mark and of the tree's guides, a
    field of ``cqrs show`` keeps its value in its column, and no line ends in padding."""

    def __init__(self, lead: Text, text: Text) -> None:
        self.lead = lead
        self.text = text

    @property
    def _indent(self) -> int:
        return self.lead.cell_len + 1 if self.lead else 0

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        indent = self._indent
        lines = self.text.wrap(console, max(options.max_width - indent, 1), overflow="fold")
        for index, line in enumerate(lines):
            line.rstrip()
            start = self.lead + " " if index == 0 and self.lead else Text(" " * indent)
            yield from (start + line).render(console, end="")
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        indent = self._indent
        text = Measurement.get(console, options, self.text)
        return Measurement(text.minimum + indent, text.maximum + indent)


def _node_label(record: MessageRecord, *, full_ids: bool, note: Text | None = None) -> _Hanging:
    """A tree node: its outcome mark, then :func:`_record_text` with an optional note
    at its end."""
    text = _record_text(record, full_ids=full_ids)
    if note is not None:
        text.append_text(note)
    return _Hanging(_mark(record), text)


def render_tree(node: CausationNode, *, full_ids: bool = False) -> Tree:
    """A causation tree as a rich :class:`~rich.tree.Tree`, one line a message (more
    when it wraps, under its own text).  A node that is an *orphan* (its cause is not
    in the store) says so."""
    tree = Tree(_tree_label(node, full_ids=full_ids), guide_style="dim")
    stack: list[tuple[CausationNode, Tree]] = [(node, tree)]
    while stack:  # iterative: a deep chain does not hit the recursion limit
        current, branch = stack.pop()
        for child in current.children:
            stack.append((child, branch.add(_tree_label(child, full_ids=full_ids))))
    return tree


def _tree_label(node: CausationNode, *, full_ids: bool) -> _Hanging:
    note = None
    if node.orphan:
        cause = printable(short_id(node.record.causation_id, full=full_ids))
        note = Text(f"  (caused by {cause}, which is not in this tree)", style="yellow")
    if node.deliveries:  # what became of it in the services that consumed it
        note = note or Text()
        for delivery in node.deliveries:
            mark = _FAILED if delivery.failed else _OK
            style = "red" if delivery.failed else "dim"
            note.append(f"\n{mark} ⇢ {printable(delivery_line(delivery))}", style=style)
    return _node_label(node.record, full_ids=full_ids, note=note)


def render_chain(chain: Sequence[MessageRecord], *, full_ids: bool = False) -> Tree:
    """A root-to-target causation chain, each message indented under its cause."""
    if not chain:
        raise ValueError("an empty chain has nothing to render")
    tree = Tree(_node_label(chain[0], full_ids=full_ids), guide_style="dim")
    branch = tree
    for record in chain[1:]:
        branch = branch.add(_node_label(record, full_ids=full_ids))
    return tree


def _same_for_all(values: Iterable[str | None]) -> str | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def render_table(records: Iterable[MessageRecord], *, full_ids: bool = False) -> Table:
    """Messages as a chronological table: outcome, time, kind, type, id, cause,
    service (when a record names one), handler and duration (``--flat``).

    Built to fit 100 columns, one line a message: the correlation id, the same on
    every row, is left to the heading (:func:`_operation_heading`), and so is
    ``requested_by`` when it is the same on every row (a column otherwise); types and
    handlers are shown short, several handlers as their number, and a name longer
    than its column ends in ``…`` (``cqrs show`` prints them whole).  With
    ``full_ids``, or a ``requested by`` column, a row may be wider.
    """
    rows = chronological(records)
    requested_by_column = _same_for_all(r.requested_by for r in rows) is None and any(
        r.requested_by for r in rows
    )
    service_column = any(r.service is not None for r in rows)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("type", no_wrap=True, max_width=_FLAT_TYPE_WIDTH, overflow="ellipsis")
    table.add_column("id", no_wrap=True)
    table.add_column("cause", no_wrap=True)
    if service_column:
        table.add_column("service", no_wrap=True, max_width=12, overflow="ellipsis")
    table.add_column("handler", no_wrap=True, max_width=_FLAT_HANDLER_WIDTH, overflow="ellipsis")
    table.add_column("duration", justify="right", no_wrap=True)
    if requested_by_column:
        table.add_column(
            "requested by", justify="right", no_wrap=True, max_width=16, overflow="ellipsis"
        )
    for record in rows:
        cells: list[RenderableType] = [
            _mark(record),
            clock(record.requested_at),
            Text(record.kind, style=_KIND_STYLE.get(record.kind, "")),
            Text(printable(display_type_name(record.message_type)), style="bold"),
            short_id(record.message_id, full=full_ids),
            printable(short_id(record.causation_id, full=full_ids)),
            *([printable(record.service or "-")] if service_column else []),
            _table_handlers(record),
            duration(record.duration_ms),
        ]
        if requested_by_column:
            cells.append(printable(record.requested_by or "-"))
        table.add_row(*cells)
    return table


def _table_handlers(record: MessageRecord) -> Text:
    if len(record.handlers) <= 1:
        return _handlers_text(record)
    failed = sum(handler.outcome == "failed" for handler in record.handlers)
    text = Text(f"{len(record.handlers)} handlers")
    if failed:
        text.append(f" ({failed} {_FAILED})", style="red")
    return text


def render_record(record: MessageRecord) -> RenderableType:
    """One message in full: whole type and handler names, outcome and error of each
    handler, ids, times, headers and payload.  Error messages keep their lines, each
    indented under the first; every stored text is escaped."""
    error = error_summary(record)
    handlers: list[Text] = []
    for handler in record.handlers:
        ok = handler.outcome == "succeeded"
        line = Text(f"{_OK if ok else _FAILED} ", style="green" if ok else "red")
        line.append(f"{printable(handler.handler)}  {duration(handler.duration_ms)}")
        if not ok:
            line.append(f"  {printable(handler.error_type or 'Exception')}", style="red")
            if handler.error_message:
                line.append(
                    f": {printable(handler.error_message, keep_newlines=True)}", style="red"
                )
        handlers.append(line)
    if error is None:
        outcome = Text(f"{_OK} succeeded", style="green")
    else:
        # The summary holds the first line; the detail view shows the whole message.
        whole = _whole_error_message(record)
        outcome = Text(f"{_FAILED} failed: {printable(error.type)}", style="red")
        if whole:
            outcome.append(f": {printable(whole, keep_newlines=True)}", style="red")
    fields: list[tuple[str, list[Text]]] = [
        ("outcome", [outcome]),
        ("duration", [Text(duration(record.duration_ms))]),
        ("handlers", handlers or [Text("none", style="dim")]),
        ("correlation id", [Text(printable(record.correlation_id))]),
        ("caused by", [Text(printable(record.causation_id or "- (a root message)"))]),
        ("requested by", [Text(printable(record.requested_by or "-"))]),
        ("requested at", [Text(record.requested_at.astimezone(UTC).isoformat())]),
        ("recorded at", [Text(record.recorded_at.astimezone(UTC).isoformat())]),
        ("position", [Text("-" if record.position is None else str(record.position))]),
    ]
    if record.service is not None:
        fields.append(("service", [Text(printable(record.service))]))
    fields.append(
        (
            "headers",
            [Text(printable(f"{key}: {value}")) for key, value in sorted(record.headers.items())]
            or [Text("none", style="dim")],
        )
    )
    if record.payload_redacted:
        redacted = printable(", ".join(record.pii_fields))
        fields.append(("redacted", [Text(f"personal data, when recorded: {redacted}")]))
    width = max(len(label) for label, _ in fields) + 1
    title = Text()
    title.append(record.kind, style=_KIND_STYLE.get(record.kind, ""))
    title.append(" ")
    title.append(printable(record.message_type), style="bold")
    title.append(f" {record.message_id}")
    lines: list[RenderableType] = [title]
    for label, values in fields:
        for index, value in enumerate(values):
            lead = Text(f"{label if index == 0 else '':<{width}}", style="bold")
            lines.append(_Hanging(lead, value))
    payload = JSONHighlighter()(Text(terminal_json(record.payload)))
    return Group(*lines, Text("payload", style="bold"), payload)


def _whole_error_message(record: MessageRecord) -> str | None:
    """The whole message of the error :func:`error_summary` summarises."""
    if record.error_type is not None:
        return record.error_message
    failed = (handler for handler in record.handlers if handler.outcome == "failed")
    return next((handler.error_message for handler in failed), None)


def _print_table(console: Console, table: Table) -> None:
    """Print ``table`` in the console's width if its words fit there, each cell wrapping
    at spaces; else at its natural width, and the terminal wraps its rows (as
    ``kubectl`` does), rather than ids and names folded into slivers."""
    unbounded = console.options.update_width(_PIPE_WIDTH * 10)
    measured = Measurement.get(console, unbounded, table)
    if measured.minimum > console.width:
        console = _console(width=measured.maximum)
    console.print(table, crop=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _operation_heading(
    correlation_id: str, records: Sequence[MessageRecord], roots: int | None = None
) -> Text:
    """``correlation <id>  <n> messages, <f> failed[, <r> roots][, by <who>], from <when>``."""
    failed = sum(record.failed for record in records)
    first = min(record.requested_at for record in records)
    heading = Text()
    heading.append(f"correlation {printable(correlation_id)}", style="bold")
    parts = [_count(len(records), "message"), f"{failed} failed"]
    if roots is not None:
        parts.append(_count(roots, "root"))
    who = _same_for_all(record.requested_by for record in records)
    if who is not None:
        parts.append(f"by {printable(who)}")
    heading.append(f"  {', '.join(parts)}, from {timestamp(first)}")
    return heading


def _print_trees(
    console: Console, correlation_id: str, trees: Sequence[CausationNode], *, full_ids: bool
) -> None:
    records = [node.record for tree in trees for _, node in tree.walk()]
    console.print(_Hanging(Text(), _operation_heading(correlation_id, records, roots=len(trees))))
    for tree in trees:
        console.print(render_tree(tree, full_ids=full_ids))


def render_summaries(summaries: Sequence[CorrelationSummary]) -> Table:
    """Business operations, one a row: correlation id, root message type (short),
    outcome, message and failure counts, who requested it and when it started."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("correlation id", overflow="fold")
    table.add_column("type", overflow="fold")
    table.add_column("outcome", no_wrap=True)
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("requested by", overflow="fold")
    table.add_column("started (UTC)", justify="right", no_wrap=True)  # no padding after it
    for summary in summaries:
        outcome = (
            Text(f"{_FAILED} failed", style="red")
            if summary.failed
            else Text(f"{_OK} succeeded", style="green")
        )
        table.add_row(
            printable(summary.correlation_id),
            Text(printable(display_type_name(summary.root_message_type)), style="bold"),
            outcome,
            str(summary.message_count),
            str(summary.failed_count),
            printable(summary.requested_by or "-"),
            summary.first_recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


# -- finding messages ------------------------------------------------------------------------


async def _find(store: MessageStore, ref: UUID | str, url: StoreUrl) -> MessageRecord:
    """The record a typed message id names: a whole id, or a unique prefix of one."""
    if isinstance(ref, UUID):
        record = await store.get(ref)
        if record is None:
            raise CliError(f"no message with id {ref} in {url.shown}")
        return record
    ids = await store.message_ids_with_prefix(ref, limit=_CANDIDATES)
    found = [record for record in [await store.get(i) for i in ids] if record is not None]
    if not found:
        raise CliError(f"no message id starts with {ref} in {url.shown}")
    if len(found) == 1:
        return found[0]
    full = len({record.message_id.hex[:8] for record in found}) < len(found)
    more = " or more" if len(ids) == _CANDIDATES else ""
    raise CliError(
        f"{ref} is ambiguous: {len(found)}{more} messages in {url.shown} have an id "
        "starting with it; type more of the id:",
        exit_code=2,
        details=[
            f"{short_id(record.message_id, full=full)}  {record.kind} "
            f"{display_type_name(record.message_type)}  {timestamp(record.requested_at)}"
            for record in found
        ],
    )


async def _summaries(
    store: MessageStore, limit: int, where: RecordFilter, type_name: str | None
) -> list[CorrelationSummary]:
    """The newest ``limit`` operations that match ``where`` and whose root message is
    of ``type_name`` (a full stable type name, or its short last part)."""
    filters: dict[str, Any] = {
        "requested_by": where.requested_by,
        "outcome": where.outcome,
        "since": where.since,
    }
    if type_name is None or "." in type_name:
        return await store.correlations(limit, message_type=type_name, **filters)
    # A short name (PlaceOrder) may stand for any module's class: page back through
    # the operations, newest first, keeping those whose root type ends with it.
    found: list[CorrelationSummary] = []
    before: int | None = None
    while len(found) < limit:
        page = await store.correlations(_TYPE_SCAN_PAGE, before, **filters)
        found += [s for s in page if display_type_name(s.root_message_type) == type_name]
        if len(page) < _TYPE_SCAN_PAGE:
            break
        before = page[-1].position
    return found[:limit]


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

        async def fetch(
            message_store: MessageStore, url: StoreUrl
        ) -> tuple[list[MessageRecord], list[CausationNode]]:
            if flat:
                found, trees = await message_store.by_correlation(cid), []
            else:
                trees = await message_store.build_causation_tree(cid)
                found = [node.record for tree in trees for _, node in tree.walk()]
            if not found:
                raise CliError(f"no messages with correlation id {cid!r} in {url.shown}")
            return found, trees

        url = _store_url(store)
        records, trees = _query(url, fetch)
        with _showing(url):
            if as_json:
                if flat:
                    _print_json([record.to_dict() for record in chronological(records)])
                else:
                    _print_json([tree.to_dict() for tree in trees])
            elif flat:
                console = _stdout()
                console.print(_Hanging(Text(), _operation_heading(cid, records)))
                _print_table(console, render_table(records, full_ids=full_ids))
            else:
                _print_trees(_stdout(), cid, trees, full_ids=full_ids)


@app.command()
def show(
    message_id: MessageIdArgument, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Show one message: ids, times, handlers, headers and payload."""
    with _user_errors():
        ref = _message_ref(message_id)

        async def fetch(message_store: MessageStore, url: StoreUrl) -> MessageRecord:
            return await _find(message_store, ref, url)

        url = _store_url(store)
        record = _query(url, fetch)
        with _showing(url):
            if as_json:
                _print_json(record.to_dict())
            else:
                _stdout().print(render_record(record))


@app.command()
def effects(
    message_id: MessageIdArgument,
    store: StoreOption = None,
    as_json: JsonOption = False,
    full_ids: FullIdsOption = False,
) -> None:
    """Show everything a message caused, directly or not, as a tree."""
    with _user_errors():
        ref = _message_ref(message_id)

        async def fetch(
            message_store: MessageStore, url: StoreUrl
        ) -> tuple[MessageRecord, list[MessageRecord]]:
            record = await _find(message_store, ref, url)
            return record, await message_store.trace_effects(record.message_id)

        url = _store_url(store)
        record, descendants = _query(url, fetch)
        with _showing(url):
            if as_json:
                _print_json([effect.to_dict() for effect in descendants])
            else:
                _print_effects(_stdout(), record, descendants, full_ids=full_ids)


def _print_effects(
    console: Console,
    record: MessageRecord,
    descendants: Sequence[MessageRecord],
    *,
    full_ids: bool,
) -> None:
    console.print(
        f"{_count(len(descendants), 'message')} caused by {record.kind} "
        f"{printable(display_type_name(record.message_type))} "
        f"{short_id(record.message_id, full=full_ids)}"
    )
    console.print(render_tree(effects_tree(record, descendants), full_ids=full_ids))


@app.command()
def causes(
    message_id: MessageIdArgument,
    store: StoreOption = None,
    as_json: JsonOption = False,
    full_ids: FullIdsOption = False,
) -> None:
    """Show the chain of causes of a message, from its root down to it."""
    with _user_errors():
        ref = _message_ref(message_id)

        async def fetch(message_store: MessageStore, url: StoreUrl) -> list[MessageRecord]:
            record = await _find(message_store, ref, url)
            return await message_store.trace_causation(record.message_id) or [record]

        url = _store_url(store)
        chain = _query(url, fetch)
        with _showing(url):
            if as_json:
                _print_json([record.to_dict() for record in chain])
            else:
                _print_causes(_stdout(), chain, full_ids=full_ids)


def _print_causes(console: Console, chain: Sequence[MessageRecord], *, full_ids: bool) -> None:
    root = chain[0]
    console.print(
        f"{_count(len(chain), 'message')} from the root "
        f"{printable(display_type_name(root.message_type))} "
        f"to {printable(display_type_name(chain[-1].message_type))}"
    )
    if root.causation_id is not None:
        console.print(
            f"(the chain starts at a message whose cause, {printable(root.causation_id)}, "
            "is not in the store)",
            style="yellow",
        )
    console.print(render_chain(chain, full_ids=full_ids))


@app.command("list")
def list_correlations(
    store: StoreOption = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, max=MAX_LIMIT, help="How many operations to list."),
    ] = 20,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only operations in which a message failed.")
    ] = False,
    requested_by: Annotated[
        str | None,
        typer.Option("--requested-by", metavar="WHO", help="Only operations requested by WHO."),
    ] = None,
    type_name: Annotated[
        str | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            help="Only operations whose root message is of TYPE: its short name "
            "(PlaceOrder) or its whole stable type name (shop.PlaceOrder).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only operations started since WHEN: a time ago (30m, 1h, 2d) or an "
            "ISO 8601 date or time (UTC unless it says otherwise).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the recent business operations, newest first.

    One line each: correlation id, root message type, outcome, message and failure
    counts, who requested it and when it started.
    """
    with _user_errors():
        where = _list_filter(failed, requested_by, type_name, since)
        wanted = None if type_name is None else type_name.strip()

        async def fetch(message_store: MessageStore, url: StoreUrl) -> list[CorrelationSummary]:
            return await _summaries(message_store, limit, where, wanted)

        url = _store_url(store)
        summaries = _query(url, fetch)
        with _showing(url):
            if as_json:
                _print_json([summary.to_dict() for summary in summaries])
            elif summaries:
                _print_table(_stdout(), render_summaries(summaries))
            elif where.is_empty:
                _stdout().print(f"no messages recorded in {printable(url.shown)} yet")
            else:
                _stdout().print(f"no operation in {printable(url.shown)} matches the filters")


def _list_filter(
    failed: bool, requested_by: str | None, type_name: str | None, since: str | None
) -> RecordFilter:
    """The filters of ``cqrs list``, checked before the store is opened."""
    moment = None
    if since is not None:
        try:
            moment = parse_since(since)
        except (ValueError, OverflowError) as exc:
            raise CliError(f"--since: {exc}", exit_code=2) from None
    try:
        return RecordFilter(
            requested_by=requested_by,
            message_type=None if type_name is None else type_name.strip(),
            outcome="failed" if failed else None,
            since=moment,
        )
    except ValueError as exc:
        option = "--requested-by" if str(exc).startswith("requested_by") else "--type"
        raise CliError(f"{option}: {exc}", exit_code=2) from None


@app.command()
def demo(store: StoreOption = None) -> None:
    """Run the demo shop and print the two causation trees it recorded.

    Two order requests run concurrently, each under its own correlation id; one of
    them fails in the SMS gateway.  Both are recorded in the store (created if it does
    not exist), read back and printed, with the commands that show them again.
    """
    from ._demo import run_demo_on  # the demo domain loads only for this command

    with _user_errors():
        url = _store_url(store)

        async def run() -> DemoResult:
            message_store = await _open(url, read_only=False)
            try:
                return await run_demo_on(message_store)
            finally:
                await message_store.close()

        result = asyncio.run(run())
        _print_demo(_stdout(), result, url)


def command_to_type(program: str, *, cwd: Path, on_path: str | None) -> str:
    """How to type the running ``cqrs`` in the shell it runs in.

    ``program`` is the path it was started by (``sys.argv[0]``), ``on_path`` what the
    shell finds for ``cqrs`` (``shutil.which("cqrs")``).  When ``cqrs`` on the PATH is
    this very program, that is ``cqrs``; otherwise (after ``make demo``, only
    ``.venv/bin/cqrs`` is) its path, relative to ``cwd`` when it is inside it.  A
    program that is not the ``cqrs`` script (a test runner) gives ``cqrs``.

    >>> command_to_type("/repo/.venv/bin/cqrs", cwd=Path("/repo"), on_path=None)
    '.venv/bin/cqrs'
    >>> command_to_type("/opt/tools/cqrs", cwd=Path("/home/ada"), on_path=None)
    '/opt/tools/cqrs'
    """
    path = Path(program)
    if path.stem != "cqrs":
        return "cqrs"
    absolute = Path(os.path.abspath(cwd / path))
    if on_path is not None and Path(os.path.abspath(on_path)) == absolute:
        return "cqrs"
    try:
        relative = absolute.relative_to(cwd)
    except ValueError:
        return shlex.quote(str(absolute))
    return shlex.quote(str(relative) if relative.parent != Path() else f"./{relative}")


def _print_demo(console: Console, result: DemoResult, url: StoreUrl) -> None:
    console.print(
        f"Two requests arrived at once (asyncio.gather), each under its own correlation id; "
        f"recorded in {printable(url.shown)} in {result.elapsed_s:.2f} s:"
    )
    for request in result.requests:
        line = Text(f"  {request.correlation_id}  {request.summary}  -> ")
        if request.error is None:
            line.append(f"{_OK} order {request.order_id} placed", style="green")
        else:
            line.append(
                f"{_FAILED} the request failed with {type(request.error).__name__}: "
                f"{printable(str(request.error))}",
                style="red",
            )
        console.print(line)
    for request in result.requests:
        console.print()
        _print_trees(console, request.correlation_id, request.trees, full_ids=False)
    console.print()
    cqrs = command_to_type(sys.argv[0], cwd=Path.cwd(), on_path=shutil.which("cqrs"))
    if url.text.lower().startswith("memory:"):
        console.print(
            "memory:// lives only as long as this process: run the demo on "
            f"{DEFAULT_STORE_URL} to inspect the trees again with `{cqrs} trace`."
        )
        return
    if url.passwords:
        store_flag = ""
        console.print(
            f"See them again with (with ${STORE_URL_ENV} set to {printable(url.shown)}: "
            "its password is not printed):"
        )
    else:
        store_flag = f" --store {shlex.quote(url.text)}" if url.given else ""
        console.print("See them again with:")
    for request in result.requests:
        console.print(f"  {cqrs} trace {request.correlation_id}{store_flag}")
    failed = [
        node.record
        for request in result.requests
        for tree in request.trees
        for _, node in tree.walk()
        if node.record.failed and not any(child.record.failed for child in node.children)
    ]
    for record in failed:
        digits = short_id(record.message_id)
        console.print(f"  {cqrs} show {digits}{store_flag}    # where it failed")
        console.print(f"  {cqrs} causes {digits}{store_flag}  # how it got there")


# -- the service commands, in modules of their own ----------------------------------------
# (Each imports this module's helpers when it runs, not when it is imported.)

from . import dlq, observatory, worker  # noqa: E402

for _service_commands in (worker, dlq, observatory):
    _service_commands.register(app)
