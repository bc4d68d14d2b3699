"""Shared by the transport tests and the consumer process they start: messages, a
codec, a private redis-server, and a poller."""

from __future__ import annotations

from collections.abc import Callable

from python_cqrs_core import BaseCommand, BaseEvent, MessageRegistry
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.transports import Transport

TransportFactory = Callable[..., Transport]
"""``make_transport(**options)``: the fixture that runs a test once per transport."""


class OrderPlaced(BaseEvent):
    __message_type__ = "tests.transports.OrderPlaced"
    order_id: int
    note: str = ""


class ReserveStock(BaseCommand):
    __message_type__ = "tests.transports.ReserveStock"
    order_id: int


class StockReserved(BaseEvent):
    __message_type__ = "tests.transports.StockReserved"
    order_id: int


REGISTRY = MessageRegistry([OrderPlaced, ReserveStock, StockReserved])


def make_codec(max_body_bytes: int = 1024 * 1024) -> EnvelopeCodec:
    return EnvelopeCodec(REGISTRY, max_body_bytes=max_body_bytes)
