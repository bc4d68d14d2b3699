"""Direct publishing: routed messages go to their broker right after they were handled.

For applications without a database (or whose messages need no transaction), a
:class:`DirectPublisher` is a mediator middleware: once a message whose class is
routed (:class:`~python_cqrs_core.transports.Routes`) was dispatched locally and its
handlers succeeded, it is encoded and published to its destination::

    publisher = DirectPublisher(transport, codec, Routes({OrderPlaced: "orders.events"}))
    publisher.install(bus)              # after instrument(bus), to be inside its spans
    await bus.publish(OrderPlaced(order_id=7))   # handled here, then XADD

The message keeps its ids (they were settled by the dispatch), so the consumer in the
other service makes it the parent of what it causes there.  A message being consumed
from a broker is never published back.

Publishing happens after the handlers, outside any transaction: if the process dies
in between, or the broker refuses the message (the dispatch then raises
:class:`~python_cqrs_core.transports.TransportError`), the local effects stay and the
message is not delivered.  When that matters, use the transactional outbox, which
writes the message in the same transaction as the handlers' writes and relays it
after the commit.

With the ``[otel]`` extra, each publish is a ``PRODUCER`` span ``publish
<destination>`` (child of the message's span, with the messaging attributes), and the
headers carry *its* trace context, so the consumer's span is its child.
"""

from __future__ import annotations

from typing import Any

from ..codec import EnvelopeCodec
from ..mediator import CallNext, Mediator
from ..messages import BaseMessage
from ._tracing import publishing
from .base import Transport
from .consumer import _consumed_message_id
from .routing import Routes

__all__ = ["DirectPublisher"]


class DirectPublisher:
    """Mediator middleware that publishes routed messages after their local dispatch
    (see the module documentation).

    ``tracer_provider`` is the OpenTelemetry provider of the ``PRODUCER`` spans (the
    global one by default).
    """

    def __init__(
        self,
        transport: Transport,
        codec: EnvelopeCodec,
        routes: Routes,
        *,
        tracer_provider: object | None = None,
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.routes = routes
        self.tracer_provider = tracer_provider

    def install(self, bus: Mediator) -> None:
        """Add this middleware to ``bus`` for the routed message classes (and their
        subclasses) only, so other messages do not pay for it.  Routes added later
        are not covered: route first, or use ``bus.add_middleware(publisher)``."""
        bus.add_middleware(self, message_types=[message_type for message_type, _ in self.routes])

    async def __call__(self, message: BaseMessage, call_next: CallNext) -> Any:
        result = await call_next(message)
        destination = self.routes.destination_of(message)
        if destination is not None and message.request_id != _consumed_message_id():
            await self.publish(message, destination)
        return result

    async def publish(self, message: BaseMessage, destination: str | None = None) -> str:
        """Encode ``message`` and publish it to ``destination`` (default: its route);
        returns the broker's id.  Raises :class:`LookupError` for a message that is
        not routed and :class:`~python_cqrs_core.transports.TransportError` when the
        broker does not take it."""
        if destination is None:
            destination = self.routes.destination_of(message)
            if destination is None:
                raise LookupError(f"{type(message).__name__} is not routed to any destination")
        with publishing(
            message,
            system=self.transport.name,
            destination=destination,
            tracer_provider=self.tracer_provider,
        ):
            headers, body = self.codec.encode(message)
            return await self.transport.publish(destination, headers, body)

    def __repr__(self) -> str:
        return f"<DirectPublisher to {self.transport!r} of {self.routes!r}>"
