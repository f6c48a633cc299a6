"""Confirming: the emailed link shows a page; only its button's POST activates."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.web.conftest import Clock, add_subscriber, csrf_token, snapshot, status_of


def test_get_and_head_show_a_page_and_change_nothing(
    client: FlaskClient, factory: sessionmaker[Session], engine: Engine
) -> None:
    token = add_subscriber(factory, "ada@example.org", status="pending")["confirm"]
    before = snapshot(engine)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert "Confirm subscription</button>" in page.text and "ada@example.org" in page.text
    assert client.head(f"/confirm/{token}").status_code == 200
    assert snapshot(engine) == before
    assert status_of(factory, "ada@example.org") == "pending"


def test_post_activates_once(client: FlaskClient, factory: sessionmaker[Session]) -> None:
    token = add_subscriber(factory, "ada@example.org", status="pending")["confirm"]
    done = client.post(
        f"/confirm/{token}", data={"csrf_token": csrf_token(client, f"/confirm/{token}")}
    )
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of(factory, "ada@example.org") == "active"
    # The page links to the preferences with the manage token.
    assert "/p/" in done.text
    again = client.post(f"/confirm/{token}", data={"csrf_token": csrf_token(client)})
    assert again.status_code == 404 and "expired or was used" in again.text
    assert client.get(f"/confirm/{token}").status_code == 404


def test_tokens_expire_after_72_hours(
    client: FlaskClient, factory: sessionmaker[Session], clock: Clock
) -> None:
    token = add_subscriber(factory, "ada@example.org", status="pending", now=clock.now)["confirm"]
    clock.advance(timedelta(hours=71, minutes=59))
    assert client.get(f"/confirm/{token}").status_code == 200
    clock.advance(timedelta(minutes=2))
    assert client.get(f"/confirm/{token}").status_code == 404
    reply = client.post(f"/confirm/{token}", data={"csrf_token": csrf_token(client)})
    assert reply.status_code == 404
    assert status_of(factory, "ada@example.org") == "pending"


def test_forged_confirm_without_csrf_token_is_refused(
    client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    token = add_subscriber(factory, "ada@example.org", status="pending")["confirm"]
    assert client.post(f"/confirm/{token}").status_code == 400
    assert status_of(factory, "ada@example.org") == "pending"


def test_unknown_token(client: FlaskClient) -> None:
    assert client.get("/confirm/nope").status_code == 404
    assert client.post("/confirm/nope", data={"csrf_token": csrf_token(client)}).status_code == 404
