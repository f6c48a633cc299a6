"""The whole journey in a real browser (Debian's headless chromium via Playwright):

subscribe on the page → the confirmation email arrives at a real SMTP server (aiosmtpd)
→ open its link → confirm → a digest is sent → follow its unsubscribe link → confirm →
the next digest run sends them nothing (while a control subscriber still gets one).
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.service import run_digest
from newsletter.web.app import create_app
from tests.smtp_server import RecordingHandler, smtp_server
from tests.web.conftest import (
    PROFILE,
    LiveServer,
    add_subscriber,
    ingest_sample,
    status_of,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    # A failure, not a skip: a missing browser must not pass CI silently.
    # `.ci/run` installs Debian's chromium; do the same by hand on a developer machine.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)


def wait_for_mail(
    handler: RecordingHandler, to: str, count: int, timeout: float = 15
) -> EmailMessage:
    """The ``count``-th message to ``to`` (1-based), waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = [m for m in handler.accepted if to in m.rcpt_tos]
        if len(mine) >= count:
            msg = email.message_from_bytes(mine[count - 1].content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            return msg
        time.sleep(0.05)
    raise AssertionError(f"no message {count} to {to} within {timeout}s")


def received_by(handler: RecordingHandler, to: str) -> int:
    return sum(1 for m in handler.accepted if to in m.rcpt_tos)


def part(msg: EmailMessage, kind: str) -> str:
    body = msg.get_body((kind,))
    assert body is not None
    content: str = body.get_content()
    return content


def test_subscribe_confirm_digest_unsubscribe_in_a_browser(
    tmp_path: Path,
    db_url: str,
    factory: sessionmaker[Session],
    live_server: LiveServer,
) -> None:
    from playwright import sync_api

    reader = "reader@example.org"
    with smtp_server() as smtp:
        settings = Settings(
            var_dir=tmp_path,
            database_url=db_url,
            base_url=live_server.url,
            mail_url=f"smtp://{smtp.host}:{smtp.port}",
            secret_key="browser-test-secret",
            site_name="Paper Digest",
        )
        # The real configuration: rate limits on, confirmation mail in the background.
        app = create_app(settings, factory=factory)
        live_server.use(app)
        t0 = utcnow()
        # A control subscriber, to show the last run did send digests — just not to them.
        control = "control@example.org"
        add_subscriber(factory, control, now=t0 - timedelta(minutes=5), secret=settings.secret_key)

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
            page = context.new_page()

            # 1. Subscribe through the page; the profile is checked and previewed live.
            page.goto(live_server.url + "/")
            page.fill("#email", reader)
            page.fill("#profile", '"optimal transport')
            page.wait_for_selector("#profile-status.bad")
            assert "Unclosed quote" in page.inner_text("#profile-status")
            page.fill("#profile", PROFILE)
            page.wait_for_selector("#profile-status.ok")
            assert page.input_value("#timezone") == "Asia/Tokyo"  # from the browser
            page.select_option("#hour", "6")
            page.click("button[type=submit]:has-text('Subscribe')")
            page.wait_for_selector("h1:has-text('Check your inbox')")
            assert status_of(factory, reader) == "pending"

            # 2. The confirmation email, from the SMTP server; its link shows a page.
            confirmation = wait_for_mail(smtp.handler, reader, 1)
            link = re.search(
                re.escape(live_server.url) + r"/confirm/[\w-]+", part(confirmation, "plain")
            )
            assert link, part(confirmation, "plain")
            page.goto(link.group(0))
            page.wait_for_selector("button:has-text('Confirm subscription')")
            assert status_of(factory, reader) == "pending"  # opening the link did nothing
            page.click("button:has-text('Confirm subscription')")
            page.wait_for_selector("h1:has-text('You are subscribed')")
            assert status_of(factory, reader) == "active"

            # 3. Papers arrive; a digest run mails the reader.
            ingest_sample(factory, "000_9c40651dd6d15728.txt", utcnow())
            first = run_digest(factory, settings, now=utcnow() + timedelta(minutes=1), force=True)
            assert first.sent == 2, first
            digest = wait_for_mail(smtp.handler, reader, 1 + 1)
            html = part(digest, "html")
            assert "Optimal Transport" in html
            unsubscribe = re.search(r'href="(' + re.escape(live_server.url) + r'/u/[\w-]+)"', html)
            assert unsubscribe
            assert digest["List-Unsubscribe"] == f"<{unsubscribe.group(1)}>"

            # 4. Follow the digest's unsubscribe link and confirm on the page.
            page.goto(unsubscribe.group(1))
            page.wait_for_selector("button:has-text('Unsubscribe')")
            assert status_of(factory, reader) == "active"
            page.click("button:has-text('Unsubscribe')")
            page.wait_for_selector("h1:has-text('You are unsubscribed')")
            assert status_of(factory, reader) == "unsubscribed"
            context.close()
            browser.close()

        # 5. More papers, the next day's run: the control gets a digest, the reader not.
        before = received_by(smtp.handler, reader)
        later = utcnow() + timedelta(days=1)
        ingest_sample(factory, "001_b52638599966a208.txt", later - timedelta(hours=1))
        second = run_digest(factory, settings, now=later, force=True)
        assert second.sent == 1, second
        wait_for_mail(smtp.handler, control, 2)
        assert received_by(smtp.handler, reader) == before
        app.extensions["newsletter"].mailer.shutdown()
