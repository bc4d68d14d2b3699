"""The server-rendered pages: what each shows, that every stored value is escaped (a
payload holding ``<script>``, an error message holding HTML, a hostile
``requested_by``), and that the page's only scripts are its own."""

from __future__ import annotations

import re

import httpx
from observatory_testing import EMAIL, running

from python_cqrs_core.apps.observatory import create_app
from python_cqrs_core.store import MemoryStore
from python_cqrs_core.testing.store_contract import sample_record

HOSTILE_MARKUP = ("<script>alert", "<b>mail</b>", "<img src=x")


def assert_no_markup_from_data(html: str) -> None:
    """The only tags are the page's own: no stored ``<script>``, ``<b>`` or ``<img>``."""
    for markup in HOSTILE_MARKUP:
        assert markup not in html, markup
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script src="/static/observatory.js" defer>']


async def page(client: httpx.AsyncClient, path: str) -> str:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


async def test_the_timeline_lists_the_newest_messages_and_operations(client, orders):
    html = await page(client, "/timeline")
    positions = [int(p) for p in re.findall(r'data-position="(\d+)"', html)]
    assert positions == sorted(positions, reverse=True) and len(positions) == 36
    assert html.count('<li class="operation') == 12
    assert 'data-stream="/api/stream?after=36"' in html
    assert_no_markup_from_data(html)
    assert "&lt;b&gt;mail&lt;/b&gt;" in html  # the error, escaped, not dropped


async def test_the_timeline_keeps_its_filters_in_the_stream_and_in_links(client):
    html = await page(client, "/timeline?outcome=failed&kind=event")
    assert 'data-stream="/api/stream?after=36&amp;kind=event&amp;outcome=failed"' in html
    assert "/timeline?correlation=order-3&amp;kind=event&amp;outcome=failed" in html
    assert html.count('<tr class="record') == 1


async def test_the_deep_link_shows_the_operations_tree_and_waterfall(client, orders):
    html = await page(client, "/timeline?correlation=order-3")
    tree = html[
        html.index('<ul class="tree">') : html.index("</ul>", html.index('<ul class="tree">'))
    ]
    assert tree.count('<li class="node') == 3
    assert tree.count('<li class="node failed"') == 2
    assert tree.count('<span class="badge failed">failed</span>') == 2
    assert "└── " in tree
    assert html.count("<rect ") == 4  # one bar per handler
    assert "slowest" in html
    assert "3 messages,\n    2 failed, 1 root" in html
    assert_no_markup_from_data(html)


async def test_an_unknown_correlation_says_so(client):
    html = await page(client, "/timeline?correlation=order-404")
    assert "No operation with the correlation id" in html and "order-404" in html


async def test_the_message_page_shows_payload_headers_causes_and_effects(client):
    found = await client.get(
        "/api/records", params={"type": "obs.OrderPlaced", "outcome": "failed"}
    )
    event = found.json()["records"][0]
    html = await page(client, f"/messages/{event['message_id']}")
    assert "obs.OrderPlaced" in html and event["message_id"] in html
    assert "Causes" in html and "Effects" in html and "ReserveStock" in html
    assert '<pre class="error">MailError' not in html  # the whole message, not the summary
    assert (
        "&lt;b&gt;mail&lt;/b&gt; server &lt;img src=x onerror=alert(1)&gt; unreachable\nretry later"
        in html
    )
    assert_no_markup_from_data(html)
    root = (await client.get("/api/operations/order-3")).json()["nodes"][0]["record"]
    root_html = await page(client, root["links"]["message"])
    assert EMAIL not in root_html and "&#34;***&#34;" in root_html
    assert "&lt;script&gt;alert(&#39;payload&#39;)&lt;/script&gt;" in root_html
    assert "email: redacted in this view" in root_html


async def test_search_goes_straight_to_a_single_answer(client):
    response = await client.get("/search", params={"q": "order-4"})
    assert response.status_code == 303
    assert response.headers["location"] == "/timeline?correlation=order-4"
    html = await page(client, "/search?q=user:ada")
    assert html.count('<li class="operation') == 12
    assert "Nothing found" in await page(client, "/search?q=zzz-nothing")


async def test_the_failures_page_lists_failed_operations_and_says_no_transport(client):
    html = await page(client, "/failures")
    assert "order-3" in html and html.count('<tr class="record failed') == 2
    assert "No transport configured" in html
    assert_no_markup_from_data(html)


async def test_a_bad_filter_is_a_400_page_naming_it(client):
    response = await client.get("/timeline", params={"kind": "<script>x</script>"})
    assert response.status_code == 400
    assert "kind must be" in response.text and "<script>x" not in response.text


async def test_every_answer_forbids_inline_scripts_and_framing(client):
    for path in ("/timeline", "/api/records", "/static/observatory.js", "/metrics"):
        headers = (await client.get(path)).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


async def test_the_static_files_are_served_from_the_package(client):
    script = await client.get("/static/observatory.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text
    style = await client.get("/static/observatory.css")
    assert style.status_code == 200 and "http" not in style.text  # nothing from elsewhere


async def test_a_hostile_requested_by_and_type_are_escaped_everywhere():
    store = MemoryStore()
    await store.append(
        [
            sample_record(
                correlation_id="op-<x>",
                message_type="evil.<svg/onload=alert(1)>",
                requested_by='"><script>alert(3)</script>',
                outcome="failed",
                error_type="ValueError",
                error_message="<iframe src=javascript:alert(4)>",
            )
        ]
    )
    async with running(create_app(store)) as client:
        for path in ("/timeline", "/timeline?correlation=op-%3Cx%3E", "/failures", "/search?q=op"):
            html = (await client.get(path)).text
            for markup in ("<svg/onload", "<script>alert(3)", "<iframe"):
                assert markup not in html, (path, markup)


async def test_an_operation_with_several_roots_and_an_orphan_shows_them_all():
    store = MemoryStore()
    first = sample_record(correlation_id="shared")
    second = sample_record(correlation_id="shared", outcome="failed", error_type="KeyError")
    child = sample_record(correlation_id="shared", parent=first)
    orphan = sample_record(correlation_id="shared", cause="6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44")
    await store.append([first, second, child, orphan])
    async with running(create_app(store)) as client:
        operation = (await client.get("/api/operations/shared")).json()
        html = (await client.get("/timeline?correlation=shared")).text
    assert operation["roots"] == 3
    assert [(n["tree"], n["depth"], n["orphan"]) for n in operation["nodes"]] == [
        (0, 0, False),
        (0, 1, False),
        (1, 0, False),
        (2, 0, True),
    ]
    assert "3 roots" in html and html.count('<li class="node') == 4
    assert "(caused by 6c1f0d1e, which is not in this tree)" in html
