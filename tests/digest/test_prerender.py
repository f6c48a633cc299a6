"""Rendering ahead in a helper process (newsletter.digest.prerender): same messages,
each sent once, and the worker carries on alone when the helper is gone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.digest.deliver import (
    DeliverSummary,
    deliver_due,
    delivery_message,
    load_batch,
)
from newsletter.digest.message import message_bytes
from newsletter.digest.models import Delivery
from newsletter.digest.plan import plan
from newsletter.digest.prerender import Prerenderer
from newsletter.digest.send import MemoryTransport
from newsletter.papers.ingest import ingest_bytes
from newsletter.subscribers.models import Subscriber
from tests import factories
from tests.conftest import SAMPLES

T0 = datetime(2026, 7, 30, 5, 0, tzinfo=UTC)
DUMP_000 = (SAMPLES / "000_9c40651dd6d15728.txt").read_bytes()
PROFILES = ["diffusion", "equivari*, symmetr*", '"point cloud"', "language model", "video"]
SEND_AT = T0 + timedelta(hours=3)
N = 13  # with batches of 5: two full batches and a short one


def _settings(tmp_path: Path, engine: Engine, **kw: object) -> Settings:
    return Settings(
        var_dir=tmp_path,
        database_url=engine.url.render_as_string(hide_password=False),
        secret_key=factories.SECRET,
        base_url="https://digest.example.org",
        sender="Paper Digest <digest@example.org>",
        render_ahead=True,
    ).replace(**kw)


def _setup(factory: sessionmaker[Session]) -> list[str]:
    addrs = [f"reader{i:02d}@example.org" for i in range(N)]
    with session_scope(factory) as s:
        for i, addr in enumerate(addrs):
            factories.subscriber(s, addr, PROFILES[i % len(PROFILES)], now=T0 - timedelta(days=1))
        ingest_bytes(s, DUMP_000, source="000", now=T0)
        summary = plan(s, now=T0 + timedelta(hours=3), day=date(2026, 7, 30))
    assert summary.planned == N
    return addrs


class _Spy:
    """Counts the messages the helper delivered, keeps the Prerenderer used, and
    records each submitted batch's size in ``events`` (as ``("submit", size)``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ahead = 0
        self.instances: list[Prerenderer] = []
        self.events: list[tuple[str, int]] = []
        take, submit = Prerenderer.take, Prerenderer.submit
        spy = self

        def counting_take(self: Prerenderer, delivery_id: int) -> EmailMessage | None:
            msg = take(self, delivery_id)
            spy.ahead += msg is not None
            return msg

        def keeping_submit(self: Prerenderer, ids: Any) -> None:
            if self not in spy.instances:
                spy.instances.append(self)
            spy.events.append(("submit", len(ids)))
            submit(self, ids)

        monkeypatch.setattr(Prerenderer, "take", counting_take)
        monkeypatch.setattr(Prerenderer, "submit", keeping_submit)


def _inline_bytes(factory: sessionmaker[Session], settings: Settings) -> dict[str, bytes]:
    """Every delivery's message as the worker renders it itself, by recipient."""
    with factory() as s:
        ids = list(s.scalars(select(Delivery.id).order_by(Delivery.id)))
        deliveries, subs, papers = load_batch(s, ids)
        return {
            subs[d.subscriber_id].email: message_bytes(
                delivery_message(settings, d, subs[d.subscriber_id], papers)
            )
            for d in deliveries
        }


def test_helper_renders_the_same_messages_each_sent_once(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addrs = _setup(factory)
    settings = _settings(tmp_path, engine)
    expected = _inline_bytes(factory, settings)
    spy = _Spy(monkeypatch)
    transport = MemoryTransport()
    result = deliver_due(factory, settings, transport, now=lambda: SEND_AT, batch_size=5)
    assert result.sent == N
    # Every batch went to the helper once it started with the first full batch.
    assert spy.ahead == N
    got = {m["To"]: message_bytes(m) for m in transport.sent}
    assert Counter(m["To"] for m in transport.sent) == Counter(addrs)
    assert got == expected  # byte for byte what the worker would have built
    # The helper exited when the run closed its pipe.
    (pre,) = spy.instances
    assert pre._process is None and not pre.started


def test_short_run_does_not_start_the_helper(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(factory)
    spy = _Spy(monkeypatch)
    transport = MemoryTransport()
    result = deliver_due(factory, _settings(tmp_path, engine), transport, now=lambda: SEND_AT)
    assert result.sent == N and spy.ahead == 0 and spy.instances == []


def _deliver_doing(
    factory: sessionmaker[Session],
    engine: Engine,
    tmp_path: Path,
    spy: _Spy,
    *,
    after: int,
    act: Callable[[Any], object],
) -> tuple[DeliverSummary, MemoryTransport]:
    """Deliver everything in batches of 5, calling ``act(helper process)`` once, when
    ``after`` messages have been sent."""
    transport = MemoryTransport()

    def on_sent() -> None:
        if len(transport.sent) == after:
            (pre,) = spy.instances
            act(pre._process)

    result = deliver_due(
        factory,
        _settings(tmp_path, engine),
        transport,
        now=lambda: SEND_AT,
        batch_size=5,
        on_sent=on_sent,
    )
    return result, transport


def test_worker_carries_on_when_the_helper_dies(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addrs = _setup(factory)
    spy = _Spy(monkeypatch)

    def kill(process: Any) -> None:
        process.kill()
        process.wait()

    result, transport = _deliver_doing(factory, engine, tmp_path, spy, after=2, act=kill)
    assert result.sent == N and result.failed == 0
    assert Counter(m["To"] for m in transport.sent) == Counter(addrs)
    # Killed after two sends: at most the messages already in the pipe came ahead.
    assert 2 <= spy.ahead < N


def test_worker_carries_on_when_the_helper_hangs(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from newsletter.digest import prerender

    monkeypatch.setattr(prerender, "RECEIVE_TIMEOUT", 1.0)
    monkeypatch.setattr(prerender, "CLOSE_TIMEOUT", 0.5)
    addrs = _setup(factory)
    spy = _Spy(monkeypatch)
    stopped: list[Any] = []

    def freeze(process: Any) -> None:
        process.send_signal(signal.SIGSTOP)  # alive, but never answers again
        stopped.append(process)

    result, transport = _deliver_doing(factory, engine, tmp_path, spy, after=1, act=freeze)
    assert result.sent == N
    assert Counter(m["To"] for m in transport.sent) == Counter(addrs)
    assert spy.ahead < N
    # Closing the run killed the frozen helper.
    assert stopped and stopped[0].poll() is not None


def test_skips_and_failures_keep_the_helper_in_step(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.digest.send import PermanentSendError

    addrs = _setup(factory)
    with session_scope(factory) as s:
        gone = s.scalars(select(Subscriber).where(Subscriber.email == addrs[1])).one()
        gone.status = "unsubscribed"
    spy = _Spy(monkeypatch)
    # The third message sent is refused for good.
    transport = MemoryTransport([None, None, PermanentSendError(550, "no such user")])
    result = deliver_due(
        factory, _settings(tmp_path, engine), transport, now=lambda: SEND_AT, batch_size=5
    )
    assert (result.sent, result.skipped, result.failed) == (N - 2, 1, 1)
    sent_to = [m["To"] for m in transport.sent]
    assert addrs[1] not in sent_to and len(set(sent_to)) == len(sent_to) == N - 2
    assert spy.ahead == N - 1  # every message but the skipped one came from the helper


def test_stop_mid_batch_releases_the_rest(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(factory)
    transport = MemoryTransport()
    stop = [False]

    def stop_after_three() -> None:
        stop[0] = len(transport.sent) >= 3

    result = deliver_due(
        factory,
        _settings(tmp_path, engine),
        transport,
        now=lambda: SEND_AT,
        batch_size=5,
        on_sent=stop_after_three,
        should_stop=lambda: stop[0],
    )
    assert result.sent == 3
    with factory() as s:
        statuses = Counter(s.scalars(select(Delivery.status)))
    assert statuses == Counter({"sent": 3, "planned": N - 3})
    # The next run finishes the job.
    rest = deliver_due(factory, _settings(tmp_path, engine), transport, now=lambda: SEND_AT)
    assert rest.sent == N - 3 and len({m["To"] for m in transport.sent}) == N


def test_in_memory_database_never_starts_a_helper() -> None:
    pre = Prerenderer(Settings(database_url="sqlite://"))
    pre.submit([1, 2, 3])
    assert not pre.started and pre.take(1) is None
    pre.close()


def test_next_batch_is_claimed_and_handed_over_after_the_first_message(
    factory: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper gets batch k+1 while the worker still sends batch k, so it never
    waits for the worker to claim and read."""
    _setup(factory)
    spy = _Spy(monkeypatch)
    events = spy.events
    transport = MemoryTransport()
    result = deliver_due(
        factory,
        _settings(tmp_path, engine),
        transport,
        now=lambda: SEND_AT,
        batch_size=5,
        on_sent=lambda: events.append(("sent", 1)),
    )
    assert result.sent == N and spy.ahead == N
    sent_before = [
        sum(n for kind, n in events[:i] if kind == "sent")
        for i, (kind, _) in enumerate(events)
        if kind == "submit"
    ]
    assert sent_before == [0, 1, 6]  # batch 1 at once, 2 and 3 after their predecessor's first
    assert [n for kind, n in events if kind == "submit"] == [5, 5, 3]
