"""The service runs itself: local hours across time zones and DST, exactly once under
re-runs, restarts and two planners, catch-up after downtime, clean stops."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.digest.deliver import deliver_due
from newsletter.digest.models import Delivery
from newsletter.digest.plan import plan
from newsletter.digest.send import MemoryTransport
from newsletter.papers.ingest import store_records
from newsletter.papers.records import PaperRecord
from newsletter.scheduler import MISFIRE_GRACE, build_scheduler
from newsletter.subscribers.models import Subscriber
from tests import factories

START = datetime(2026, 10, 20, 0, 0, tzinfo=UTC)  # spans EU (Oct 25) and US (Nov 1) DST ends
STEP = timedelta(minutes=20)
ZONES = {
    "berlin@example.org": ("Europe/Berlin", 7),
    "newyork@example.org": ("America/New_York", 8),
    "tokyo@example.org": ("Asia/Tokyo", 6),
}


def _settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path, secret_key=factories.SECRET, send_empty=False)


def _papers_for(day: int) -> list[PaperRecord]:
    return [
        PaperRecord(title=f"Diffusion models for problem {day}-{i}", abstract="We study diffusion.")
        for i in range(3)
    ]


def _simulate(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: MemoryTransport,
    start: datetime,
    end: datetime,
    *,
    plan_twice: bool = False,
) -> None:
    """Walk the clock from ``start`` to ``end``: new papers every day at 00:00 UTC,
    the planner and a worker at every step."""
    t = start
    while t < end:
        if t.hour == 0 and t.minute == 0:
            with session_scope(factory) as s:
                store_records(s, _papers_for((t - START).days), now=t)
        for _ in range(2 if plan_twice else 1):
            with session_scope(factory) as s:
                plan(s, now=t)
        deliver_due(factory, settings, transport, now=lambda t=t: t)  # type: ignore[misc]
        t += STEP


def _sent_by_recipient(factory: sessionmaker[Session]) -> dict[str, list[Delivery]]:
    with factory() as s:
        rows = s.execute(
            select(Subscriber.email, Delivery)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.status == "sent")
            .order_by(Delivery.id)
        ).all()
    out: dict[str, list[Delivery]] = defaultdict(list)
    for addr, d in rows:
        out[addr].append(d)
    return out


def test_a_fortnight_in_three_time_zones(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with session_scope(factory) as s:
        for addr, (tz, hour) in ZONES.items():
            factories.subscriber(s, addr, "diffusion", now=START, hour=hour, timezone=tz)
        factories.subscriber(
            s,
            "weekly@example.org",
            "diffusion",
            now=START,
            frequency="weekly",
            hour=9,
            timezone="Europe/Berlin",
            weekday=2,
        )
    transport = MemoryTransport()
    end = START + timedelta(days=14)
    _simulate(factory, _settings(tmp_path), transport, START, end, plan_twice=True)
    sent = _sent_by_recipient(factory)
    for addr, (tz, hour) in ZONES.items():
        zone = ZoneInfo(tz)
        local_days = [d.sent_at.astimezone(zone) for d in sent[addr]]  # type: ignore[union-attr]
        # One digest per local day, at the subscriber's hour (within one clock step) —
        # except a newcomer's first, which comes as soon as there are papers when they
        # subscribed after their hour (New York: 20:00 local at START).
        assert Counter(t.date() for t in local_days).most_common(1)[0][1] == 1, addr
        assert all(t.hour == hour and t.minute < 20 for t in local_days[1:]), (addr, local_days)
        first, last = START.astimezone(zone).date(), end.astimezone(zone).date()
        at_hour = []
        for i in range((last - first).days + 1):
            day = first + timedelta(days=i)
            if START <= datetime.combine(day, datetime.min.time(), zone).replace(hour=hour) < end:
                at_hour.append(day)
        # A late newcomer's first digest took the papers the next morning would have
        # had (they arrive at 20:00 New York time), so that morning has nothing new.
        late_start = START.astimezone(zone).hour >= hour
        expected = [first, *at_hour[1:]] if late_start else at_hour
        assert [t.date() for t in local_days] == expected, addr
    weekly = [d.period for d in sent["weekly@example.org"]]
    assert weekly == ["W2026-W43", "W2026-W44"]
    # Every digest went to its own subscriber, and no paper reached anybody twice.
    for addr, deliveries in sent.items():
        ids = [item["paper_id"] for d in deliveries for item in d.items]
        assert len(ids) == len(set(ids)), addr
    assert len(transport.sent) == sum(len(v) for v in sent.values())


def test_downtime_of_two_days_is_caught_up_once(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Documented rule: missed periods are not replayed; the next digest carries every
    paper that arrived meanwhile (its window starts where the last one ended)."""
    with session_scope(factory) as s:
        factories.subscriber(s, "ada@example.org", "diffusion", now=START, hour=7)
    transport = MemoryTransport()
    settings = _settings(tmp_path)
    _simulate(factory, settings, transport, START, START + timedelta(days=1))
    # Down for two days: papers keep arriving (another process ingests), nothing plans.
    for day in (1, 2):
        with session_scope(factory) as s:
            store_records(s, _papers_for(day), now=START + timedelta(days=day))
    restart = START + timedelta(days=3, hours=10)
    with session_scope(factory) as s:
        store_records(s, _papers_for(3), now=START + timedelta(days=3))
        assert plan(s, now=restart).planned == 1
        assert plan(s, now=restart + timedelta(minutes=5)).planned == 0  # once
    deliver_due(factory, settings, transport, now=lambda: restart)
    sent = _sent_by_recipient(factory)["ada@example.org"]
    assert [d.period for d in sent] == ["D2026-10-20", "D2026-10-23"]
    assert len(sent[-1].items) == 9  # days 1, 2 and 3: three papers each


def test_two_planners_at_once_plan_once(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        for i in range(30):
            factories.subscriber(s, f"r{i}@example.org", "diffusion", now=START)
        store_records(s, _papers_for(0), now=START)
    now = START + timedelta(hours=8)
    errors: list[BaseException] = []

    def planner() -> None:
        try:
            with session_scope(factory) as s:
                plan(s, now=now)
        except Exception as exc:  # SQLite may refuse the second writer; that is fine
            errors.append(exc)

    threads = [threading.Thread(target=planner) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with session_scope(factory) as s:
        plan(s, now=now)  # and a third run after a "restart"
        periods = Counter(s.scalars(select(Delivery.subscriber_id)))
    assert len(periods) == 30 and set(periods.values()) == {1}
    assert all("locked" in str(e) or "serializ" in str(e).lower() for e in errors), errors


def test_scheduler_wiring(factory: sessionmaker[Session], tmp_path: Path) -> None:
    settings = _settings(tmp_path).replace(feeds=("https://example.org/feed",))
    sched = build_scheduler(settings, factory, worker=True)
    sched.start(paused=True)  # job defaults are applied when jobs are really added
    try:
        jobs = {j.id: j for j in sched.get_jobs()}
        assert set(jobs) == {"inbox", "feeds", "plan", "prune", "deliver"}
        for job in jobs.values():
            assert job.misfire_grace_time == MISFIRE_GRACE >= 3600
            assert job.coalesce is True and job.max_instances == 1
        assert jobs["inbox"].next_run_time < jobs["plan"].next_run_time
    finally:
        sched.shutdown(wait=False)
    only_scheduler = build_scheduler(settings, factory, worker=False)
    assert "deliver" not in {j.id for j in only_scheduler.get_jobs()}


def test_stop_mid_batch_releases_the_rest(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with session_scope(factory) as s:
        for i in range(10):
            factories.subscriber(s, f"r{i}@example.org", "diffusion", now=START)
        store_records(s, _papers_for(0), now=START)
        plan(s, now=START + timedelta(hours=8), day=date(2026, 10, 20))
    transport = MemoryTransport()
    stop_after = 4
    summary = deliver_due(
        factory,
        _settings(tmp_path),
        transport,
        now=lambda: START + timedelta(hours=8),
        should_stop=lambda: len(transport.sent) >= stop_after,
    )
    assert summary.sent == stop_after
    with factory() as s:
        statuses = Counter(s.scalars(select(Delivery.status)))
    assert statuses == Counter({"sent": 4, "planned": 6})  # nothing left leased, nothing lost
    rest = deliver_due(
        factory, _settings(tmp_path), transport, now=lambda: START + timedelta(hours=8)
    )
    assert rest.sent == 6
    assert Counter(m["To"] for m in transport.sent) == Counter(
        f"r{i}@example.org" for i in range(10)
    )
