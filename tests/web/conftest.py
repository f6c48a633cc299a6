"""Fixtures for the web app: an app on the test database, a client, a live server.

Every database fixture comes from ``tests/conftest.py``, so each test here runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from newsletter import schema
from newsletter.config import Settings
from newsletter.db import session_scope, utcnow
from newsletter.digest.send import MemoryTransport
from newsletter.subscribers import service
from newsletter.web.app import create_app

BASE_URL = "http://digest.test"
SECRET = "web-test-secret"
PROFILE = '"optimal transport", equivari*, gaussian splatting'
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """A settable "now" for token expiry."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        var_dir=tmp_path,
        database_url=db_url,
        base_url=BASE_URL,
        mail_url="memory://",
        secret_key=SECRET,
    )


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def app(
    settings: Settings,
    factory: sessionmaker[Session],
    transport: MemoryTransport,
    clock: Clock,
) -> Flask:
    """Rate limits off, confirmation emails sent inside the request to ``transport``."""
    return create_app(
        settings,
        factory=factory,
        rate_limits=None,
        transport=lambda: transport,
        mail_in_background=False,
        clock=clock,
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """GET ``path`` (which sets the session cookie) and return its form's CSRF token."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    match = CSRF_FIELD.search(page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def subscribe_form(email: str, profile: str = PROFILE, **extra: str) -> dict[str, str]:
    return {
        "email": email,
        "profile": profile,
        "frequency": "daily",
        "hour": "7",
        "timezone": "Europe/Berlin",
        "weekday": "0",
        **extra,
    }


def without_csrf(html: str) -> str:
    return CSRF_FIELD.sub('name="csrf_token" value=""', html)


def add_subscriber(
    factory: sessionmaker[Session],
    email: str,
    *,
    status: str = "active",
    profile: str = PROFILE,
    now: datetime | None = None,
    secret: str = SECRET,
) -> dict[str, Any]:
    """A subscriber in ``status``; returns its id and tokens (manage, confirm)."""
    now = now or utcnow()
    prefs = service.Preferences(profile, "daily", 7, "UTC")
    with session_scope(factory) as session:
        result = service.subscribe(
            session, email, prefs, secret_key=secret, now=now, confirmed=status != "pending"
        )
        sub = result.subscriber
        if status == "unsubscribed":
            service.unsubscribe(sub, now=now)
        elif status == "paused":
            service.set_paused(sub, True)
        session.flush()
        return {
            "id": sub.id,
            "manage": service.manage_token_for(sub, secret),
            "confirm": result.confirm_token,
        }


def status_of(factory: sessionmaker[Session], email: str) -> str | None:
    with factory() as session:
        sub = service.by_email(session, email)
        return None if sub is None else sub.status


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to prove a request changed nothing."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class LiveServer:
    url: str
    server: BaseWSGIServer
    app_holder: list[Flask]

    def use(self, app: Flask) -> None:
        self.app_holder[0] = app


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """A threaded werkzeug server on 127.0.0.1:<free port>; ``use(app)`` sets the app
    (the app's base URL needs the port, so it is made after the server)."""
    holder: list[Flask] = []

    def dispatch(environ: Any, start_response: Callable[..., Any]) -> Any:
        return holder[0](environ, start_response)

    server = make_server("127.0.0.1", 0, dispatch, threaded=True, request_handler=_QuietHandler)
    holder.append(Flask("placeholder"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", server, holder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


SAMPLES = Path(__file__).resolve().parents[2] / "newsletter" / "samples"


def ingest_sample(factory: sessionmaker[Session], name: str, now: datetime) -> None:
    from newsletter.papers.ingest import ingest_bytes

    with session_scope(factory) as session:
        ingest_bytes(session, (SAMPLES / name).read_bytes(), source=name, now=now)


def run_digest_now(
    factory: sessionmaker[Session], settings: Settings, transport: Any, now: datetime
) -> Any:
    """Plan and send every digest due at ``now`` (forced: whatever the hour)."""
    from newsletter.digest.service import run_digest

    return run_digest(factory, settings, now=now, force=True, transport=transport)
