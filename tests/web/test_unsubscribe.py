"""Unsubscribing: the page and button, and the RFC 8058 one-click POST."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.send import MemoryTransport
from newsletter.subscribers.models import Subscriber
from tests.web.conftest import (
    add_subscriber,
    csrf_token,
    ingest_sample,
    run_digest_now,
    snapshot,
    status_of,
)

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def test_page_shows_a_button_and_changes_nothing(
    client: FlaskClient, factory: sessionmaker[Session], engine: Engine
) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    before = snapshot(engine)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200 and "Unsubscribe</button>" in page.text
    assert client.head(f"/u/{token}").status_code == 200
    assert snapshot(engine) == before


def test_human_form_unsubscribes_with_csrf_only(
    client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    assert client.post(f"/u/{token}", data={"csrf_token": "forged"}).status_code == 400
    assert client.post(f"/u/{token}").status_code == 400
    assert status_of(factory, "ada@example.org") == "active"
    page = client.post(f"/u/{token}", data={"csrf_token": csrf_token(client, f"/u/{token}")})
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    assert status_of(factory, "ada@example.org") == "unsubscribed"
    assert "already unsubscribed" in client.get(f"/u/{token}").text


def test_one_click_without_cookies_unsubscribes_before_the_next_digest(
    client: FlaskClient, settings: Settings, factory: sessionmaker[Session]
) -> None:
    # What a mail provider sends: no cookie jar, no CSRF token, just the body.
    client = client.application.test_client(use_cookies=False)
    t0 = utcnow()
    token = add_subscriber(factory, "ada@example.org", now=t0)["manage"]
    control = add_subscriber(factory, "bob@example.org", now=t0)
    assert control["manage"]
    ingest_sample(factory, "000_9c40651dd6d15728.txt", t0 + timedelta(minutes=1))

    reply = client.post(f"/u/{token}", data=ONE_CLICK)
    assert reply.status_code == 200
    assert "Set-Cookie" not in reply.headers
    assert status_of(factory, "ada@example.org") == "unsubscribed"
    again = client.post(f"/u/{token}", data=ONE_CLICK)
    assert (again.status_code, again.data) == (200, reply.data)
    bad = client.post("/u/not-a-token", data=ONE_CLICK)
    assert (bad.status_code, bad.data) == (200, reply.data)
    # multipart/form-data is allowed by RFC 8058 too
    multi = client.post(f"/u/{token}", data=ONE_CLICK, content_type="multipart/form-data")
    assert (multi.status_code, multi.data) == (200, reply.data)

    transport = MemoryTransport()
    run_digest_now(factory, settings, transport, t0 + timedelta(minutes=2))
    assert [m["To"] for m in transport.sent] == ["bob@example.org"]


def test_manage_tokens_are_long_random_and_stored_hashed(factory: sessionmaker[Session]) -> None:
    tokens = [add_subscriber(factory, f"u{i}@example.org")["manage"] for i in range(20)]
    assert len(set(tokens)) == 20
    for token in tokens:
        # URL-safe base64 of >= 16 bytes: at least 128 bits.
        assert len(token) * 6 >= 128
    with factory() as session:
        for sub in session.scalars(select(Subscriber)):
            row = " ".join(str(v) for v in sub.__dict__.values())
            assert not any(t in row for t in tokens)
            assert sub.manage_token_hash in {hashlib.sha256(t.encode()).hexdigest() for t in tokens}
