"""The console in real headless Chromium (Debian's `chromium`, driven by Playwright).

Screenshots are kept as artifacts in $CONSOLE_SCREENSHOTS (default: a
deskpilot-console-screenshots folder in the system temp directory); with
UPDATE_DOCS_SCREENSHOTS=1 the board and ticket shots are copied to docs/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from store import Store
from store.models import ticket_board
from tests.console_support import ADMIN, NOW, PASSWORD, console_app, seed

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS")
                  or Path(tempfile.gettempdir()) / "deskpilot-console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def served(tmp_path):
    from sandbox import serve_in_thread

    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    store.migrate()
    seed(store, 60)
    store.enqueue(source="zendesk", dedupe_key="evt-8", ticket_id="8", event_type="ticket.updated",
                  payload={}, received_at=NOW - timedelta(minutes=30))
    (claim,) = store.claim("browser-test", NOW - timedelta(minutes=29))
    store.dead_letter(claim, NOW - timedelta(minutes=20),
                      "TransientError: GET /api/v2/tickets/8.json returned 503")
    # Plain http on 127.0.0.1: the browser would not send a Secure cookie back.
    app = console_app(store, CONSOLE_INSECURE_COOKIES=True)
    base, stop = serve_in_thread(app)
    yield base, store
    stop()
    store.engine.dispose()


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def expected_order(store) -> list[tuple[str, str]]:
    b = ticket_board
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(b.c.ticket_id, b.c.next_due)
            .where(b.c.is_open == sa.true(), b.c.next_due.is_not(None))
            .order_by(b.c.next_due, b.c.ticket_id)
        ).all()
    return [(r.ticket_id, r.next_due.strftime("%Y-%m-%d %H:%M UTC")) for r in rows]


def test_the_support_leads_tour(served, page, shots):
    base, store = served

    # Without signing in, the console sends the browser to the sign-in page.
    page.goto(f"{base}/console/")
    assert "/console/login" in page.url
    page.goto(f"{base}/console/dead-letters")
    assert "/console/login" in page.url

    # Sign in.
    page.fill("input[name=email]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/dead-letters")
    page.goto(f"{base}/console/")

    # The board lists the seeded tickets by time to next breach, with their due times.
    rows = page.locator("#board tbody tr[data-ticket]")
    shown = [(rows.nth(i).get_attribute("data-ticket"), rows.nth(i).locator("td.due").inner_text())
             for i in range(rows.count())]
    expected = expected_order(store)
    assert len(shown) == 50  # the first page
    assert shown[: len(expected)] == expected[: len(shown)]
    assert page.locator("#board tbody tr.state-breached").count() > 0
    page.screenshot(path=str(shots / "console-board.png"), full_page=True)

    # A filter narrows it.
    page.select_option("select[name=state]", "breached")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/console/?state=breached*")
    filtered = page.locator("#board tbody tr[data-ticket]")
    assert 0 < filtered.count() < len(shown)
    badges = {filtered.nth(i).locator(".badge").inner_text() for i in range(filtered.count())}
    assert badges == {"breached"}

    # The ticket page explains the decision.
    page.goto(f"{base}/console/")
    page.click("#board a[href='/console/tickets/zendesk/3']")
    page.wait_for_url("**/console/tickets/zendesk/3")
    explanation = page.locator("#explanation").inner_text()
    assert "default-priority" in explanation and "no priority was chosen" in explanation
    assert "Advanced plan" in explanation and "office" in explanation
    assert "Tue 24 Nov 15:00 CET" in explanation
    page.screenshot(path=str(shots / "console-ticket.png"), full_page=True)

    # A dead letter is replayed.
    page.click("nav >> text=Dead letters")
    row = page.locator("#dead tr[data-ticket='8']")
    assert "returned 503" in row.inner_text()
    page.screenshot(path=str(shots / "console-dead-letters.png"), full_page=True)
    row.locator("button.replay").click()
    page.wait_for_selector("text=1 ticket re-queued.")
    assert page.locator("#dead tr[data-ticket='8']").count() == 0
    assert store.dead_letters() == []
    assert [c.ticket_id for c in store.claim("after-replay", NOW + timedelta(minutes=1))] == ["8"]

    # Sign out; the console is closed again.
    page.click("#logout")
    page.wait_for_url("**/console/login")
    page.goto(f"{base}/console/")
    assert "/console/login" in page.url

    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        for name in ("console-board.png", "console-ticket.png"):
            shutil.copy(shots / name, ROOT / "docs" / name)


def test_the_board_refreshes_itself(served, page):
    base, store = served
    page.clock.install()
    page.goto(f"{base}/console/login")
    page.fill("input[name=email]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")
    before = page.locator("#tile-open").inner_text()
    # A new open ticket arrives while the page is open...
    store.save_snapshot("zendesk", "7777", ticket={"id": "7777", "status": "open", "subject": "Fresh one"},
                        decision={"priority": "urgent", "policy": "advanced", "targets": {"first_response": {
                            "state": "running", "due": "2026-11-24T09:00:00Z"}}},
                        next_check=None, rules_version="v", now=NOW)
    # ...and 30 seconds later the board shows it without a reload.
    page.clock.fast_forward(31_000)
    page.wait_for_selector("#board tr[data-ticket='7777']", timeout=5000)
    assert int(page.locator("#tile-open").inner_text()) == int(before) + 1
    assert page.url == f"{base}/console/"
