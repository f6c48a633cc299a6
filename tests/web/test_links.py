"""GET and HEAD on every link of a digest and of a confirmation email change 0 rows.

Mail scanners and link previewers fetch every URL in a message; none may act."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from html import unescape

from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.send import MemoryTransport
from tests.web.conftest import (
    BASE_URL,
    add_subscriber,
    csrf_token,
    ingest_sample,
    run_digest_now,
    snapshot,
    subscribe_form,
)

URL = re.compile(r"https?://[^\s\"'<>]+")


def our_links(msg: EmailMessage) -> set[str]:
    """Every URL on our site in the message: both parts and the headers."""
    found: set[str] = set()
    for part in ("plain", "html"):
        body = msg.get_body((part,))
        assert body is not None
        found |= {unescape(u) for u in URL.findall(body.get_content())}
    for header in ("List-Unsubscribe",):
        found |= set(URL.findall(str(msg.get(header, ""))))
    return {u.rstrip(".,)>") for u in found if u.startswith(BASE_URL + "/")}


def test_every_emailed_link_is_safe_to_fetch(
    client: FlaskClient,
    settings: Settings,
    factory: sessionmaker[Session],
    engine: Engine,
    transport: MemoryTransport,
) -> None:
    t0 = utcnow()
    add_subscriber(factory, "reader@example.org", now=t0)
    ingest_sample(factory, "000_9c40651dd6d15728.txt", t0 + timedelta(minutes=1))
    digests = MemoryTransport()
    run_digest_now(factory, settings, digests, t0 + timedelta(minutes=2))
    [digest] = digests.sent
    client.post("/", data={**subscribe_form("new@example.org"), "csrf_token": csrf_token(client)})
    [confirmation] = transport.sent

    links = our_links(digest) | our_links(confirmation)
    kinds = {re.sub(r"/[^/]+$", "/…", u.removeprefix(BASE_URL)) for u in links}
    assert {"/u/…", "/p/…", "/d/…", "/confirm/…"} <= kinds, links

    scanner = client.application.test_client()  # no session, like a mail scanner
    before = snapshot(engine)
    for url in sorted(links):
        path = url.removeprefix(BASE_URL)
        assert scanner.get(path).status_code == 200, url
        assert scanner.head(path).status_code == 200, url
    assert snapshot(engine) == before
