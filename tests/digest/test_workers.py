"""Worker processes: killed at random they lose nothing; several share the outbox
(on PostgreSQL and on SQLite) and send each digest exactly once."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import make_engine, make_session_factory, session_scope, utcnow
from newsletter.digest.deliver import deliver_due
from newsletter.digest.models import Delivery
from newsletter.digest.plan import plan
from newsletter.digest.send import transport_from_url
from newsletter.papers.ingest import ingest_bytes
from tests import factories
from tests.conftest import SAMPLES
from tests.smtp_server import smtp_server

FORK = multiprocessing.get_context("fork")
DUMP_000 = (SAMPLES / "000_9c40651dd6d15728.txt").read_bytes()
LEASE_SECONDS = 2.0


def _settings(
    tmp_path: Path,
    db_url: str,
    mail_url: str,
    lease: float = LEASE_SECONDS,
    render_ahead: bool = False,
) -> Settings:
    return Settings(
        var_dir=tmp_path,
        database_url=db_url,
        mail_url=mail_url,
        secret_key=factories.SECRET,
        base_url="https://digest.example.org",
        delivery_lease_seconds=lease,
        render_ahead=render_ahead,
    )


def _children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _worker_main(settings: Settings, batch_size: int) -> None:
    """A worker process: its own engine, one run until nothing is due."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    deliver_due(factory, settings, transport_from_url(settings.mail_url), batch_size=batch_size)
    engine.dispose()
    os._exit(0)


def _subscribers(factory: sessionmaker[Session], n: int, now: datetime) -> list[str]:
    addrs = [f"reader{i:04d}@example.org" for i in range(n)]
    with session_scope(factory) as s:
        for a in addrs:
            factories.subscriber(s, a, "diffusion", now=now - timedelta(days=1))
        ingest_bytes(s, DUMP_000, source="000", now=now - timedelta(hours=1))
    return addrs


@pytest.mark.parametrize("render_ahead", [False, True], ids=["inline", "render-ahead"])
def test_sigkilled_worker_loses_nothing(tmp_path: Path, render_ahead: bool) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = make_engine(db_url)
    from newsletter import schema

    schema.upgrade(engine)
    factory = make_session_factory(engine)
    addrs = _subscribers(factory, 8, utcnow())
    rnd = random.Random(20261122)
    runs, crashes_mid_batch = 50, 0
    with smtp_server() as server:
        settings = _settings(
            tmp_path,
            db_url,
            f"smtp://{server.host}:{server.port}?timeout=5",
            render_ahead=render_ahead,
        )
        helpers: list[int] = []
        for run in range(runs):
            with session_scope(factory) as s:
                # A new period each run; send_empty so every subscriber has a row.
                plan(s, now=utcnow(), day=date(2026, 1, 1) + timedelta(days=run), send_empty=True)
            before = len(server.handler.accepted)
            child = FORK.Process(target=_worker_main, args=(settings, 3))
            child.start()
            # Kill at a random point: after a random number of accepted messages
            # (0 .. all) plus a random sliver of time, so kills land before, between
            # and during sends however fast or loaded the machine is.
            target = before + rnd.randrange(len(addrs) + 1)
            deadline = time.monotonic() + 10
            while len(server.handler.accepted) < target and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(rnd.uniform(0.0, 0.004))
            orphans = _children_of(child.pid or 0)  # its render helper, if it started
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join()
            helpers += orphans
            sent_by_victim = len(server.handler.accepted) - before
            crashes_mid_batch += 0 < sent_by_victim < len(addrs)
            # Recovery: once the victim's lease has expired, a new worker finishes.
            later = utcnow() + timedelta(seconds=LEASE_SECONDS + 1)
            deliver_due(
                factory, settings, transport_from_url(settings.mail_url), now=lambda t=later: t
            )  # type: ignore[misc]
            with factory() as s:
                statuses = Counter(
                    s.scalars(
                        select(Delivery.status).where(
                            Delivery.period == f"D{date(2026, 1, 1) + timedelta(days=run)}"
                        )
                    )
                )
            assert statuses == Counter({"sent": len(addrs)}), (run, statuses)
            this_run = server.handler.accepted[before:]
            per_recipient = Counter(r.rcpt_tos[0] for r in this_run)
            assert set(per_recipient) == set(addrs)
            # At most the one message in flight at the kill is sent twice.
            assert sum(per_recipient.values()) - len(addrs) <= 1, (run, per_recipient)
    engine.dispose()
    # The random kills did land in the middle of batches, not only before or after.
    assert crashes_mid_batch >= 10, crashes_mid_batch
    if render_ahead:
        # Helpers did run, and each exited once its worker was killed.
        assert len(helpers) >= 10, helpers
        deadline = time.monotonic() + 10
        while not all(map(_gone, helpers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(map(_gone, helpers)), [h for h in helpers if not _gone(h)]


def test_four_workers_on_postgresql_send_each_exactly_once(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    try:
        _workers_send_each_exactly_once(engine, pg_url, tmp_path, workers=4, n=2000)
    finally:
        from tests.conftest import _truncate_all

        _truncate_all(engine)
        engine.dispose()


def test_two_workers_on_sqlite_send_each_exactly_once(tmp_path: Path) -> None:
    # SQLite has no SKIP LOCKED, but a claim is one UPDATE … RETURNING and SQLite runs
    # one writer at a time, so two workers can never claim the same row.
    from newsletter import schema

    db_url = f"sqlite:///{tmp_path / 'two.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    _workers_send_each_exactly_once(engine, db_url, tmp_path, workers=2, n=1000)
    engine.dispose()


def _workers_send_each_exactly_once(
    engine: Engine, db_url: str, tmp_path: Path, *, workers: int, n: int
) -> None:
    factory = make_session_factory(engine)
    addrs = _subscribers(factory, n, utcnow())
    with session_scope(factory) as s:
        assert plan(s, now=utcnow(), day=date(2026, 7, 30)).planned == n
    with smtp_server() as server:
        # A lease shorter than a busy machine may take for a batch of 25, so renewals
        # are exercised; a single message never takes half of it, so nobody is mailed
        # twice.
        settings = _settings(
            tmp_path, db_url, f"smtp://{server.host}:{server.port}?timeout=10", lease=3.0
        )
        procs = [FORK.Process(target=_worker_main, args=(settings, 25)) for _ in range(workers)]
        for w in procs:
            w.start()
        for w in procs:
            w.join(timeout=300)
            assert w.exitcode == 0
        got = Counter(r.rcpt_tos[0] for r in server.handler.accepted)
        peers = {r.peer for r in server.handler.accepted}
    assert got == Counter(addrs)
    assert len(peers) >= workers  # the work really was shared between the workers
    with factory() as s:
        assert s.scalar(select(func.count()).where(Delivery.status == "sent")) == n


pytestmark = pytest.mark.slow
