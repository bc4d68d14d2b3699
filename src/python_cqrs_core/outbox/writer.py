"""The outbox writer: a mediator middleware that puts routed messages in the outbox.

::

    writer = OutboxWriter(Routes({OrderPlaced: "orders.events"}), codec).install(bus)

    async with session_transaction(session):
        await bus.send(PlaceOrder(order_id=7))
        # the handler publishes OrderPlaced: encoded, written to cqrs_outbox in the
        # session's transaction, then handed to the local subscribers as usual

For every command and event dispatched, the writer asks the
:class:`~python_cqrs_core.transports.Routes` whether it leaves the service.  A routed
message is encoded (:class:`~python_cqrs_core.codec.EnvelopeCodec`, with the trace
context of the dispatch) and written to the current transaction's outbox *before* its
local handlers run, so entries are in the order their messages were dispatched, a
cause before its effects.  Messages that are not routed cost a dictionary lookup.

**Outside a transaction** a routed message raises
:class:`~python_cqrs_core.outbox.NoOutboxTransactionError` before any handler ran:
never a silent drop, never a delivery the application's rollback cannot undo.  With the
embedded store (``chains=`` a :class:`~python_cqrs_core.outbox.sqlite.SQLiteOutbox`)
there is no "outside": every root dispatch is its own transaction, committed with the
chain's records.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from ..codec import EnvelopeCodec
from ..mediator import CallNext, Mediator
from ..messages import BaseMessage, MessageKind, message_type_name
from ..names import WIRE_CAUSATION_ID, WIRE_CORRELATION_ID, WIRE_MESSAGE_ID, WIRE_MESSAGE_TYPE
from ..transports.routing import Routes
from .transaction import NoOutboxTransactionError, OutboxMessage, OutboxTransaction, _current

__all__ = ["ChainTransactions", "OutboxWriter"]


class ChainTransactions(Protocol):
    """What makes every root dispatch a transaction of its own (the embedded store)."""

    @property
    def records_queries(self) -> bool:
        """Whether queries are recorded too (then a query can be a chain's root)."""

    def begin_chain(self, root_message_id: str) -> OutboxTransaction:
        """A transaction committed with the records of the chain rooted at
        ``root_message_id``."""


class OutboxWriter:
    """Writes the routed messages dispatched through a bus into the current
    transaction's outbox (see the module documentation).

    - ``routes``: which messages leave the service, and where to;
    - ``codec``: how they are encoded (its registry must know every routed class, so
      that the consumer on the other side can decode them too);
    - ``chains``: the embedded store's :class:`~python_cqrs_core.outbox.sqlite.SQLiteOutbox`,
      making each root dispatch a transaction; ``None`` (the default) requires the
      application to open its transaction around dispatches of routed messages.
    """

    __slots__ = ("chains", "codec", "routes")

    def __init__(
        self, routes: Routes, codec: EnvelopeCodec, *, chains: ChainTransactions | None = None
    ) -> None:
        self.routes = routes
        self.codec = codec
        self.chains = chains

    def install(self, bus: Mediator) -> OutboxWriter:
        """Add the writer to ``bus`` (commands and events; queries too when the chains
        record them); returns ``self``.

        With the embedded store, install it *after* the
        :class:`~python_cqrs_core.store.MessageRecorder`, so that the writer sees a chain
        end before the recorder commits it.
        """
        kinds: tuple[MessageKind, ...] = ("command", "event")
        if self.chains is not None and self.chains.records_queries:
            kinds += ("query",)
        bus.add_middleware(self, kinds=kinds)
        return self

    def __call__(self, message: BaseMessage, call_next: CallNext) -> Awaitable[Any]:
        transaction = _current.get()
        destination = self.routes.destination_of(message)
        if self.chains is not None:
            if transaction is None or (transaction.per_chain and transaction.sealed):
                transaction = self.chains.begin_chain(str(message.request_id))
                return self._chain(transaction, message, call_next, destination, own=True)
            if transaction.per_chain and transaction.root_message_id == str(message.request_id):
                return self._chain(transaction, message, call_next, destination, own=False)
        if destination is None:
            return call_next(message)
        if transaction is None:
            raise self._no_transaction(message, destination)
        if transaction.consumed_message_id == str(message.request_id):
            return call_next(message)  # it came from the broker: not sent out again
        return self._written(transaction, message, call_next, destination)

    @staticmethod
    def _no_transaction(message: BaseMessage, destination: str) -> NoOutboxTransactionError:
        return NoOutboxTransactionError(
            f"{message_type_name(message)} {message.request_id} is routed to "
            f"{destination!r}, but no transaction is current: open the application's "
            "transaction around the dispatch (session_transaction(session), "
            "connection_transaction(connection), or the consumer's unit_of_work) so "
            "that the message is delivered if and only if it commits"
        )

    async def _written(
        self,
        transaction: OutboxTransaction,
        message: BaseMessage,
        call_next: CallNext,
        destination: str,
    ) -> Any:
        await transaction.write(self.encode(message, destination))
        return await call_next(message)

    async def _chain(
        self,
        transaction: OutboxTransaction,
        message: BaseMessage,
        call_next: CallNext,
        destination: str | None,
        *,
        own: bool,
    ) -> Any:
        """The root dispatch of a chain: the chain's transaction is current during it,
        and sealed when it ends (what its spawned tasks dispatch later is a chain of
        its own)."""
        token = _current.set(transaction) if own else None
        try:
            if destination is not None and transaction.consumed_message_id is None:
                await transaction.write(self.encode(message, destination))
            return await call_next(message)
        finally:
            transaction.sealed = True
            if token is not None:
                _current.reset(token)

    def encode(self, message: BaseMessage, destination: str) -> OutboxMessage:
        """``message`` encoded as an outbox entry for ``destination``, with the trace
        context of the current span."""
        headers, body = self.codec.encode(message)
        return OutboxMessage(
            message_id=headers[WIRE_MESSAGE_ID],
            message_type=headers[WIRE_MESSAGE_TYPE],
            destination=destination,
            correlation_id=headers[WIRE_CORRELATION_ID],
            causation_id=headers.get(WIRE_CAUSATION_ID),
            headers=headers,
            body=body,
        )

    def __repr__(self) -> str:
        mode = "per chain" if self.chains is not None else "in the current transaction"
        return f"<OutboxWriter {self.routes!r}, {mode}>"
