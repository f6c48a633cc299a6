"""Preferences: edit, pause, export, delete — all POSTs with a CSRF token."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.models import Delivery
from newsletter.digest.send import MemoryTransport
from newsletter.subscribers.models import Subscriber
from tests.web.conftest import (
    add_subscriber,
    csrf_token,
    ingest_sample,
    run_digest_now,
    snapshot,
)


def load(factory: sessionmaker[Session], email: str = "ada@example.org") -> Subscriber | None:
    with factory() as session:
        return session.scalar(select(Subscriber).where(Subscriber.email == email))


def prefs_form(**changes: str) -> dict[str, str]:
    return {
        "profile": "diffusion, ti:transformer",
        "frequency": "weekly",
        "hour": "18",
        "timezone": "America/New_York",
        "weekday": "4",
        **changes,
    }


def test_page_shows_current_settings_and_changes_nothing(
    client: FlaskClient, factory: sessionmaker[Session], engine: Engine
) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    before = snapshot(engine)
    page = client.get(f"/p/{token}")
    assert page.status_code == 200
    assert "ada@example.org" in page.text and "Active" in page.text
    assert '<option value="UTC" selected>' in page.text
    assert client.head(f"/p/{token}").status_code == 200
    assert snapshot(engine) == before


def test_edit_profile_and_schedule(client: FlaskClient, factory: sessionmaker[Session]) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    reply = client.post(
        f"/p/{token}", data={**prefs_form(), "csrf_token": csrf_token(client, f"/p/{token}")}
    )
    assert reply.status_code == 303 and reply.location.endswith(f"/p/{token}")
    sub = load(factory)
    assert sub is not None
    assert (sub.profile, sub.frequency, sub.hour, sub.timezone, sub.weekday) == (
        "diffusion, ti:transformer",
        "weekly",
        18,
        "America/New_York",
        4,
    )
    assert "Saved." in client.get(f"/p/{token}").text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"profile": "a OR"}, "at character"),
        ({"hour": "24"}, "Choose an hour"),
        ({"timezone": "Mars/Olympus"}, "Choose a time zone"),
        ({"frequency": "hourly"}, "Choose daily or weekly"),
    ],
)
def test_invalid_preferences_are_refused_with_a_message(
    client: FlaskClient, factory: sessionmaker[Session], changes: dict[str, str], message: str
) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    data = {**prefs_form(**changes), "csrf_token": csrf_token(client, f"/p/{token}")}
    reply = client.post(f"/p/{token}", data=data)
    assert reply.status_code == 400 and message in reply.text
    sub = load(factory)
    assert sub is not None and sub.frequency == "daily"


def test_pause_and_resume(client: FlaskClient, factory: sessionmaker[Session]) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    csrf = csrf_token(client, f"/p/{token}")
    assert (
        client.post(f"/p/{token}/pause", data={"paused": "1", "csrf_token": csrf}).status_code
        == 303
    )
    sub = load(factory)
    assert sub is not None and sub.paused
    assert "Resume digests" in client.get(f"/p/{token}").text
    client.post(f"/p/{token}/pause", data={"paused": "0", "csrf_token": csrf})
    sub = load(factory)
    assert sub is not None and not sub.paused


def test_export_my_data(
    client: FlaskClient, settings: Settings, factory: sessionmaker[Session]
) -> None:
    t0 = utcnow()
    token = add_subscriber(factory, "ada@example.org", now=t0)["manage"]
    ingest_sample(factory, "000_9c40651dd6d15728.txt", t0 + timedelta(minutes=1))
    run_digest_now(factory, settings, MemoryTransport(), t0 + timedelta(minutes=2))
    reply = client.post(
        f"/p/{token}/export", data={"csrf_token": csrf_token(client, f"/p/{token}")}
    )
    assert reply.status_code == 200
    assert reply.mimetype == "application/json"
    assert "attachment" in reply.headers["Content-Disposition"]
    data = json.loads(reply.data)
    assert data["subscriber"]["email"] == "ada@example.org"
    assert [d["status"] for d in data["digests"]] == ["sent"]
    assert data["digests"][0]["paper_ids"]
    sub = load(factory)
    assert sub is not None
    for secret in (token, sub.token_salt, sub.manage_token_hash):
        assert secret not in reply.text


def test_delete_my_data_needs_the_box_ticked(
    client: FlaskClient, settings: Settings, factory: sessionmaker[Session]
) -> None:
    t0 = utcnow()
    token = add_subscriber(factory, "ada@example.org", now=t0)["manage"]
    ingest_sample(factory, "000_9c40651dd6d15728.txt", t0 + timedelta(minutes=1))
    run_digest_now(factory, settings, MemoryTransport(), t0 + timedelta(minutes=2))
    csrf = csrf_token(client, f"/p/{token}")
    unticked = client.post(f"/p/{token}/delete", data={"csrf_token": csrf})
    assert unticked.status_code == 303 and load(factory) is not None
    done = client.post(f"/p/{token}/delete", data={"csrf_token": csrf, "confirm": "delete"})
    assert done.status_code == 200 and "Everything is deleted" in done.text
    assert load(factory) is None
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert client.get(f"/p/{token}").status_code == 404


def test_forged_posts_without_csrf_token_are_refused(
    client: FlaskClient, factory: sessionmaker[Session], engine: Engine
) -> None:
    token = add_subscriber(factory, "ada@example.org")["manage"]
    before = snapshot(engine)
    for path, data in [
        (f"/p/{token}", prefs_form()),
        (f"/p/{token}/pause", {"paused": "1"}),
        (f"/p/{token}/export", {}),
        (f"/p/{token}/delete", {"confirm": "delete"}),
    ]:
        reply = client.post(path, data=data)
        assert reply.status_code == 400, path
        assert "ada@example.org" not in reply.text
    assert snapshot(engine) == before


def test_unknown_token_is_a_404(client: FlaskClient) -> None:
    assert client.get("/p/nope").status_code == 404
    csrf = csrf_token(client)
    assert client.post("/p/nope", data={**prefs_form(), "csrf_token": csrf}).status_code == 404
    assert client.post("/p/nope/export", data={"csrf_token": csrf}).status_code == 404
