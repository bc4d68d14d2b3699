"""The ``/api/...`` endpoints behind every view, through httpx over real HTTP, on SQLite
and on PostgreSQL: what each answers, that the answers are what the OpenAPI document
says, and that a bad request is a 400 naming the parameter."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from observatory_testing import EMAIL, HTML_ERROR, MESSAGES_PER_ORDER, SCRIPT, record_orders
from prometheus_client.parser import text_string_to_metric_families

from python_cqrs_core.apps.observatory.models import (
    FailuresModel,
    MessageModel,
    OperationModel,
    RecordPageModel,
)
from python_cqrs_core.store import MessageStore

TOTAL = 12 * MESSAGES_PER_ORDER


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def test_records_come_newest_first_and_page_back_without_gaps(client, reader):
    first = await get(client, "/api/records", limit=10)
    positions = [r["position"] for r in first["records"]]
    last = await reader.last_position()
    assert positions == list(range(last, last - 10, -1))
    assert first["position"] == last
    seen = positions
    before = first["next_before"]
    while before is not None:
        page = await get(client, "/api/records", limit=10, before=before)
        seen += [r["position"] for r in page["records"]]
        before = page["next_before"]
    assert sorted(seen, reverse=True) == seen and len(set(seen)) == TOTAL


async def test_records_are_filtered_by_kind_type_outcome_requested_by_and_service(client):
    async def types(**filters: str) -> list[str]:
        found = await get(client, "/api/records", limit=100, **filters)
        return [r["message_type"] for r in found["records"]]

    assert set(await types(kind="event")) == {"obs.OrderPlaced"}
    assert len(await types(type="obs.ReserveStock")) == 12
    assert await types(outcome="failed") == ["obs.OrderPlaced", "obs.PlaceOrder"]
    assert len(await types(requested_by="user:ada", service="shop")) == TOTAL
    assert await types(requested_by="user:nobody") == []
    assert await types(service="billing") == []
    assert len(await types(kind="", type="", outcome="")) == TOTAL  # an HTML form's empties


async def test_a_record_carries_its_handler_events_display_and_links(client, orders):
    found = await get(client, "/api/records", type="obs.OrderPlaced", outcome="failed")
    [event] = found["records"]
    assert [e["event"] for e in event["handler_events"]] == ["handler.completed", "handler.failed"]
    failed = event["handler_events"][1]
    assert failed["handler"].endswith("send_mail") and failed["error_message"] == HTML_ERROR
    assert failed["correlation_id"] == "order-3" and failed["kind"] == "event"
    display = event["display"]
    assert display["mark"] == "✗" and display["type"] == "OrderPlaced"
    assert display["id"] == event["message_id"][:8]
    assert display["error"].startswith("MailError: <b>mail</b>") and "\n" not in display["error"]
    assert [h["name"] for h in display["handlers"]] == ["reserve_when_placed", "send_mail"]
    assert event["links"] == {
        "message": f"/messages/{event['message_id']}",
        "operation": "/timeline?correlation=order-3&type=obs.OrderPlaced&outcome=failed",
    }


async def test_personal_data_stays_redacted_in_every_answer(client, orders):
    pages = [
        await client.get("/api/records", params={"limit": 100}),
        await client.get("/api/feed"),
        await client.get("/api/operations/order-1"),
        await client.get("/api/failures"),
        await client.get("/api/search", params={"q": "user:ada"}),
    ]
    roots = (await get(client, "/api/records", type="obs.PlaceOrder"))["records"]
    pages.append(await client.get(f"/api/messages/{roots[0]['message_id']}"))
    for page in pages:
        assert page.status_code == 200
        assert EMAIL not in page.text
    assert roots[0]["payload"] == {"order_id": 12, "email": "***", "note": SCRIPT}
    assert roots[0]["pii_fields"] == ["email"]


async def test_the_feed_is_the_stores_cursor(client, reader):
    page = await get(client, "/api/feed", after=0, limit=5)
    assert [r["position"] for r in page["records"]] == [1, 2, 3, 4, 5]
    rest = await get(client, "/api/feed", after=page["next_after"], limit=1000)
    assert len(rest["records"]) == TOTAL - 5
    end = await get(client, "/api/feed", after=rest["next_after"])
    assert end == {"records": [], "next_after": await reader.last_position()}


async def test_operations_come_newest_first_with_their_counts(client, orders):
    page = await get(client, "/api/operations", limit=5)
    assert [o["correlation_id"] for o in page["operations"]] == orders[::-1][:5]
    failed = await get(client, "/api/operations", outcome="failed")
    [operation] = failed["operations"]
    assert operation["correlation_id"] == "order-3"
    assert (operation["message_count"], operation["failed_count"]) == (3, 2)
    assert operation["links"]["operation"] == "/timeline?correlation=order-3"
    older = await get(client, "/api/operations", limit=5, before=page["next_before"])
    assert [o["correlation_id"] for o in older["operations"]] == orders[::-1][5:10]


async def test_an_operation_is_its_tree_with_short_ids_and_the_failed_nodes_marked(client):
    operation = await get(client, "/api/operations/order-3")
    OperationModel.model_validate(operation)
    nodes = operation["nodes"]
    assert [(n["depth"], n["guide"], n["record"]["display"]["type"]) for n in nodes] == [
        (0, "", "PlaceOrder"),
        (1, "└── ", "OrderPlaced"),
        (2, "    └── ", "ReserveStock"),
    ]
    assert [n["record"]["outcome"] for n in nodes] == ["failed", "failed", "succeeded"]
    assert all(n["record"]["display"]["id"] == n["record"]["message_id"][:8] for n in nodes)
    assert all(n["record"]["service"] == "shop" for n in nodes)
    assert (operation["message_count"], operation["failed_count"], operation["roots"]) == (3, 2, 1)
    assert operation["requested_by"] == "user:ada" and operation["services"] == ["shop"]


async def test_the_waterfall_puts_every_handler_on_one_time_axis(client):
    waterfall = (await get(client, "/api/operations/order-3"))["waterfall"]
    rows = waterfall["rows"]
    assert [row["handler"] for row in rows] == [
        "place_order",
        "reserve_when_placed",
        "send_mail",
        "reserve_stock",
    ]
    assert sum(row["slowest"] for row in rows) == 1
    slowest = max(rows, key=lambda row: row["self_ms"])
    assert slowest["slowest"]
    assert rows[0]["self_ms"] < rows[0]["duration_ms"]  # place_order waited for the event
    for row in rows:
        assert row["left"] >= 0 and row["left"] + row["width"] <= 100.0001
        assert row["start_ms"] + row["duration_ms"] <= waterfall["span_ms"] + 1e-6
    # The event's two subscribers ran one after the other.
    reserve, mail = rows[1], rows[2]
    assert mail["start_ms"] == pytest.approx(reserve["start_ms"] + reserve["duration_ms"])


async def test_an_unknown_operation_is_404_and_a_bad_one_400(client):
    missing = await client.get("/api/operations/order-999")
    assert missing.status_code == 404 and "order-999" in missing.json()["detail"]
    bad = await client.get("/api/operations/with%20space")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("correlation:")


async def test_a_message_has_its_causes_effects_and_headers(client):
    tree = (await get(client, "/api/operations/order-5"))["nodes"]
    root, event, reserve = (n["record"] for n in tree)
    view = await get(client, f"/api/messages/{event['message_id']}")
    MessageModel.model_validate(view)
    assert [c["message_id"] for c in view["causes"]] == [root["message_id"]]
    assert [e["record"]["message_id"] for e in view["effects"]] == [reserve["message_id"]]
    assert view["effects"][0]["guide"] == "└── "
    assert view["record"]["message_id"] == event["message_id"]
    top = await get(client, f"/api/messages/{root['message_id']}")
    assert top["causes"] == [] and len(top["effects"]) == 2
    assert '"email": "***"' in top["payload_json"]


async def test_a_failed_message_shows_its_whole_error(client):
    failed = await get(client, "/api/records", type="obs.OrderPlaced", outcome="failed")
    view = await get(client, f"/api/messages/{failed['records'][0]['message_id']}")
    assert view["error_message"] == HTML_ERROR  # both lines: a detail view shows it all


async def test_a_message_that_is_not_stored_is_404_and_a_bad_id_400(client):
    missing = await client.get("/api/messages/6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44")
    assert missing.status_code == 404
    bad = await client.get("/api/messages/not-an-id")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("message_id:")


async def test_search_finds_a_message_by_id_or_unique_prefix(client):
    records = (await get(client, "/api/records", type="obs.ReserveStock", limit=1))["records"]
    message_id = records[0]["message_id"]
    for query in (
        message_id,
        message_id[:8],
        message_id[:8].upper(),
        message_id.replace("-", "")[:12],
    ):
        found = await get(client, "/api/search", q=query)
        assert [m["message_id"] for m in found["messages"]] == [message_id], query


async def test_search_finds_operations_by_correlation_id_and_requested_by(client, orders):
    by_id = await get(client, "/api/search", q="order-7")
    assert [o["correlation_id"] for o in by_id["operations"]] == ["order-7"]
    by_user = await get(client, "/api/search", q="user:ada")
    assert [o["correlation_id"] for o in by_user["operations"]] == orders[::-1]
    nothing = await get(client, "/api/search", q="user:nobody")
    assert nothing["messages"] == nothing["operations"] == []


async def test_failures_list_failed_operations_with_their_errors(client):
    failures = await get(client, "/api/failures")
    FailuresModel.model_validate(failures)
    [failed] = failures["operations"]
    assert failed["operation"]["correlation_id"] == "order-3"
    assert [f["message_type"] for f in failed["failures"]] == ["obs.PlaceOrder", "obs.OrderPlaced"]
    assert all(f["error_message"] == HTML_ERROR for f in failed["failures"])
    assert failures["dead_letters"] == {
        "transport": None,
        "destinations": [],
        "dead_letters": [],
        "error": None,
    }


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/api/records", {"kind": "job"}, "kind"),
        ("/api/records", {"outcome": "maybe"}, "outcome"),
        ("/api/records", {"type": "has space"}, "type"),
        ("/api/records", {"requested_by": "a\x1bb"}, "requested_by"),
        ("/api/records", {"limit": "0"}, "limit"),
        ("/api/records", {"before": "x"}, "before"),
        ("/api/feed", {"after": "-1"}, "after"),
        ("/api/operations", {"service": "two words"}, "service"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(client, path, params, named):
    response = await client.get(path, params=params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(named)


async def test_the_openapi_document_describes_every_endpoint(client):
    document = await get(client, "/openapi.json")
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/api/records",
        "/api/feed",
        "/api/stream",
        "/api/operations",
        "/api/operations/{correlation_id}",
        "/api/messages/{message_id}",
        "/api/search",
        "/api/failures",
        "/api/dead-letters",
        "/api/status",
        "/metrics",
    }
    assert not any(
        path.startswith(("/timeline", "/login", "/static")) for path in document["paths"]
    )
    stream = document["paths"]["/api/stream"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    assert "RecordModel" in document["components"]["schemas"]
    records = await get(client, "/api/records")
    RecordPageModel.model_validate(records)
    assert (await client.get("/docs")).status_code == 404  # no CDN-loaded docs page


async def test_status_says_which_store_and_how_far_the_feed_read(client, reader):
    status = await get(client, "/api/status")
    assert status["position"] == await reader.last_position()
    assert status["feed_error"] is None and status["transport"] is None
    assert status["store"] == reader.url


async def test_metrics_count_what_the_feed_followed_in_the_prometheus_format(
    client: httpx.AsyncClient, writer: MessageStore
):
    await record_orders(writer, range(100, 104), service="billing")
    samples: dict[str, Any] = {}
    for _ in range(100):
        response = await client.get("/metrics")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
        key = (
            "cqrs_observatory_records_total",
            (
                ("kind", "command"),
                ("message_type", "obs.PlaceOrder"),
                ("outcome", "failed"),
                ("service", "billing"),
            ),
        )
        if key in samples:
            break
        await asyncio.sleep(0.05)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples[key] == 1  # order 103 failed
    placed = (
        "cqrs_observatory_records_total",
        (
            ("kind", "command"),
            ("message_type", "obs.PlaceOrder"),
            ("outcome", "succeeded"),
            ("service", "billing"),
        ),
    )
    assert samples[placed] == 3
    assert samples[("cqrs_observatory_store_position", ())] == await writer.last_position()
    assert samples[("cqrs_observatory_stream_clients", ())] == 0


async def test_an_operation_lists_what_became_of_a_message_in_the_services_that_consumed_it(
    writer: MessageStore, orders: list[str], reader: MessageStore
):
    """Deliveries of a consumed message (one attempt failed, then handled) are listed
    under its node, in the API and on the page, with their text escaped."""
    from datetime import UTC, datetime

    from observatory_testing import running

    from python_cqrs_core.apps.observatory import create_app
    from python_cqrs_core.store import DeliveryRecord

    [placed] = [r for r in await writer.by_correlation("order-5") if r.kind == "event"]
    now = datetime.now(UTC)

    def delivery(attempt: int, outcome: str, error: str | None) -> DeliveryRecord:
        return DeliveryRecord(
            placed.message_id, placed.message_type, placed.correlation_id, "inventory",
            "redis", "orders.events", "inventory", attempt, f"{attempt}-0", outcome, (),
            None if error is None else "TimeoutError", error, 3.5, now,
        )  # fmt: skip

    await writer.append_deliveries(
        [delivery(1, "failed", "<b>warehouse</b> did not answer"), delivery(2, "succeeded", None)]
    )
    async with running(create_app(reader, poll_interval=0.05)) as client:
        operation = await get(client, "/api/operations/order-5")
        OperationModel.model_validate(operation)
        [node] = [n for n in operation["nodes"] if n["deliveries"]]
        assert node["record"]["message_id"] == str(placed.message_id)
        assert [(d["attempt"], d["outcome"], d["failed"]) for d in node["deliveries"]] == [
            (1, "failed", True),
            (2, "succeeded", False),
        ]
        assert node["deliveries"][0]["line"].startswith(
            "inventory (group inventory, redis orders.events) attempt 1: failed"
        )
        page = await client.get("/timeline", params={"correlation": "order-5"})
        assert 'class="delivery failed" data-outcome="failed"' in page.text
        assert "&lt;b&gt;warehouse&lt;/b&gt; did not answer" in page.text
        assert "<b>warehouse</b>" not in page.text
