"""The JSON API: profile check and preview, subscribe; and the web copy, health."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.send import MemoryTransport
from tests.web.conftest import (
    PROFILE,
    Clock,
    add_subscriber,
    ingest_sample,
    run_digest_now,
    status_of,
    subscribe_form,
)


def test_check_reports_problem_and_position(client: FlaskClient) -> None:
    assert client.post("/api/profile/check", json={"profile": PROFILE}).json == {"ok": True}
    reply = client.post("/api/profile/check", json={"profile": "graph (neural"})
    assert reply.status_code == 200
    assert reply.json == {
        "ok": False,
        "error": {
            "problem": "unclosed '('",
            "position": 6,
            "message": "unclosed '(' (at character 7)",
        },
    }
    empty = client.post("/api/profile/check", json={"profile": "  "}).json
    assert empty is not None and empty["ok"] is False


def test_preview_lists_recent_matches(
    client: FlaskClient, factory: sessionmaker[Session], clock: Clock
) -> None:
    ingest_sample(factory, "000_9c40651dd6d15728.txt", clock.now - timedelta(days=1))
    data = client.post("/api/profile/preview", json={"profile": PROFILE}).json
    assert data is not None and data["ok"] is True
    assert data["total"] >= len(data["matches"]) > 0
    first = data["matches"][0]
    assert any(seg["hit"] for seg in first["title"])
    assert first["matched"]
    # Papers older than the preview window are not "recent".
    clock.advance(timedelta(days=8))
    later = client.post("/api/profile/preview", json={"profile": PROFILE}).json
    assert later is not None and later["total"] == 0
    bad = client.post("/api/profile/preview", json={"profile": '"open'}).json
    assert bad is not None and bad["ok"] is False and bad["error"]["position"] == 0


def test_api_needs_json(client: FlaskClient) -> None:
    # A cross-site HTML form can only send form encodings: refused without CSRF token.
    reply = client.post("/api/subscribe", data=subscribe_form("x@example.org"))
    assert reply.status_code == 415 and reply.json and reply.json["ok"] is False
    assert client.post("/api/profile/check", json=["x"]).status_code == 400


def test_api_subscribe_validates(client: FlaskClient, factory: sessionmaker[Session]) -> None:
    reply = client.post(
        "/api/subscribe", json=subscribe_form("nope", profile="a OR", timezone="Nowhere")
    )
    assert reply.status_code == 400
    body = reply.json
    assert body is not None
    assert set(body["errors"]) == {"email", "profile", "timezone"}
    assert body["error"]["position"] == 2
    ok = client.post("/api/subscribe", json={**subscribe_form("api@example.org"), "hour": 6})
    assert ok.status_code == 202
    assert status_of(factory, "api@example.org") == "pending"


def test_web_copy_of_a_sent_digest(
    client: FlaskClient, settings: Settings, factory: sessionmaker[Session]
) -> None:
    t0 = utcnow()
    add_subscriber(factory, "reader@example.org", now=t0)
    ingest_sample(factory, "000_9c40651dd6d15728.txt", t0 + timedelta(minutes=1))
    transport = MemoryTransport()
    run_digest_now(factory, settings, transport, t0 + timedelta(minutes=2))
    [msg] = transport.sent
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    import re

    path = re.search(r"http://digest\.test(/d/[\w-]+)", html)
    assert path
    page = client.get(path.group(1))
    assert page.status_code == 200
    assert "Optimal Transport" in page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert client.get("/d/unknown").status_code == 404


def test_health_and_headers(client: FlaskClient) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200 and reply.json is not None
    assert reply.json["ok"] is True and reply.json["database"] == "ok"
    assert isinstance(reply.json["jobs"], list)
    page = client.get("/")
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "same-origin"
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    for name in ("web.css", "web.js"):
        with client.get(f"/static/{name}") as static:  # closes the file it streams
            assert static.status_code == 200
    assert client.get("/no-such-page").status_code == 404
    assert client.get("/api/nothing").json is not None
