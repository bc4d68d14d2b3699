"""Assert a whole causation chain at once, with a spec drawn like the tree it checks.

::

    assert_chain(dispatched, '''
        PlaceOrder
        └── OrderPlaced
            ├── ReserveInventory
            │   └── InventoryReserved
            └── NotifyCustomer  !failed
    ''')

:func:`assert_chain` checks, in one call:

- exactly these messages, no more and no fewer, each of the type its line names;
- the tree: every message under the one that caused it (the child's ``causation_id``
  is the parent's ``request_id``), and siblings in dispatch order;
- one correlation id shared by every message (and, if ``correlation_id=`` is given,
  that one);
- the outcome marks the spec carries (``!failed``, ``!succeeded``), and that a
  top-level message has no ``causation_id`` unless it is marked ``!orphan``.

It reads what a test captured (a :class:`~python_cqrs_core.testing.Capture`, or any
list of its :class:`~python_cqrs_core.testing.Dispatch`) as well as what a store
recorded (``await store.build_causation_tree(cid)``, one
:class:`~python_cqrs_core.store.CausationNode`, or a list of
:class:`~python_cqrs_core.store.MessageRecord` in recorded order).  A mismatch raises
:class:`AssertionError` listing the differences, then the expected and the actual
tree; the actual tree is drawn in the spec's own format, so it can be pasted into
the test once it is right.  :func:`render_chain` draws it on its own.

**The spec format.**  One message per line.  A line is the message's type, then
optional marks, then an optional ``# comment``:

- the type is its class name (``OrderPlaced``) or its stable type name or a dotted
  tail of it (``orders.OrderPlaced``);
- marks: ``!failed`` (its dispatch raised), ``!succeeded`` (it did not),
  ``!orphan`` (top level only: its ``causation_id`` names a message that is not in
  the chain, e.g. one from another service).  A line without a mark accepts either
  outcome;
- nesting is shown by indentation: a line indented deeper than the line above is its
  child; a line indented like an earlier line is that line's sibling.  The tree
  characters ``│ ├ └ ─`` (or ASCII ``| + ` -``) before a type count as indentation,
  so a drawn tree and plain indentation read the same.  Blank lines, lines holding
  only ``│``, and comment lines are ignored; tabs are refused (their width is
  ambiguous);
- several top-level lines mean several roots (two requests that shared a
  correlation id).

A spec that cannot be read raises :class:`ChainSpecError`, naming the line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, TypeAlias, TypeVar
from uuid import UUID

from ..messages import tracing_fields
from ..store.records import CausationNode, MessageRecord, Outcome, assemble_trees, id_text
from .capture import Capture, Dispatch

__all__ = ["ChainSource", "ChainSpecError", "assert_chain", "render_chain"]

ChainSource: TypeAlias = (
    Capture | CausationNode | Iterable[Dispatch] | Iterable[CausationNode] | Iterable[MessageRecord]
)
"""What :func:`assert_chain` and :func:`render_chain` read: a capture or its
dispatches, causation trees, or message records (in recorded order)."""

_SPACERS: Final = frozenset(" │|")
_DRAWING: Final = _SPACERS | frozenset("├└─┬┼+`-")
_INDENT: Final = _DRAWING | {"\t"}  # a tab is read, then refused
_MARKS: Final = ("!succeeded", "!failed", "!orphan")


class ChainSpecError(ValueError):
    """A causation chain spec that cannot be read; the message names the line (1 for
    the first line of the string) and what is wrong with it."""


# -- the expected tree: the parsed spec ---------------------------------------------------


@dataclass(slots=True)
class _Expected:
    name: str
    line: int
    outcome: Outcome | None = None
    orphan: bool = False
    children: list[_Expected] = field(default_factory=list)


def _parse(spec: str) -> list[_Expected]:
    """The trees a spec describes (see the module documentation for the format)."""
    if not isinstance(spec, str):
        raise TypeError(f"the chain spec must be a string, got {type(spec).__name__}")
    roots: list[_Expected] = []
    root_column = 0
    open_lines: list[tuple[int, _Expected]] = []  # (column, line) of the enclosing lines
    for number, line in enumerate(spec.splitlines(), 1):
        column = next((i for i, char in enumerate(line) if char not in _INDENT), len(line))
        prefix, content = line[:column], line[column:].rstrip()
        if "\t" in prefix:
            raise ChainSpecError(f"line {number}: indent with spaces, not tabs")
        if not content or content.startswith("#"):
            if not set(prefix) <= _SPACERS:
                raise ChainSpecError(f"line {number}: a branch with no message type")
            continue
        node = _parse_line(number, content)
        if not roots:
            root_column = column
        popped = False
        while open_lines and open_lines[-1][0] > column:
            open_lines.pop()
            popped = True
        if open_lines and open_lines[-1][0] == column:
            open_lines.pop()  # a sibling of that line
        elif open_lines and popped:
            raise ChainSpecError(
                f"line {number}: {node.name} is indented to column {column}, which matches "
                "no line above it"
            )
        elif not open_lines and column != root_column:
            raise ChainSpecError(
                f"line {number}: {node.name} is indented less than the first message"
            )
        if open_lines:
            parent = open_lines[-1][1]
            if node.orphan:
                raise ChainSpecError(
                    f"line {number}: only a top-level message can be !orphan, and "
                    f"{node.name} is under {parent.name}"
                )
            parent.children.append(node)
        else:
            roots.append(node)
        open_lines.append((column, node))
    if not roots:
        raise ChainSpecError("the chain spec names no message")
    return roots


def _parse_line(number: int, content: str) -> _Expected:
    tokens = content.split()
    words = []
    for token in tokens:
        if token.startswith("#"):
            break  # the rest of the line is a comment
        words.append(token)
    name, marks = words[0], words[1:]
    if name.startswith("!"):
        raise ChainSpecError(f"line {number}: the mark {name!r} has no message type before it")
    node = _Expected(name, number)
    for mark in marks:
        if not mark.startswith("!"):
            raise ChainSpecError(
                f"line {number}: unexpected {mark!r} after {name}: a line holds one message "
                "type, then marks such as !failed, then an optional # comment"
            )
        if mark not in _MARKS:
            raise ChainSpecError(
                f"line {number}: unknown mark {mark!r}; the marks are {', '.join(_MARKS)}"
            )
        if mark == "!orphan":
            node.orphan = True
            continue
        outcome: Outcome = "failed" if mark == "!failed" else "succeeded"
        if node.outcome is not None and node.outcome != outcome:
            raise ChainSpecError(f"line {number}: {name} cannot be both !failed and !succeeded")
        node.outcome = outcome
    return node


# -- the actual tree: what was dispatched or recorded --------------------------------------


@dataclass(slots=True)
class _Actual:
    names: tuple[str, ...]  # what a spec may call it
    label: str  # how it is drawn when the spec does not name it
    outcome: str  # "succeeded", "failed" or "running"
    request_id: str
    correlation_id: str
    causation_id: str | None
    orphan: bool = False
    children: list[_Actual] = field(default_factory=list)


def _actual_trees(source: ChainSource) -> list[_Actual]:
    if isinstance(source, Capture):
        return _from_dispatches(source.dispatches)
    if isinstance(source, CausationNode):
        return _from_causation_nodes([source])
    if isinstance(source, str | bytes) or not isinstance(source, Iterable):
        raise TypeError(
            "assert_chain reads a Capture, a list of its Dispatch, causation trees "
            f"(CausationNode) or a list of MessageRecord; got {type(source).__name__}"
        )
    items = list(source)
    dispatches = [item for item in items if isinstance(item, Dispatch)]
    if len(dispatches) == len(items):
        return _from_dispatches(dispatches)
    trees = [item for item in items if isinstance(item, CausationNode)]
    if len(trees) == len(items):
        return _from_causation_nodes(trees)
    records = [item for item in items if isinstance(item, MessageRecord)]
    if len(records) == len(items):
        return _from_causation_nodes(assemble_trees(records))
    kinds = sorted({type(item).__name__ for item in items})
    raise TypeError(
        "assert_chain reads a list of Dispatch, of CausationNode or of MessageRecord "
        f"(one kind at a time); got a list of {', '.join(kinds)}"
    )


def _from_dispatches(dispatches: list[Dispatch]) -> list[_Actual]:
    """Trees of dispatches, linked by their captured parents (their causation)."""
    nodes: dict[int, _Actual] = {}
    for dispatch in dispatches:
        fields = tracing_fields(dispatch.message)
        class_name = type(dispatch.message).__name__
        nodes[id(dispatch)] = _Actual(
            names=(fields.message_type, class_name),
            label=class_name,
            outcome=dispatch.outcome,
            request_id=fields.request_id,
            correlation_id=fields.correlation_id,
            causation_id=fields.causation_id,
        )
    roots: list[_Actual] = []
    for dispatch in dispatches:
        node = nodes[id(dispatch)]
        parent = None if dispatch.parent is None else nodes.get(id(dispatch.parent))
        if parent is None:
            node.orphan = node.causation_id is not None
            roots.append(node)
        else:
            parent.children.append(node)
    return roots


def _from_causation_nodes(trees: list[CausationNode]) -> list[_Actual]:
    """The trees a store built (iteratively: a recorded chain may be deep)."""
    roots = [_from_record(tree.record) for tree in trees]
    for root in roots:
        root.orphan = root.causation_id is not None
    stack = list(zip(trees, roots, strict=True))
    while stack:
        tree, actual = stack.pop()
        for child in tree.children:
            converted = _from_record(child.record)
            actual.children.append(converted)
            stack.append((child, converted))
    return roots


def _from_record(record: MessageRecord) -> _Actual:
    return _Actual(
        names=(record.message_type,),
        label=record.message_type.rsplit(".", 1)[-1],
        outcome=record.outcome,
        request_id=str(record.message_id),
        correlation_id=record.correlation_id,
        causation_id=record.causation_id,
    )


def _walk(roots: list[_Actual]) -> Iterator[tuple[_Actual | None, _Actual]]:
    """``(parent, node)`` for every node, depth first, in order."""
    stack: list[tuple[_Actual | None, _Actual]] = [(None, root) for root in reversed(roots)]
    while stack:
        parent, node = stack.pop()
        yield parent, node
        stack.extend((node, child) for child in reversed(node.children))


def _is_called(node: _Actual, name: str) -> bool:
    """Whether a spec's ``name`` names this message: one of its names, or a dotted tail
    of one (``OrderPlaced`` and ``orders.OrderPlaced`` name ``shop.orders.OrderPlaced``)."""
    return any(known == name or known.endswith("." + name) for known in node.names)


# -- comparing ---------------------------------------------------------------------------


def _compare(
    expected: list[_Expected],
    actual: list[_Actual],
    where: str,
    problems: list[str],
    labels: dict[int, str],
) -> None:
    """Compare two lists of siblings and, where they agree, their subtrees; record each
    difference in ``problems`` and the spec's name of each matched node in ``labels``."""
    stack = [(expected, actual, where)]
    while stack:
        wanted, found, where = stack.pop()
        if len(wanted) != len(found) or not all(
            _is_called(a, e.name) for e, a in zip(wanted, found, strict=False)
        ):
            problems.append(
                f"{where}: expected {_names(e.name for e in wanted)}, "
                f"got {_names(_shown(a, wanted, i) for i, a in enumerate(found))}"
            )
            continue
        for e, a in zip(wanted, found, strict=True):
            labels[id(a)] = e.name
            if e.outcome is not None and e.outcome != a.outcome:
                verb = "fail" if e.outcome == "failed" else "succeed"
                got = "is still running" if a.outcome == "running" else a.outcome
                problems.append(
                    f"line {e.line}: {e.name} was expected to {verb} (!{e.outcome}), but it {got}"
                )
            if a.orphan and not e.orphan:
                problems.append(
                    f"line {e.line}: {e.name} has causation_id {a.causation_id!r}, which is "
                    "not among these messages (mark it !orphan if its cause is elsewhere)"
                )
            elif e.orphan and not a.orphan:
                problems.append(
                    f"line {e.line}: {e.name} was expected to be !orphan, but it has no "
                    "causation_id"
                )
        stack.extend(
            (e.children, a.children, f"under {e.name} (line {e.line})")
            for e, a in reversed(list(zip(wanted, found, strict=True)))
        )


def _shown(node: _Actual, wanted: list[_Expected], index: int) -> str:
    """How a mismatched node is named: its short label, or its full type name where the
    label would look like the expected name it failed to match (``OrderPlaced`` is
    not ``billing.OrderPlaced``)."""
    if index < len(wanted):
        name = wanted[index].name
        if node.label == name.rsplit(".", 1)[-1] and not _is_called(node, name):
            return node.names[0]
    return node.label


def _names(names: Iterable[str]) -> str:
    listed = list(names)
    return f"[{', '.join(listed)}]" if listed else "nothing"


def _id_problems(roots: list[_Actual], correlation_id: UUID | str | None) -> list[str]:
    problems: list[str] = []
    by_correlation: dict[str, list[str]] = {}
    for parent, node in _walk(roots):
        by_correlation.setdefault(node.correlation_id, []).append(node.label)
        if parent is not None and node.causation_id != parent.request_id:
            problems.append(
                f"{node.label} under {parent.label}: its causation_id {node.causation_id!r} "
                f"is not {parent.label}'s request_id {parent.request_id!r}"
            )
    if len(by_correlation) > 1:
        carried = "; ".join(
            f"{cid!r} ({', '.join(labels)})" for cid, labels in by_correlation.items()
        )
        problems.append(
            f"one correlation id expected, the messages carry {len(by_correlation)}: {carried}"
        )
    if correlation_id is not None and by_correlation:
        wanted = id_text(correlation_id)
        others = [cid for cid in by_correlation if cid != wanted]
        if others:
            problems.append(
                f"expected correlation id {wanted!r}, the messages carry "
                f"{', '.join(repr(cid) for cid in by_correlation)}"
            )
    return problems


# -- drawing -------------------------------------------------------------------------------

_N = TypeVar("_N")


def _draw(roots: list[_N], text: Callable[[_N], str], children: Callable[[_N], list[_N]]) -> str:
    """Draw trees with ``├──``/``└──`` branches, one node per line (iteratively)."""
    lines: list[str] = []
    # (node, the prefix of its own line, the prefix its children continue)
    stack: list[tuple[_N, str, str]] = [(root, "", "") for root in reversed(roots)]
    while stack:
        node, own, below = stack.pop()
        lines.append(own + text(node))
        kids = children(node)
        for index in reversed(range(len(kids))):
            last = index == len(kids) - 1
            stack.append(
                (
                    kids[index],
                    below + ("└── " if last else "├── "),
                    below + ("    " if last else "│   "),
                )
            )
    return "\n".join(lines)


def _expected_text(node: _Expected) -> str:
    marks = [f"!{node.outcome}"] if node.outcome else []
    if node.orphan:
        marks.append("!orphan")
    return "  ".join([node.name, *marks])


def _actual_drawing(roots: list[_Actual], labels: dict[int, str]) -> str:
    several = len({node.correlation_id for _, node in _walk(roots)}) > 1

    def text(node: _Actual) -> str:
        parts = [labels.get(id(node), node.label)]
        if node.outcome == "failed":
            parts.append("!failed")
        if node.orphan:
            parts.append("!orphan")
        notes = []
        if node.outcome == "running":
            notes.append("still running")
        if several:
            notes.append(f"correlation id {node.correlation_id!r}")
        if notes:
            parts.append("# " + ", ".join(notes))
        return "  ".join(parts)

    return _draw(roots, text, lambda node: node.children)


def render_chain(source: ChainSource) -> str:
    """Draw what was dispatched or recorded as a chain spec: the text
    :func:`assert_chain` would accept for it.

    Failed dispatches are marked ``!failed``, orphans ``!orphan``; when the messages
    do not share one correlation id, each line says its own in a comment.  Print it
    while writing a test, check it is what should have happened, and paste it into
    the test's :func:`assert_chain`.
    """
    return _actual_drawing(_actual_trees(source), {})


def assert_chain(
    source: ChainSource, spec: str, *, correlation_id: UUID | str | None = None
) -> None:
    """Assert that ``source`` holds exactly the causation chain ``spec`` draws.

    ``source`` is a :class:`~python_cqrs_core.testing.Capture` (or a list of its
    dispatches), the result of ``store.build_causation_tree(cid)`` (or one
    :class:`~python_cqrs_core.store.CausationNode`), or a list of
    :class:`~python_cqrs_core.store.MessageRecord` in recorded order.  With
    ``correlation_id``, every message must carry that one.  See the module
    documentation for the spec format and what is checked.

    Raises :class:`AssertionError` naming each difference and drawing both trees, and
    :class:`ChainSpecError` when the spec cannot be read.
    """
    __tracebackhide__ = True
    expected = _parse(spec)
    actual = _actual_trees(source)
    problems: list[str] = []
    labels: dict[int, str] = {}
    _compare(expected, actual, "top level", problems, labels)
    problems += _id_problems(actual, correlation_id)
    if not problems:
        return
    correlations = {node.correlation_id for _, node in _walk(actual)}
    heading = f" (correlation id {next(iter(correlations))!r})" if len(correlations) == 1 else ""
    drawn_actual = _actual_drawing(actual, labels) if actual else "(no messages)"
    raise AssertionError(
        "\n".join(
            [
                f"the causation chain differs from the spec: {problems[0]}",
                *(f"  {problem}" for problem in problems[1:]),
                "expected:",
                _indent(_draw(expected, _expected_text, lambda node: node.children)),
                f"actual{heading}:",
                _indent(drawn_actual),
            ]
        )
    )


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
