"""The Observatory in a real browser: Debian's headless Chromium, driven by Selenium
through the system chromedriver (nothing is downloaded).  The Observatory runs as a
process of its own (``serve``), the shop records from yet another process, and the
page watches:

1. the timeline opens, live;
2. a chain dispatched by another process appears, without a reload, its hostile
   text shown as text;
3. picking it follows the deep link ``/timeline?correlation=ID``, which the address
   bar keeps;
4. the tree shows every node with its short id, the failed ones marked;
5. the page is saved as the screenshot ``docs/observatory.md`` shows.

And under load: 1,000 messages recorded per second for 30 s while the page watches;
the page answers clicks, and its event stream loses no record and repeats none.

Chromium and chromedriver come from the ``chromium`` and ``chromium-driver`` Debian
packages (``apt-get install -y chromium chromium-driver``); without them these tests
fail, saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from observatory_testing import MESSAGES_PER_ORDER, free_port, record_orders, writer_command
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from python_cqrs_core.store import open_store

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = ROOT / "docs" / "images" / "observatory-timeline.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(
                f"{path} is missing: the browser tests need Debian's chromium and "
                "chromium-driver packages (apt-get install -y chromium chromium-driver)",
                pytrace=False,
            )
    profile = tempfile.mkdtemp(prefix="cqrs-observatory-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


_SERVE = """
import sys
from python_cqrs_core.apps.observatory import serve
serve(sys.argv[1], port=int(sys.argv[2]), poll_interval=0.1)
"""


@pytest.fixture
def observatory(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(address, store URL)`` of an Observatory running as a process of its own over
    an SQLite store holding five recorded orders (order 3 failed)."""
    url = f"sqlite:///{tmp_path / 'cqrs.db'}"

    async def fill() -> None:
        store = await open_store(url)
        await record_orders(store, range(1, 6))
        await store.close()

    asyncio.run(fill())
    listener = free_port()
    port = listener.getsockname()[1]
    listener.close()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, url, str(port)])
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{address}/api/status", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the Observatory process ended"
            assert time.monotonic() < deadline, "the Observatory did not start"
            time.sleep(0.05)
        yield address, url
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait(driver: WebDriver, seconds: float = 20) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, seconds, poll_frequency=0.05)


def live_rows(driver: WebDriver, correlation_id: str) -> list[object]:
    return driver.find_elements(
        By.CSS_SELECTOR, f'#timeline tr.record.live[data-correlation-id="{correlation_id}"]'
    )


def received(browser: WebDriver) -> int:
    """How many live events the page says it received."""
    return int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-received") or 0)


def test_a_chain_from_another_process_appears_live_and_its_deep_link_shows_the_tree(
    browser: WebDriver, observatory: tuple[str, str], tmp_path: Path
):
    address, url = observatory
    browser.get(f"{address}/timeline")
    wait(browser).until(lambda d: d.find_element(By.ID, "live-status").text == "live")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline tr.record")) == 15

    writer = subprocess.run(
        writer_command(url, 4, "--first", "1000"), capture_output=True, text=True, timeout=60
    )
    assert writer.returncode == 0, writer.stderr
    wait(browser).until(lambda d: len(live_rows(d, "order-1003")) == MESSAGES_PER_ORDER)
    # Every event of the four chains arrives, once (the counter is updated per batch).
    wait(browser).until(lambda d: received(d) >= 12)
    assert received(browser) == 12

    # Hostile text arrived as text: the error's HTML is shown, never made into elements.
    failed = browser.find_element(
        By.CSS_SELECTOR, '#timeline tr.record.live.failed[data-correlation-id="order-1003"]'
    )
    assert "<b>mail</b> server <img src=x onerror=alert(1)>" in failed.text
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline b, #timeline img") == []
    operation = browser.find_element(
        By.CSS_SELECTOR, '#operations li[data-correlation-id="order-1003"]'
    )
    assert "failed" in operation.get_attribute("class")

    # Pick the chain: the deep link, kept in the address bar.
    root = browser.find_element(
        By.CSS_SELECTOR,
        '#timeline tr.record.root[data-correlation-id="order-1003"] td.correlation a',
    )
    root.click()
    wait(browser).until(lambda d: d.current_url == f"{address}/timeline?correlation=order-1003")
    nodes = browser.find_elements(By.CSS_SELECTOR, "#operation ul.tree li.node")
    tree = httpx.get(f"{address}/api/operations/order-1003").json()["nodes"]
    assert len(nodes) == len(tree) == MESSAGES_PER_ORDER
    for node, expected in zip(nodes, tree, strict=True):
        record = expected["record"]
        short = node.find_element(By.CSS_SELECTOR, "a.id").text
        assert short == record["message_id"].replace("-", "")[:8]
        marked = "failed" in node.get_attribute("class").split()
        assert marked == (record["outcome"] == "failed")
        if marked:
            assert node.find_element(By.CSS_SELECTOR, ".badge.failed").text == "failed"
            assert node.find_element(By.CSS_SELECTOR, ".mark").text == "✗"
    assert [n.get_attribute("class") for n in nodes].count("node failed") == 2
    bars = browser.find_elements(By.CSS_SELECTOR, "#operation table.waterfall rect")
    assert len(bars) == 4

    # The same deep link typed into a fresh page shows the same tree.
    browser.get(f"{address}/timeline?correlation=order-1003")
    again = browser.find_elements(By.CSS_SELECTOR, "#operation ul.tree li.node a.id")
    assert [a.text for a in again] == [n["record"]["display"]["id"] for n in tree]

    # The screenshot docs/observatory.md shows: taken on every run, written into docs/
    # only when asked (a test run must not change tracked files).
    screenshot = tmp_path / SCREENSHOT.name
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000
    if os.environ.get("CQRS_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(screenshot, SCREENSHOT)


@pytest.mark.slow
def test_under_1000_messages_a_second_the_page_answers_and_the_stream_loses_nothing(
    browser: WebDriver, observatory: tuple[str, str]
):
    address, url = observatory
    browser.get(f"{address}/timeline")
    wait(browser).until(lambda d: d.find_element(By.ID, "live-status").text == "live")
    start = httpx.get(f"{address}/api/status").json()["position"]
    rate = 1000 / MESSAGES_PER_ORDER  # orders a second, three messages each
    writer = subprocess.Popen(
        writer_command(url, 0, "--rate", str(rate), "--seconds", "30", "--first", "10000"),
        stdout=subprocess.PIPE,
        text=True,
    )
    pause = browser.find_element(By.ID, "pause")
    answers: list[float] = []
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        began = time.monotonic()
        while writer.poll() is None:
            time.sleep(2)
            for expected in ("Resume", "Pause"):
                clicked = time.monotonic()
                pause.click()
                wait(browser, 5).until(lambda d: pause.text.startswith(expected))
                answers.append(time.monotonic() - clicked)
        elapsed = time.monotonic() - began
        done = writer.stdout.read().strip()
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    written = int(done.split()[-1]) * MESSAGES_PER_ORDER
    assert elapsed >= 29 and written >= 0.9 * 30_000  # the load was the load asked for

    last = httpx.get(f"{address}/api/status").json()["position"]
    stored = last - start
    body = browser.find_element(By.TAG_NAME, "body")
    wait(browser, 30).until(lambda d: body.get_attribute("data-received") == str(stored))
    assert body.get_attribute("data-out-of-order") == "0"
    assert body.get_attribute("data-last-event-id") == str(last)
    assert stored == written
    assert len(answers) >= 20 and max(answers) < 1.0, answers
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline tr.record")
    assert len(rows) <= 300  # the page keeps its size however long it watches
