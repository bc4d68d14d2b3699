"""``cqrs dlq list | show | replay``: the dead letters of a transport, for operators.

::

    export CQRS_TRANSPORT_URL=redis://broker:6379/0
    cqrs dlq list --destination orders.events              # id, type, message, reason...
    cqrs dlq show 1764500000000-0 --destination orders.events
    cqrs dlq replay 6c1f0d1e --destination orders.events --store postgresql://app@db/cqrs
    cqrs dlq replay --all --yes --destination orders.events --group billing

A dead letter is named by the dead-letter id ``list`` prints, or by its message's id
(whole, or the 8 hex digits ``list`` prints).  ``replay`` hands the message back to the
consumer group that gave up on it, unchanged (same message id, same correlation id);
with ``--store`` (or ``$CQRS_STORE_URL``) it also records the replay in the message
store, as a ``python_cqrs_core.DeadLetterReplayed`` event in the message's chain
(caused by the message, requested by ``--requested-by`` or the operating-system
user, service ``cqrs-cli``), so ``cqrs trace`` shows it.

Everything shown comes from the broker and is escaped before it is printed
(:func:`~python_cqrs_core.apps.presentation.printable`); passwords in URLs are never
printed.  Exit codes: ``0`` done, ``1`` nothing found or the transport or store could
not be reached, ``2`` invalid input.

:func:`register` adds the commands to the ``cqrs`` application
(:mod:`python_cqrs_core.apps.cli.commands` calls it).  :func:`open_transport` opens the
transport a URL names (Redis Streams).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ...transports import DeadLetter, Transport, TransportError
from ...validation import validate_requested_by, validate_type_name
from ..presentation import (
    display_type_name,
    first_line,
    printable,
    short_id,
    terminal_json,
    timestamp,
)
from ..worker.dead_letters import (
    REPLAY_SERVICE,
    AmbiguousDeadLetterError,
    Replay,
    all_dead_letters,
    find_dead_letter,
    identity_of,
    replay_dead_letter,
)

if TYPE_CHECKING:
    from .commands import StoreUrl

__all__ = [
    "PREFIX_ENV",
    "TRANSPORT_ENV",
    "dead_letter_dict",
    "dlq_app",
    "open_transport",
    "register",
    "render_dead_letter",
    "render_dead_letters",
]

TRANSPORT_ENV: Final = "CQRS_TRANSPORT_URL"
"""The environment variable ``--transport`` defaults to."""
PREFIX_ENV: Final = "CQRS_TRANSPORT_PREFIX"
"""The environment variable ``--transport-prefix`` defaults to."""
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_BODY_SHOWN: Final = 64 * 1024  # characters of a body that is not JSON shown by `show`
_NATURAL_WIDTH: Final = 100_000  # a console this wide prints a table at its own width
T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Inspect and replay the dead letters of a transport (Redis Streams).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

TransportOption = Annotated[
    str | None,
    typer.Option(
        "--transport",
        "-t",
        metavar="URL",
        envvar=TRANSPORT_ENV,
        show_envvar=False,
        help=f"The transport: redis://[user:password@]host[:port][/db] [default: ${TRANSPORT_ENV}]",
        show_default=False,
    ),
]
PrefixOption = Annotated[
    str,
    typer.Option(
        "--transport-prefix",
        metavar="PREFIX",
        envvar=PREFIX_ENV,
        show_envvar=False,
        help=f"The key prefix of the application's RedisTransport(prefix=...) "
        f"[default: ${PREFIX_ENV}, else none]",
        show_default=False,
    ),
]
DestinationOption = Annotated[
    str,
    typer.Option(
        "--destination", "-d", metavar="DESTINATION", help="The destination (stream) to look at."
    ),
]
GroupOption = Annotated[
    str | None,
    typer.Option("--group", "-g", metavar="GROUP", help="Only the dead letters of this group."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts (and nothing else on stdout).")
]
DeadLetterArgument = Annotated[
    str,
    typer.Argument(
        metavar="DEAD_LETTER",
        help="A dead-letter id, as `cqrs dlq list` prints it, or the id of its message "
        "(whole, or its first 8 hex digits).",
    ),
]


def open_transport(url: str, prefix: str = "") -> Transport:
    """The transport ``url`` names: Redis Streams for ``redis://``, ``rediss://`` and
    ``unix://`` (the ``[redis]`` extra), its keys under ``prefix``.  Nothing connects
    until it is used.  Another scheme is a :class:`ValueError`."""
    scheme = url.partition(":")[0].lower()
    if scheme not in _REDIS_SCHEMES:
        raise ValueError(
            "the transport URL must be a Redis Streams one (redis://, rediss:// or unix://)"
        )
    try:
        from ...transports.redis import RedisTransport
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("redis", "hiredis"):
            raise
        raise ValueError(
            "a redis:// transport needs the [redis] extra: pip install 'python-cqrs-core[redis]'"
        ) from None
    return RedisTransport.from_url(url, prefix=prefix)


# -- what a dead letter shows --------------------------------------------------------------


def dead_letter_dict(letter: DeadLetter, *, with_body: bool = False) -> dict[str, Any]:
    """A dead letter as JSON: where, who (its ids, checked: ``None`` when a header is
    missing or invalid), why, when; with ``with_body`` its headers and body too (the
    body as JSON when it is JSON, else as ``body_text``)."""
    found = identity_of(letter)
    data: dict[str, Any] = {
        "dead_letter_id": letter.dead_letter_id,
        "destination": letter.destination,
        "group": letter.group,
        "message_id": None if found.message_id is None else str(found.message_id),
        "message_type": found.message_type,
        "kind": found.kind,
        "correlation_id": found.correlation_id,
        "causation_id": found.causation_id,
        "requested_by": found.requested_by,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "dead_lettered_at": letter.dead_lettered_at.astimezone(UTC).isoformat(),
        "original_delivery_id": letter.original_delivery_id,
        "body_bytes": len(letter.body),
    }
    if with_body:
        data["headers"] = dict(letter.headers)
        body, text = _body(letter.body)
        data["body"] = body
        data["body_text"] = text
    return data


def _body(raw: bytes) -> tuple[Any, str | None]:
    """The body as parsed JSON and ``None``, or ``None`` and its text (undecodable
    bytes as ``\\xNN``) when it is not JSON."""
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError):
        return None, raw.decode("utf-8", "backslashreplace")


def render_dead_letters(letters: list[DeadLetter], width: int = 100) -> Table:
    """Dead letters as a table of at most ``width`` columns, one line each: id, group,
    message type (short), message id (8 hex digits), correlation id, attempts, when
    (UTC), and the first line of the reason, cut with ``…`` to what the width leaves
    (at least 16 characters; ``cqrs dlq show`` prints it whole).  Every value is
    escaped."""
    rows: list[list[str]] = []
    for letter in letters:
        found = identity_of(letter)
        rows.append(
            [
                printable(letter.dead_letter_id),
                printable(letter.group),
                printable(display_type_name(found.message_type or "?")),
                short_id(found.message_id) if found.message_id else "?",
                printable(found.correlation_id or "?"),
                str(letter.attempts),
                letter.dead_lettered_at.astimezone(UTC).strftime("%m-%d %H:%M"),
                printable(first_line(letter.reason, limit=400)),
            ]
        )
    headers = ("dead letter", "group", "type", "message", "correlation", "tries", "when (UTC)")
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    # each column but the reason is followed by two spaces (its padding, a separator)
    room = max(width - sum(widths) - 2 * len(widths), 16)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for header in headers:
        table.add_column(header, no_wrap=True, justify="right" if header == "tries" else "left")
    table.add_column("reason", no_wrap=True)
    for row in rows:
        reason = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        table.add_row(*row[:2], Text(row[2], style="bold"), *row[3:-1], Text(reason, style="red"))
    return table


def render_dead_letter(letter: DeadLetter) -> RenderableType:
    """One dead letter in full: where, why, its ids, every header and the body (JSON
    indented, or the text of a body that is not JSON, cut at 64 KiB); all escaped."""
    found = identity_of(letter)
    fields: list[tuple[str, str]] = [
        ("destination", letter.destination),
        ("group", letter.group),
        ("reason", letter.reason),
        ("attempts", str(letter.attempts)),
        ("dead-lettered", timestamp(letter.dead_lettered_at)),
        ("delivery", letter.original_delivery_id or "-"),
        ("message id", "-" if found.message_id is None else str(found.message_id)),
        ("type", found.message_type or "- (missing or invalid)"),
        ("correlation id", found.correlation_id or "- (missing or invalid)"),
        ("caused by", found.causation_id or "-"),
        ("requested by", found.requested_by or "-"),
    ]
    from .commands import _Hanging  # commands imports this module: imported here

    title = Text("dead letter ", style="bold")
    title.append(printable(letter.dead_letter_id))
    width = max(len(label) for label, _ in fields) + 1
    lines: list[RenderableType] = [title]
    for label, value in fields:  # a long value wraps under itself, right of its label
        shown = Text(printable(value, keep_newlines=label == "reason"))
        lines.append(_Hanging(Text(f"{label:<{width}}", style="bold"), shown))
    lines.append(Text("headers", style="bold"))
    for name, value in sorted(letter.headers.items()):
        lines.append(Text(f"  {printable(name)}: {printable(value)}"))
    body, text = _body(letter.body)
    heading = Text(f"body ({len(letter.body)} bytes", style="bold")
    if text is None:
        heading.append(", JSON)", style="bold")
        lines += [heading, Text(terminal_json(body))]
    else:
        heading.append(", not JSON)", style="bold")
        lines += [heading, Text(printable(text[:_BODY_SHOWN], keep_newlines=True))]
        if len(text) > _BODY_SHOWN:
            lines.append(Text(f"... {len(text) - _BODY_SHOWN} more characters", style="dim"))
    return Group(*lines)


# -- running against a transport -----------------------------------------------------------


def _transport_url(option: str | None) -> StoreUrl:
    from .commands import CliError, StoreUrl

    url = (option or "").strip()
    if not url:
        raise CliError(
            f"no transport: give --transport redis://host:6379/0, or set ${TRANSPORT_ENV}",
            exit_code=2,
        )
    return StoreUrl.of(url)


def _on_transport(option: str | None, prefix: str, work: Callable[[Transport], Awaitable[T]]) -> T:
    """Open the transport, return ``await work(transport)``, close it; the transport's
    failures are one ``error:`` line (exit 1), its password masked."""
    from .commands import CliError

    url = _transport_url(option)

    async def run() -> T:
        try:
            transport = open_transport(url.text, prefix)
        except ValueError as exc:
            raise CliError(f"--transport {url.shown}: {url.scrub(str(exc))}", exit_code=2) from None
        try:
            return await work(transport)
        except TransportError as exc:
            raise CliError(url.scrub(str(exc))) from None
        finally:
            await transport.close()

    return asyncio.run(run())


async def _lookup(transport: Transport, destination: str, ref: str) -> DeadLetter:
    """The dead letter ``ref`` names; none, or several, is a :class:`CliError`."""
    from .commands import CliError

    try:
        return await find_dead_letter(transport, destination, ref)
    except AmbiguousDeadLetterError as exc:
        raise CliError(
            str(exc),
            exit_code=2,
            details=[
                f"{letter.dead_letter_id}  group {letter.group}  "
                f"{display_type_name(identity_of(letter).message_type or '?')}  "
                f"{timestamp(letter.dead_lettered_at)}"
                for letter in exc.candidates
            ],
        ) from None
    except LookupError as exc:
        raise CliError(str(exc)) from None


def _checked_destination(destination: str) -> str:
    from .commands import CliError

    try:
        return validate_type_name(destination.strip())
    except ValueError as exc:
        raise CliError(f"--destination: {exc}", exit_code=2) from None


@dlq_app.command("list")
def list_dead_letters(
    destination: DestinationOption,
    transport: TransportOption = None,
    prefix: PrefixOption = "",
    group: GroupOption = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, max=10_000, help="How many to list, oldest first."),
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List the dead letters of a destination, oldest first.

    One line each: dead-letter id, group, message type, message id, correlation id,
    attempts, when, and the reason.
    """
    from .commands import _console, _print_json, _stdout, _user_errors

    with _user_errors():
        where = _checked_destination(destination)

        async def fetch(opened: Transport) -> list[DeadLetter]:
            return await all_dead_letters(opened, where, group=group, limit=limit)

        letters = _on_transport(transport, prefix, fetch)
        if as_json:
            _print_json([dead_letter_dict(letter) for letter in letters])
        elif letters:
            # The table fits the terminal by itself (it cuts the reasons): printed at its
            # natural width, so that rich does not squeeze its other columns.
            table = render_dead_letters(letters, _stdout().width)
            _console(width=_NATURAL_WIDTH).print(table, crop=False)
        else:
            suffix = "" if group is None else f" of group {printable(group)}"
            _stdout().print(f"no dead letters in {printable(where)}{suffix}")


@dlq_app.command("show")
def show_dead_letter(
    dead_letter: DeadLetterArgument,
    destination: DestinationOption,
    transport: TransportOption = None,
    prefix: PrefixOption = "",
    as_json: JsonOption = False,
) -> None:
    """Show one dead letter: why, its ids, its headers and its body."""
    from .commands import _print_json, _stdout, _user_errors

    with _user_errors():
        where = _checked_destination(destination)

        async def fetch(opened: Transport) -> DeadLetter:
            return await _lookup(opened, where, dead_letter)

        letter = _on_transport(transport, prefix, fetch)
        if as_json:
            _print_json(dead_letter_dict(letter, with_body=True))
        else:
            _stdout().print(render_dead_letter(letter))


@dlq_app.command("replay")
def replay(
    destination: DestinationOption,
    dead_letter: Annotated[
        str | None,
        typer.Argument(
            metavar="DEAD_LETTER",
            help="The dead letter to replay (its id, or its message's id or first 8 hex "
            "digits); or --all.",
            show_default=False,
        ),
    ] = None,
    replay_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Replay every dead letter of the destination (of --group, if given)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --all.")] = False,
    group: GroupOption = None,
    transport: TransportOption = None,
    prefix: PrefixOption = "",
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            "-s",
            metavar="URL",
            help="The message store to record the replay in [default: $CQRS_STORE_URL; "
            "neither: not recorded].",
            show_default=False,
        ),
    ] = None,
    requested_by: Annotated[
        str | None,
        typer.Option(
            "--requested-by",
            metavar="WHO",
            help="Who replays, as recorded [default: the operating-system user].",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Hand dead letters back to the group that gave up on them, unchanged.

    The message keeps its id and correlation id. With a store (--store or
    $CQRS_STORE_URL) each replay is recorded in the message's chain as a
    python_cqrs_core.DeadLetterReplayed event, which `cqrs trace` shows.
    """
    from ...store import STORE_URL_ENV, MessageStore
    from .commands import CliError, StoreUrl, _open, _print_json, _stdout, _user_errors

    with _user_errors():
        where = _checked_destination(destination)
        if (dead_letter is None) == (not replay_all):
            raise CliError("name one dead letter to replay, or give --all (not both)", exit_code=2)
        if replay_all and not yes:
            raise CliError(
                f"--all replays every dead letter of {where}"
                f"{'' if group is None else f' of group {group}'}: add --yes to confirm "
                "(see them first with `cqrs dlq list`)",
                exit_code=2,
            )
        operator = _operator(requested_by)
        try:
            operator = validate_requested_by(operator)
        except ValueError as exc:
            raise CliError(f"--requested-by: {exc}", exit_code=2) from None
        if store is not None and not store.strip():
            raise CliError("--store is empty: give a store URL, or leave --store out", 2)
        chosen = (store or os.environ.get(STORE_URL_ENV, "")).strip()
        store_url = StoreUrl.of(chosen) if chosen else None

        async def work(opened: Transport) -> list[Replay]:
            recording: MessageStore | None = None
            if store_url is not None:  # opened first: a bad store stops before any replay
                recording = await _open(store_url, read_only=False)
            try:
                if dead_letter is not None:
                    letters = [await _lookup(opened, where, dead_letter)]
                else:
                    letters = await all_dead_letters(opened, where, group=group)
                done: list[Replay] = []
                for letter in letters:
                    try:
                        done.append(
                            await replay_dead_letter(
                                opened, letter, store=recording, requested_by=operator
                            )
                        )
                    except LookupError as exc:
                        raise CliError(f"{exc}; {_count(done)} replayed before") from None
                    except TransportError:
                        raise
                    except Exception as exc:
                        if store_url is None:
                            raise
                        # The store refused the record (the replay itself happened).
                        raise CliError(
                            f"replayed {letter.dead_letter_id} but could not record the replay "
                            f"in {store_url.shown}: {type(exc).__name__}: "
                            f"{store_url.scrub(str(exc))}"
                        ) from None
                return done
            finally:
                if recording is not None:
                    await recording.close()

        replays = _on_transport(transport, prefix, work)
        if as_json:
            _print_json([_replay_dict(done) for done in replays])
            return
        console = _stdout()
        if not replays:
            console.print(f"no dead letters in {printable(where)} to replay")
            return
        for done in replays:
            console.print(_replay_line(done))
        if store_url is None:
            console.print(f"not recorded: no --store, no ${STORE_URL_ENV}", style="dim")
        else:
            console.print(
                f"{_count(replays)} recorded in {printable(store_url.shown)} by "
                f"{printable(operator)} (service {REPLAY_SERVICE})"
            )


def _count(replays: list[Replay]) -> str:
    return f"{len(replays)} replay{'' if len(replays) == 1 else 's'}"


def _operator(option: str | None) -> str:
    """``--requested-by``, else the operating-system user's name."""
    if option is not None:
        return option.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name for this uid (a container)
        return f"uid:{os.getuid()}"


def _replay_line(done: Replay) -> Text:
    found = identity_of(done.letter)
    line = Text("replayed ", style="green")
    line.append(printable(done.letter.dead_letter_id))
    line.append(f"  {printable(display_type_name(found.message_type or '?'))}", style="bold")
    line.append(f" {short_id(found.message_id) if found.message_id else '?'}")
    line.append(f"  {printable(found.correlation_id or '?')}")
    line.append(f"  -> {printable(done.letter.group)}")
    if done.recorded is not None:
        line.append(f"  recorded: {short_id(done.recorded.request_id)}", style="dim")
    return line


def _replay_dict(done: Replay) -> dict[str, Any]:
    data = dead_letter_dict(done.letter)
    data["replayed_as"] = done.replayed_as
    data["recorded_as"] = None if done.recorded is None else str(done.recorded.request_id)
    return data


def register(app: typer.Typer) -> None:
    """Add ``cqrs dlq list | show | replay`` to ``app``."""
    app.add_typer(dlq_app, name="dlq")
