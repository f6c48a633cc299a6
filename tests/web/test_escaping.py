"""A profile holding HTML is shown as text on every page and in every email."""

from __future__ import annotations

import re
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.send import MemoryTransport
from tests.web.conftest import (
    add_subscriber,
    csrf_token,
    ingest_sample,
    run_digest_now,
    subscribe_form,
)

HOSTILE = '"optimal transport", <script>alert(1)</script>, <b>equivariant</b>'


def assert_escaped(html: str, where: str) -> None:
    assert "<script>alert" not in html, where
    assert "<b>equivariant" not in html, where
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, where


def body(msg: object, part: str) -> str:
    content: str = msg.get_body((part,)).get_content()  # type: ignore[attr-defined]
    return content


def test_profile_html_is_escaped_everywhere(
    client: FlaskClient,
    settings: Settings,
    factory: sessionmaker[Session],
    transport: MemoryTransport,
) -> None:
    # The subscribe form shown again (the address is wrong), and the no-script preview.
    again = client.post(
        "/", data={**subscribe_form("nope", profile=HOSTILE), "csrf_token": csrf_token(client)}
    )
    assert again.status_code == 400
    assert_escaped(again.text, "subscribe form")
    shown = client.post(
        "/preview", data={**subscribe_form("", profile=HOSTILE), "csrf_token": csrf_token(client)}
    )
    assert_escaped(shown.text, "preview")

    # The confirmation email and the pages its link leads to.
    form = subscribe_form("x@example.org", profile=HOSTILE)
    client.post("/", data={**form, "csrf_token": csrf_token(client)})
    [confirmation] = transport.sent
    assert_escaped(body(confirmation, "html"), "confirmation email")
    token = re.search(r"/confirm/([\w-]+)", body(confirmation, "plain"))
    assert token
    assert_escaped(client.get(f"/confirm/{token.group(1)}").text, "confirm page")
    done = client.post(f"/confirm/{token.group(1)}", data={"csrf_token": csrf_token(client)})
    assert_escaped(done.text, "confirmed page")

    # Preferences, shown and shown again with an error.
    t0 = utcnow()
    manage = add_subscriber(factory, "reader@example.org", profile=HOSTILE, now=t0)["manage"]
    assert_escaped(client.get(f"/p/{manage}").text, "preferences")
    bad = client.post(
        f"/p/{manage}",
        data={
            "profile": HOSTILE,
            "frequency": "daily",
            "hour": "99",
            "timezone": "UTC",
            "weekday": "0",
            "csrf_token": csrf_token(client),
        },
    )
    assert bad.status_code == 400
    assert_escaped(bad.text, "preferences with an error")

    # The digest and its web copy.
    ingest_sample(factory, "000_9c40651dd6d15728.txt", t0 + timedelta(minutes=1))
    digests = MemoryTransport()
    run_digest_now(factory, settings, digests, t0 + timedelta(minutes=2))
    [digest] = [m for m in digests.sent if m["To"] == "reader@example.org"]
    html = body(digest, "html")
    assert_escaped(html, "digest email")
    web = re.search(r"http://digest\.test(/d/[\w-]+)", html)
    assert web
    assert_escaped(client.get(web.group(1)).text, "web copy")
