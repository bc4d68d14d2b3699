"""FastStream: our causation chains on any FastStream broker (RabbitMQ, NATS, Redis, Kafka).

Install the ``[faststream]`` extra (plus the broker's own, e.g.
``faststream[rabbit]``) and give the broker one :class:`CQRSMiddleware`::

    from faststream.rabbit import RabbitBroker
    from python_cqrs_core.integrations.faststream import CQRSMiddleware, consumed_message

    chains = CQRSMiddleware(EnvelopeCodec(registry))
    broker = RabbitBroker(url, middlewares=[chains], decoder=chains.decoder)

**Publishing.**  A message published through the broker becomes part of the chain it is
published from, as if our own transports sent it:

- a message of ours (a :class:`~python_cqrs_core.BaseMessage`) travels in the wire
  format of :class:`~python_cqrs_core.codec.EnvelopeCodec`: the business fields as the
  JSON body, the message id, type name, kind, correlation id, causation id,
  ``requested_by``, ``requested_at`` and the W3C trace context as headers, so that
  it decodes on the other side into exactly the message that was sent.  Its ids are
  settled first by the one propagation rule, as a dispatch settles them (built or
  published inside a handler, it is a child of the message being handled);
- any other payload (a dict, text, a model of the application's own) published
  where a chain is current (inside a handler of ours, inside a FastStream handler of
  this middleware, or in a :class:`~python_cqrs_core.correlation_scope`) gets the
  chain headers of a new message of that chain: a fresh message id, the correlation
  id, the causation id (the ``request_id`` of the message being handled),
  ``requested_by``, ``requested_at`` and the trace context.  Headers the caller set
  explicitly are kept.  Outside any chain it is published as it is.

**Consuming.**  While a FastStream handler runs, the consumed message is the
*parent* of everything it dispatches through a :class:`~python_cqrs_core.Mediator`:
what it dispatches inherits the incoming correlation id and ``requested_by``, and
takes the incoming message id as its causation id.  A message without our headers
(published by another application) starts a chain of its own: a fresh correlation
id, no cause.  The broker's delivery ids and FastStream's own ``message_id`` and
``correlation_id`` are never used: only our headers, checked by the codec as the
hostile input they are.  Headers that fail those checks (control characters, a
10 KB value, an id that is not one) are all dropped together, with a warning, and
the message is handled as one from outside; the subscriber goes on.

When the message is one of ours and this service's registry knows its class,
:func:`consumed_message` returns it, exactly as it was sent, and
:meth:`CQRSMiddleware.decoder` makes a handler parameter annotated with its class
receive that very message::

    @broker.subscriber("orders.placed")
    async def on_order_placed(event: OrderPlaced) -> None:   # with decoder=chains.decoder
        await bus.process(event)        # recorded here; its handlers are its children

The decoder applies to every handler of the broker (or router, or subscriber) it is
given to: there a message of ours always arrives as its class, so annotate those
parameters with it (or :class:`~python_cqrs_core.BaseMessage`), and give the decoder
per subscriber where a handler wants the raw ``dict``.

While a FastStream handler runs on a message of ours, the middleware also describes
the delivery with :func:`~python_cqrs_core.context.consuming` (transport
``faststream.<broker>``, the subscriber's subject, topic, channel or queue as the
destination, its consumer group or queue group when the broker has one, else the
destination; the attempt when the broker says it, as NATS JetStream does, else 1), so
that ``await bus.process(event)`` on a bus with a
:class:`~python_cqrs_core.store.MessageRecorder` records a *delivery* of the message
(with this service's handler outcomes) and stores the message's record only if its
producer did not record it in the same store already: one record per message id, one
delivery per handling.

OpenTelemetry spans are FastStream's own: add the broker's telemetry middleware
(``RabbitTelemetryMiddleware`` ...) *after* this one; it continues the
``traceparent`` this middleware writes.  One limitation: a *batch* (one publish of
several bodies, one set of headers) cannot give each body its own ids, so a batch
with a message of ours in it is refused, and a batch is consumed as a message from
outside.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final
from uuid import uuid4

from faststream import BaseMiddleware, ContextRepo, PublishCommand, StreamMessage

from ..codec import EnvelopeCodec, MessageDecodeError
from ..context import Consumption, _trace, consuming
from ..messages import BaseEvent, BaseMessage, message_type_name
from ..names import (
    CONTENT_TYPE,
    TRANSPORT_LOGGER,
    WIRE_CORRELATION_ID,
    WIRE_MESSAGE_ID,
    WIRE_MESSAGE_KIND,
    WIRE_MESSAGE_TYPE,
)
from ..propagation import Ambient, RemoteParent, stamp
from ..registry import MessageRegistry, UnknownMessageTypeError

__all__ = ["CQRSMiddleware", "OpaqueMessage", "consumed_message"]

logger = logging.getLogger(TRANSPORT_LOGGER)


class OpaqueMessage(BaseEvent):
    """A message of a chain whose body is not one of this service's message classes.

    It has the tracing fields only.  Inside a FastStream handler it stands for the
    consumed message when that message carries our headers but this service cannot
    build it (a plain payload published inside a chain, or a class it does not
    register): :func:`~python_cqrs_core.current_message` returns it there, so logs
    show the incoming ids, and what the handler dispatches takes its ``request_id``
    (the incoming message id) as causation id.  It only stands for that message: it
    is not meant to be dispatched, published or recorded::

        @broker.subscriber("audit")
        async def on_audit(body: dict) -> None:
            current_message()  # OpaqueMessage(request_id=<the incoming id>, correlation_id=...)
    """

    __message_type__ = "python_cqrs_core.OpaqueMessage"


_OPAQUE_CODEC: Final = EnvelopeCodec(MessageRegistry([OpaqueMessage]))
# The headers our chain is carried in; a message with none of them is from outside.
_CHAIN_HEADERS: Final = frozenset({WIRE_MESSAGE_ID, WIRE_CORRELATION_ID, WIRE_MESSAGE_TYPE})
# What the codec reads of an OpaqueMessage: every wire header but the three that
# describe the body (its type, kind and content type belong to the sender's payload).
_BODY_HEADERS: Final = frozenset({WIRE_MESSAGE_TYPE, WIRE_MESSAGE_KIND, CONTENT_TYPE})
_LONGEST_NAME: Final = max(len(name) for name in _CHAIN_HEADERS)

_Frame = BaseMessage | Ambient | RemoteParent


@dataclass(frozen=True, slots=True)
class _Consumption:
    """What the middleware made of one consumed FastStream message."""

    source: StreamMessage[Any]
    frame: _Frame
    """The parent of what the handler dispatches (a message, or a fresh scope)."""
    message: BaseMessage | None = None
    """The message of ours it decodes to, if this service has its class."""
    error: Exception | None = None
    """Why a message that names one of our types does not decode here."""
    service: str | None = None
    """The producing service its ``cqrs-service`` header named, if any."""


# The consumption of the FastStream handler running in this context.
_consumption: ContextVar[_Consumption | None] = ContextVar("cqrs_faststream", default=None)


def consumed_message() -> BaseMessage | None:
    """The message of ours that the running FastStream handler consumes, as it was sent.

    ``None`` when the consumed message is not one of ours (it has no type header: a
    plain payload, or a message from outside).  Raises
    :class:`~python_cqrs_core.UnknownMessageTypeError` when it names a type this
    service's registry does not have, and
    :class:`~python_cqrs_core.codec.MessageDecodeError` when it does not decode (a
    malformed header, a body that fails validation), so that FastStream rejects it as
    it rejects any failing message; :class:`RuntimeError` outside a FastStream
    handler of a broker with :class:`CQRSMiddleware`::

        @broker.subscriber("orders.placed")
        async def on_order_placed(body: dict) -> None:
            event = consumed_message()
            if event is not None:
                await bus.process(event)
    """
    consumption = _consumption.get()
    if consumption is None:
        raise RuntimeError(
            "consumed_message() is called outside a FastStream handler of a broker "
            "that has CQRSMiddleware among its middlewares"
        )
    if consumption.error is not None:
        raise consumption.error
    return consumption.message


class CQRSMiddleware:
    """The FastStream middleware that carries our chains through a broker (see the
    module documentation): pass it in ``middlewares=[...]`` of any FastStream broker,
    router or subscriber, and its :meth:`decoder` as ``decoder=`` to receive our
    messages as typed handler parameters.

    ``codec`` decodes the messages this service consumes (its registry names the
    classes it knows) and encodes the ones it publishes.  One instance serves any
    number of brokers; FastStream calls it once per message (that is the middleware
    protocol) and it holds no state of its own.
    """

    __slots__ = ("codec",)

    def __init__(self, codec: EnvelopeCodec) -> None:
        if not isinstance(codec, EnvelopeCodec):
            raise TypeError(f"codec must be an EnvelopeCodec, got {type(codec).__name__}")
        self.codec = codec

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> BaseMiddleware[PublishCommand]:
        """The middleware of one FastStream message (FastStream calls this)."""
        return _ChainScope(msg, context=context, chains=self)

    async def decoder(
        self,
        msg: StreamMessage[Any],
        original_decoder: Callable[[StreamMessage[Any]], Awaitable[Any]],
    ) -> Any:
        """A FastStream decoder (``decoder=chains.decoder``) that gives a handler the
        message of ours it consumes, the very one :func:`consumed_message` returns, so a
        parameter annotated with its class receives it unchanged (same ``request_id``,
        same ids).  Without it FastStream would build a *new* message from the body.

        A message that is not one of ours is decoded by FastStream as usual; one that
        names one of our types but does not decode raises (FastStream rejects it and
        the subscriber goes on).
        """
        consumption = _consumption.get()
        if consumption is None or consumption.source is not msg:
            consumption = self._read(msg)  # a filter decodes before the middleware runs
        if consumption.error is not None:
            raise consumption.error
        if consumption.message is not None:
            return consumption.message
        return await original_decoder(msg)

    def _read(self, msg: StreamMessage[Any]) -> _Consumption:
        """What ``msg`` is to our chains: its parent frame, and the message of ours it
        decodes to (the middleware and :meth:`decoder` call it)."""
        headers = msg.headers
        if msg.batch_headers or not _names_chain(headers):
            return _Consumption(msg, _fresh_chain())
        error: Exception
        if _header(headers, WIRE_MESSAGE_TYPE):
            try:
                decoded = self.codec.decode(headers, msg.body)
            except UnknownMessageTypeError as exc:
                error = exc  # ours, of a class this service does not have: keep the ids
            except MessageDecodeError as exc:
                if not exc.field.startswith("body"):
                    return _refused(msg, exc, exc)
                error = exc  # the headers are sound, the body is not: keep the ids
            else:
                message = decoded.message
                return _Consumption(msg, message, message, service=decoded.service)
            frame = _opaque(headers)
            if isinstance(frame, MessageDecodeError):  # e.g. an unknown type and a bad id
                return _refused(msg, frame, error)
            return _Consumption(msg, frame, None, error)
        frame = _opaque(headers)
        if isinstance(frame, MessageDecodeError):
            return _refused(msg, frame, None)
        return _Consumption(msg, frame)

    def _chain_headers(self, frame: _Frame) -> dict[str, str]:
        """The headers of a new message of ``frame``'s chain whose body is not ours
        (the middleware calls it for a plain payload)."""
        stand_in = OpaqueMessage(
            correlation_id=frame.correlation_id,
            causation_id=frame.request_id,
            requested_by=frame.requested_by,
        )
        headers = self.codec.encode(stand_in).headers
        for name in _BODY_HEADERS:
            headers.pop(name, None)
        return headers

    def __repr__(self) -> str:
        return f"<CQRSMiddleware with {self.codec!r}>"


class _ChainScope(BaseMiddleware[PublishCommand]):
    """The middleware of one FastStream message: FastStream builds one per message
    consumed (and per publish), and calls :meth:`consume_scope` around the handler and
    :meth:`publish_scope` around each publish."""

    __slots__ = ("_chains", "_frame")

    def __init__(self, msg: Any, /, *, context: ContextRepo, chains: CQRSMiddleware) -> None:
        super().__init__(msg, context=context)
        self._chains = chains
        # The frame of the message this middleware consumed: what the handler's
        # returned value, published after the handler, belongs to.
        self._frame: _Frame | None = None

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        consumption = self._chains._read(msg)
        self._frame = consumption.frame
        # The consumed message is the parent of what the handler dispatches, as if its
        # own handler were running: the mediator's frame, set the mediator's way (the
        # context module offers no public setter of a message frame).
        frame_token = _trace.set(consumption.frame)
        token = _consumption.set(consumption)
        try:
            if consumption.message is None:
                return await call_next(msg)
            # One of ours: a recorder on the bus records its delivery (see the module).
            with consuming(_delivery(msg, consumption.message, consumption.service, self.context)):
                return await call_next(msg)
        finally:
            _consumption.reset(token)
            _trace.reset(frame_token)

    async def publish_scope(
        self, call_next: Callable[[PublishCommand], Awaitable[Any]], cmd: PublishCommand
    ) -> Any:
        frame = _trace.get()
        if frame is None:
            frame = self._frame
        bodies = cmd.batch_bodies
        if len(bodies) > 1:
            if any(isinstance(body, BaseMessage) for body in bodies):
                raise ValueError(
                    "a batch cannot carry messages of ours: a batch has one set of headers, "
                    "and each message needs its own ids; publish them one at a time"
                )
            return await call_next(cmd)
        body = cmd.body
        if isinstance(body, BaseMessage):
            stamp(body, frame)  # its ids are settled as a dispatch settles them
            headers, cmd.body = self._chains.codec.encode(body)
            cmd.add_headers(headers)  # the message's own ids win over stale copies
        elif frame is not None:
            cmd.add_headers(self._chains._chain_headers(frame), override=False)
        return await call_next(cmd)


# Where a subscriber reads, and as which group, in the log context FastStream's
# subscribers describe themselves with (RabbitMQ, NATS, Redis, Kafka).
_DESTINATION_KEYS: Final = ("subject", "topic", "channel", "queue")
_GROUP_KEYS: Final = ("group_id", "queue")


def _delivery(
    msg: StreamMessage[Any], message: BaseMessage, service: str | None, context: ContextRepo
) -> Consumption:
    """The :class:`~python_cqrs_core.context.Consumption` of a consumed message of
    ours: what a message recorder records of this delivery."""
    place: dict[str, Any] = {}
    subscriber = context.get("handler_")
    if subscriber is not None:
        try:
            place = dict(subscriber.get_log_context(None))
        except Exception:  # noqa: BLE001 - a subscriber of another shape: names unknown
            place = {}
    destination = next((str(place[k]) for k in _DESTINATION_KEYS if place.get(k)), "unknown")
    group = next((str(place[k]) for k in _GROUP_KEYS if place.get(k)), destination)
    broker = type(msg).__module__.split(".")
    transport = f"faststream.{broker[1]}" if len(broker) > 2 else "faststream"
    return Consumption(
        message_id=message.request_id,
        message_type=message_type_name(message),
        correlation_id=message.correlation_id or message.request_id,
        causation_id=message.causation_id,
        requested_by=message.requested_by,
        transport=transport,
        destination=destination,
        group=group,
        attempt=_attempt(msg),
        service=service,
    )


def _attempt(msg: StreamMessage[Any]) -> int:
    """The delivery attempt, when the broker says it (NATS JetStream counts them),
    else 1."""
    try:
        delivered = msg.raw_message.metadata.num_delivered
    except Exception:  # noqa: BLE001 - no such metadata on this broker's messages
        return 1
    return delivered if isinstance(delivered, int) and delivered >= 1 else 1


def _names_chain(headers: Mapping[str, Any]) -> bool:
    """Whether ``headers`` carry any of our chain headers (in any case)."""
    return any(
        isinstance(name, str) and len(name) <= _LONGEST_NAME and name.lower() in _CHAIN_HEADERS
        for name in headers
    )


def _header(headers: Mapping[str, Any], wanted: str) -> bool:
    """Whether ``headers`` hold ``wanted`` (a lower-case name) in any case."""
    return any(
        isinstance(name, str) and len(name) == len(wanted) and name.lower() == wanted
        for name in headers
    )


def _opaque(headers: Mapping[str, Any]) -> OpaqueMessage | MessageDecodeError:
    """The tracing fields of ``headers`` as an :class:`OpaqueMessage`, checked by the
    codec's own rules, or what is wrong with them."""
    pairs: list[tuple[str | bytes, str | bytes]] = [
        (name, value)
        for name, value in headers.items()
        if isinstance(name, str) and name.lower() not in _BODY_HEADERS
    ]
    pairs.append((WIRE_MESSAGE_TYPE, OpaqueMessage.__message_type__))
    try:
        message = _OPAQUE_CODEC.decode(pairs, b"{}").message
    except MessageDecodeError as exc:
        return exc
    assert isinstance(message, OpaqueMessage)
    return message


def _fresh_chain() -> Ambient:
    """The frame of a message from outside: a chain of its own, with a fresh id."""
    return Ambient(uuid4(), None)


def _refused(
    msg: StreamMessage[Any], problem: MessageDecodeError, error: Exception | None
) -> _Consumption:
    """Headers that fail the codec's checks: all dropped, the message handled as one
    from outside (the warning names the header and the problem, never the value)."""
    logger.warning("FastStream message with unusable chain headers, handled as new: %s", problem)
    return _Consumption(msg, _fresh_chain(), None, error)
