"""Subscribing: the form, the confirmation email, one answer for every address, abuse."""

from __future__ import annotations

import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.digest.send import MemoryTransport
from newsletter.subscribers.models import Subscriber
from newsletter.web.app import RateLimits, create_app
from tests.web.conftest import (
    BASE_URL,
    Clock,
    LiveServer,
    add_subscriber,
    csrf_token,
    status_of,
    subscribe_form,
    without_csrf,
)


def count_subscribers(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


class _Labels(HTMLParser):
    """Collects form controls and the ids that <label for> points at."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append({**a, "wrapped": "1" if self._in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


def test_subscribe_page_has_a_label_for_every_field(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    parser = _Labels()
    parser.feed(page.text)
    names = {c.get("name") for c in parser.controls}
    assert {"email", "profile", "frequency", "hour", "timezone", "weekday"} <= names
    for control in parser.controls:
        assert control["wrapped"] or control.get("id") in parser.label_for, control
    assert 'name="viewport"' in page.text
    # Nothing from another origin: no CDN fonts, scripts or styles.
    assert not re.search(r'(src|href)="(https?:)?//', page.text)


def test_subscribe_commits_then_mails_the_confirmation(
    client: FlaskClient, factory: sessionmaker[Session], transport: MemoryTransport
) -> None:
    token = csrf_token(client)
    page = client.post("/", data={**subscribe_form("Ada@Example.org"), "csrf_token": token})
    assert page.status_code == 200
    assert "Check your inbox" in page.text
    assert status_of(factory, "ada@example.org") == "pending"
    [msg] = transport.sent
    assert msg["To"] == "ada@example.org"
    assert "List-Unsubscribe" not in msg  # not on the list until confirmed
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert re.search(re.escape(BASE_URL) + r"/confirm/[\w-]{32,}", text)
    with factory() as session:
        sub = session.scalars(select(Subscriber)).one()
        assert sub.profile == subscribe_form("x")["profile"]
        assert sub.timezone == "Europe/Berlin"
        assert sub.confirm_token_hash and sub.confirm_token_hash not in text


def test_one_answer_for_new_pending_active_and_unsubscribed(
    client: FlaskClient, factory: sessionmaker[Session], transport: MemoryTransport, clock: Clock
) -> None:
    """The same address, taken through each state: status and body never differ."""
    form = subscribe_form("probe@example.org")
    answers = []

    def submit() -> None:
        page = client.post("/", data={**form, "csrf_token": csrf_token(client)})
        answers.append((page.status_code, page.content_type, without_csrf(page.text)))

    submit()  # new
    assert status_of(factory, "probe@example.org") == "pending"
    submit()  # pending
    token = re.search(r"/confirm/([\w-]+)", transport.sent[0].as_string())
    assert token
    client.post(f"/confirm/{token.group(1)}", data={"csrf_token": csrf_token(client)})
    assert status_of(factory, "probe@example.org") == "active"
    submit()  # active
    assert status_of(factory, "probe@example.org") == "active"  # unchanged by a stranger
    with factory() as session, session.begin():
        session.scalars(select(Subscriber)).one().status = "unsubscribed"
    submit()  # unsubscribed
    assert status_of(factory, "probe@example.org") == "pending"
    assert len({a for a in answers}) == 1, answers
    assert answers[0][0] == 200


def test_api_gives_one_answer_for_every_state(
    client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    add_subscriber(factory, "pending@example.org", status="pending")
    add_subscriber(factory, "active@example.org", status="active")
    add_subscriber(factory, "gone@example.org", status="unsubscribed")
    answers = set()
    for email in (
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "gone@example.org",
    ):
        reply = client.post("/api/subscribe", json={**subscribe_form(email), "hour": 7})
        answers.add((reply.status_code, reply.data))
    assert len(answers) == 1
    status, body = answers.pop()
    assert status == 202 and json.loads(body)["ok"] is True


def test_honeypot_answers_as_usual_and_does_nothing(
    client: FlaskClient, factory: sessionmaker[Session], transport: MemoryTransport
) -> None:
    normal = client.post(
        "/", data={**subscribe_form("human@example.org"), "csrf_token": csrf_token(client)}
    )
    trapped = client.post(
        "/",
        data={
            **subscribe_form("bot@example.org", website="http://spam"),
            "csrf_token": csrf_token(client),
        },
    )
    assert trapped.status_code == normal.status_code == 200
    assert without_csrf(trapped.text) == without_csrf(normal.text).replace("human@", "bot@")
    assert status_of(factory, "bot@example.org") is None
    assert [m["To"] for m in transport.sent] == ["human@example.org"]


def test_bad_input_is_shown_with_the_parser_message_and_position(
    client: FlaskClient, factory: sessionmaker[Session], transport: MemoryTransport
) -> None:
    page = client.post(
        "/",
        data={
            **subscribe_form("not-an-address", profile='diffusion, "graph neural'),
            "csrf_token": csrf_token(client),
        },
    )
    assert page.status_code == 400
    assert "Enter an email address like" in page.text
    assert "Unclosed quote (at character 12)." in page.text
    # The form keeps what was typed, and marks the culprit.
    assert 'value="not-an-address"' in page.text
    assert '<span class="where">diffusion, <mark>&#34;</mark>graph neural</span>' in page.text
    assert 'aria-invalid="true"' in page.text
    assert count_subscribers(factory) == 0 and not transport.sent


def test_forged_subscribe_without_csrf_token_is_refused(
    client: FlaskClient, factory: sessionmaker[Session], transport: MemoryTransport
) -> None:
    assert client.post("/", data=subscribe_form("forged@example.org")).status_code == 400
    # A token from another browser session does not do either.
    other = csrf_token(client.application.test_client())
    reply = client.post("/", data={**subscribe_form("forged@example.org"), "csrf_token": other})
    assert reply.status_code == 400
    assert "This form has expired" in reply.text
    assert count_subscribers(factory) == 0 and not transport.sent


def test_no_javascript_preview(client: FlaskClient, factory: sessionmaker[Session]) -> None:
    page = client.post("/preview", data={**subscribe_form(""), "csrf_token": csrf_token(client)})
    assert page.status_code == 200
    assert "What it would have caught" in page.text and "paper" in page.text
    assert count_subscribers(factory) == 0


def test_rate_limits_per_address_and_per_ip(
    settings: Settings, factory: sessionmaker[Session], transport: MemoryTransport
) -> None:
    app = create_app(
        settings,
        factory=factory,
        rate_limits=RateLimits(subscribe_per_ip="4 per hour", subscribe_per_address="2 per hour"),
        transport=lambda: transport,
        mail_in_background=False,
    )
    client = app.test_client()
    token = csrf_token(client)

    def post(email: str, ip: str) -> int:
        data = {**subscribe_form(email), "csrf_token": token}
        return client.post("/", data=data, environ_base={"REMOTE_ADDR": ip}).status_code

    assert [post("one@example.org", "10.0.0.1") for _ in range(3)] == [200, 200, 429]
    # Another client cannot push the same address past its limit either.
    assert post("ONE@example.org", "10.0.0.2") == 429
    assert post("two@example.org", "10.0.0.1") == 200
    assert post("three@example.org", "10.0.0.1") == 429  # the IP's 4 per hour
    assert post("three@example.org", "10.0.0.3") == 200
    limited = client.post(
        "/api/subscribe",
        json={**subscribe_form("one@example.org")},
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
    )
    assert limited.status_code == 429 and limited.json and limited.json["ok"] is False


def test_background_mailer_sends_after_the_response(
    settings: Settings, factory: sessionmaker[Session], transport: MemoryTransport
) -> None:
    app = create_app(settings, factory=factory, rate_limits=None, transport=lambda: transport)
    client = app.test_client()
    reply = client.post(
        "/", data={**subscribe_form("bg@example.org"), "csrf_token": csrf_token(client)}
    )
    assert reply.status_code == 200
    app.extensions["newsletter"].mailer.shutdown()
    assert [m["To"] for m in transport.sent] == ["bg@example.org"]


@pytest.mark.slow
@pytest.mark.parametrize("state", ["new", "pending", "unsubscribed"])
def test_fifty_parallel_subscribes_send_at_most_one_email(
    state: str,
    settings: Settings,
    factory: sessionmaker[Session],
    transport: MemoryTransport,
    live_server: LiveServer,
) -> None:
    """50 concurrent requests for one address, through a real threaded HTTP server and
    the real database: one confirmation email at most (rate limits off, so the
    service's own guarantee is what is tested)."""
    email = "crowd@example.org"
    if state != "new":
        # Created an hour ago: the resend throttle has passed, so one email is due.
        clock = Clock()
        add_subscriber(factory, email, status=state, now=clock.now - timedelta(hours=1))
    app = create_app(
        settings.replace(base_url=live_server.url),
        factory=factory,
        rate_limits=None,
        transport=lambda: transport,
        mail_in_background=False,
    )
    live_server.use(app)
    body = json.dumps(subscribe_form(email)).encode()

    def one(_: int) -> int:
        req = urllib.request.Request(
            live_server.url + "/api/subscribe",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as reply:
            return int(reply.status)

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses == [202] * 50
    assert [m["To"] for m in transport.sent] == [email]
    assert count_subscribers(factory) == 1
    assert status_of(factory, email) == "pending"
