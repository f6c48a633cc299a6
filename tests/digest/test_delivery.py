"""Planning and delivery end to end against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import functools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.digest.deliver import backoff, deliver_due
from newsletter.digest.models import Delivery
from newsletter.digest.plan import due_period, period_of, plan
from newsletter.digest.send import MemoryTransport, SMTPTransport
from newsletter.digest.service import run_digest
from newsletter.matching.service import match_papers
from newsletter.papers.ingest import ingest_bytes
from newsletter.papers.models import Paper
from newsletter.subscribers.models import Subscriber
from tests import factories
from tests.conftest import SAMPLES
from tests.smtp_server import SMTPServer, smtp_server

T0 = datetime(2026, 7, 30, 5, 0, tzinfo=UTC)
DUMP_000 = (SAMPLES / "000_9c40651dd6d15728.txt").read_bytes()
DUMP_001 = (SAMPLES / "001_b52638599966a208.txt").read_bytes()
PROFILES = {
    "ada@example.org": "diffusion",
    "bob@example.org": '"point cloud", ti:3D -survey',
    "cy@example.org": "equivari*, symmetr*",
}


def settings_for(tmp_path: Path, **kw: object) -> Settings:
    return Settings(
        var_dir=tmp_path,
        secret_key=factories.SECRET,
        base_url="https://digest.example.org",
        sender="Paper Digest <digest@example.org>",
    ).replace(**kw)


def received(server: SMTPServer) -> list[EmailMessage]:
    return [
        email.message_from_bytes(r.content, policy=email.policy.default)  # type: ignore[misc]
        for r in server.handler.accepted
    ]


def titles_in(msg: EmailMessage, all_titles: list[str]) -> set[str]:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = " ".join(body.get_content().split())
    return {t for t in all_titles if " ".join(t.split()) in text}


def expected_titles(session: Session, profile: str, since: datetime) -> set[str]:
    papers = session.scalars(select(Paper).where(Paper.first_seen_at >= since)).all()
    return {m.paper.title for m in match_papers(profile, papers)}


def test_each_subscriber_gets_their_papers_once(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    with session_scope(factory) as s:
        for addr, profile in PROFILES.items():
            factories.subscriber(s, addr, profile, now=T0 - timedelta(days=1))
        ingest_bytes(s, DUMP_000, source="000", now=T0)
    with factory() as s:
        all_titles = list(s.scalars(select(Paper.title)))
        want_day1 = {a: expected_titles(s, p, T0) for a, p in PROFILES.items()}
    assert all(0 < len(v) <= 20 for v in want_day1.values()), want_day1

    with smtp_server() as server:
        transport = SMTPTransport(server.host, server.port, timeout=5)
        day1 = run_digest(
            factory,
            settings,
            now=T0 + timedelta(hours=3),
            day=date(2026, 7, 30),
            transport=transport,
        )
        assert day1.as_dict() == {"planned": 3, "sent": 3, "skipped": 0, "failed": 0}
        msgs = received(server)
        assert sorted(m["To"] for m in msgs) == sorted(PROFILES)
        for m in msgs:
            assert titles_in(m, all_titles) == want_day1[m["To"]]
            assert m["List-Unsubscribe"].startswith("<https://digest.example.org/u/")
            assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # Next day: 001 brings 55 new papers and 4 repeats of day-one papers.
        t1 = T0 + timedelta(days=1)
        with session_scope(factory) as s:
            assert ingest_bytes(s, DUMP_001, source="001", now=t1).duplicate == 4
        with factory() as s:
            all_titles = list(s.scalars(select(Paper.title)))
            want_day2 = {a: expected_titles(s, p, t1) for a, p in PROFILES.items()}
            repeats = set(all_titles) & {
                t for t in all_titles if " ".join(t.split()) in DUMP_001.decode()
            } - {p.title for p in s.scalars(select(Paper).where(Paper.first_seen_at >= t1))}
        assert len(repeats) == 4
        server.handler.accepted.clear()
        day2 = run_digest(
            factory,
            settings,
            now=t1 + timedelta(hours=3),
            day=date(2026, 7, 31),
            transport=transport,
        )
        msgs = received(server)
        assert day2.sent == len(msgs) == sum(1 for v in want_day2.values() if v)
        for m in msgs:
            got = titles_in(m, all_titles)
            assert got == want_day2[m["To"]]
            assert not got & repeats  # a paper seen on day one is never mailed again
            assert not got & want_day1[m["To"]]

        # Same date again: nothing planned, nothing sent.
        server.handler.accepted.clear()
        again = run_digest(
            factory,
            settings,
            now=t1 + timedelta(hours=5),
            day=date(2026, 7, 31),
            transport=transport,
        )
        assert again.as_dict() == {"planned": 0, "sent": 0, "skipped": 0, "failed": 0}
        assert server.handler.accepted == []


def test_no_match_sends_nothing_and_records_why(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_scope(factory) as s:
        factories.subscriber(s, "zed@example.org", "ti:zymurgy", now=T0 - timedelta(days=1))
        ingest_bytes(s, DUMP_000, source="000", now=T0)
    with smtp_server() as server:
        summary = run_digest(
            factory,
            settings_for(tmp_path),
            now=T0 + timedelta(hours=3),
            day=date(2026, 7, 30),
            transport=SMTPTransport(server.host, server.port),
        )
        assert summary.as_dict() == {"planned": 0, "sent": 0, "skipped": 1, "failed": 0}
        assert server.handler.accepted == []
    with factory() as s:
        row = s.scalars(select(Delivery)).one()
        assert (row.status, row.skip_reason) == ("skipped", "no new paper matched the profile")


def test_newcomer_gets_the_last_ingest_day(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        ingest_bytes(s, DUMP_000, source="000", now=T0)
        factories.subscriber(s, "new@example.org", "diffusion", now=T0 + timedelta(hours=10))
        summary = plan(s, now=T0 + timedelta(days=1, hours=8))
    assert summary.planned == 1


def _setup_one(factory: sessionmaker[Session], n: int = 1) -> list[str]:
    addrs = [f"user{i}@example.org" for i in range(n)]
    with session_scope(factory) as s:
        for a in addrs:
            factories.subscriber(s, a, "diffusion", now=T0 - timedelta(days=1))
        ingest_bytes(s, DUMP_000, source="000", now=T0)
        plan(s, now=T0 + timedelta(hours=3), day=date(2026, 7, 30))
    return addrs


@pytest.mark.parametrize("reply", ["421 4.3.2 shutting down", "451 4.3.0 try again later"])
def test_transient_reply_is_retried_then_sent(
    factory: sessionmaker[Session], tmp_path: Path, reply: str
) -> None:
    _setup_one(factory)
    t = T0 + timedelta(hours=3)
    with smtp_server() as server:
        server.handler.faults.script("MAIL", reply)
        transport = SMTPTransport(server.host, server.port, timeout=5)
        first = deliver_due(factory, settings_for(tmp_path), transport, now=lambda: t)
        assert (first.sent, first.retried) == (0, 1)
        with factory() as s:
            row = s.scalars(select(Delivery)).one()
            assert (
                row.status == "planned"
                and row.attempts == 1
                and reply[:3] in (row.last_error or "")
            )
            assert row.next_attempt_at == t + backoff(1)
        # Not yet due: nothing happens.
        early = deliver_due(factory, settings_for(tmp_path), transport, now=lambda: t)
        assert early.sent == 0 and server.handler.accepted == []
        later = deliver_due(
            factory, settings_for(tmp_path), transport, now=lambda: t + timedelta(minutes=2)
        )
        assert later.sent == 1 and len(server.handler.accepted) == 1
    with factory() as s:
        assert s.scalars(select(Delivery.status)).one() == "sent"


def test_permanent_reply_fails_and_suppresses(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    _setup_one(factory)
    t = T0 + timedelta(hours=3)
    with smtp_server() as server:
        server.handler.faults.by_recipient["user0@example.org"] = "550 5.1.1 no such user"
        transport = SMTPTransport(server.host, server.port, timeout=5)
        result = deliver_due(factory, settings_for(tmp_path), transport, now=lambda: t)
        assert (result.sent, result.failed) == (0, 1)
        # Never retried, however late.
        again = deliver_due(
            factory, settings_for(tmp_path), transport, now=lambda: t + timedelta(days=1)
        )
        assert (again.sent, again.failed, again.retried) == (0, 0, 0)
    with session_scope(factory) as s:
        row = s.scalars(select(Delivery)).one()
        assert row.status == "failed" and "550" in (row.last_error or "")
        sub = s.scalars(select(Subscriber)).one()
        assert sub.status == "suppressed"
        # A suppressed address gets no further digests.
        assert plan(s, now=t + timedelta(days=1), day=date(2026, 7, 31)).planned == 0


def test_dropped_connection_delivers_the_rest_on_retry_none_twice(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    addrs = _setup_one(factory, n=7)
    clock = [T0 + timedelta(hours=3)]
    with smtp_server() as server:
        # Hang up after every 2nd message of a connection, and refuse one reconnect.
        server.handler.faults.drop_after = 2
        transport = SMTPTransport(server.host, server.port, timeout=5)
        for _ in range(10):
            deliver_due(factory, settings_for(tmp_path), transport, now=lambda: clock[0])
            clock[0] += timedelta(hours=1)
        got = Counter(r.rcpt_tos[0] for r in server.handler.accepted)
    assert got == Counter(addrs)  # everyone exactly once
    with factory() as s:
        assert set(s.scalars(select(Delivery.status))) == {"sent"}


def test_unsubscribed_after_planning_gets_nothing(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    _setup_one(factory)
    with session_scope(factory) as s:
        sub = s.scalars(select(Subscriber)).one()
        sub.status = "unsubscribed"
    with smtp_server() as server:
        result = deliver_due(
            factory,
            settings_for(tmp_path),
            SMTPTransport(server.host, server.port),
            now=lambda: T0 + timedelta(hours=3),
        )
        assert (result.sent, result.skipped) == (0, 1)
        assert server.handler.accepted == []


def test_retry_sends_the_same_email(factory: sessionmaker[Session], tmp_path: Path) -> None:
    _setup_one(factory)
    t = T0 + timedelta(hours=3)
    with factory() as s:
        planned_items = s.scalars(select(Delivery.items)).one()
        day1_titles = list(s.scalars(select(Paper.title)))
    with smtp_server() as server:
        server.handler.faults.script("DATA", "451 4.3.0 later")
        transport = SMTPTransport(server.host, server.port, timeout=5)
        assert deliver_due(factory, settings_for(tmp_path), transport, now=lambda: t).retried == 1
        # Meanwhile new papers arrive that match the profile: the planned email must
        # not change (they belong to the next digest).
        with session_scope(factory) as s:
            ingest_bytes(s, DUMP_001, source="001", now=t)
        with factory() as s:
            new_titles = [p.title for p in s.scalars(select(Paper).where(Paper.first_seen_at == t))]
            assert match_papers(
                "diffusion", s.scalars(select(Paper).where(Paper.first_seen_at == t)).all()
            )
        deliver_due(factory, settings_for(tmp_path), transport, now=lambda: t + timedelta(hours=1))
        msgs = received(server)
    assert len(msgs) == 1
    assert titles_in(msgs[0], new_titles) == set()
    assert len(titles_in(msgs[0], day1_titles)) == len(planned_items)
    with factory() as s:
        row = s.scalars(select(Delivery)).one()
        assert row.items == planned_items and row.attempts == 2
        assert msgs[0]["Message-ID"] == row.message_id


def test_due_period_local_hour_and_dst() -> None:
    sub = Subscriber(frequency="daily", hour=7, timezone="Europe/Berlin", weekday=0)
    # 2026-03-29: Berlin springs forward at 02:00 → 03:00 (UTC+2 from then).
    assert due_period(sub, datetime(2026, 3, 29, 4, 59, tzinfo=UTC)) is None
    assert due_period(sub, datetime(2026, 3, 29, 5, 0, tzinfo=UTC)) == "D2026-03-29"
    weekly = Subscriber(frequency="weekly", hour=9, timezone="America/New_York", weekday=2)
    assert due_period(weekly, datetime(2026, 7, 28, 23, 0, tzinfo=UTC)) is None  # Tue
    assert due_period(weekly, datetime(2026, 7, 29, 13, 0, tzinfo=UTC)) == "W2026-W31"
    assert period_of("weekly", date(2026, 1, 1)) == "W2026-W01"


def test_newcomer_first_period_is_replanned_when_papers_arrive(
    factory: sessionmaker[Session],
) -> None:
    with session_scope(factory) as s:
        factories.subscriber(s, "early@example.org", "diffusion", now=T0 - timedelta(days=1))
        first = plan(s, now=T0 - timedelta(hours=1), day=date(2026, 7, 30))
    assert (first.planned, first.skipped) == (0, 1)
    with session_scope(factory) as s:
        ingest_bytes(s, DUMP_000, source="000", now=T0)
        second = plan(s, now=T0 + timedelta(hours=1), day=date(2026, 7, 30))
    assert (second.planned, second.skipped) == (1, 0)
    with session_scope(factory) as s:
        row = s.scalars(select(Delivery)).one()
        assert row.status == "planned" and row.items and row.window_start <= T0
        row.status = "sent"
        third = plan(s, now=T0 + timedelta(hours=2), day=date(2026, 7, 30))
    assert (third.planned, third.already) == (0, 1)


def test_later_skipped_periods_stay_skipped(factory: sessionmaker[Session]) -> None:
    """Once a subscriber has had a digest, a period that found nothing at their hour is
    not re-planned when papers arrive later: they go into the next digest, on time."""
    with session_scope(factory) as s:
        factories.subscriber(s, "old@example.org", "diffusion", now=T0 - timedelta(days=2))
        ingest_bytes(s, DUMP_000, source="000", now=T0 - timedelta(days=1, hours=2))
        assert plan(s, now=T0 - timedelta(days=1), day=date(2026, 7, 29)).planned == 1
        assert plan(s, now=T0 - timedelta(hours=1), day=date(2026, 7, 30)).skipped == 1
        ingest_bytes(s, DUMP_001, source="001", now=T0)
        again = plan(s, now=T0 + timedelta(hours=1), day=date(2026, 7, 30))
        assert (again.planned, again.already) == (0, 1)
        nxt = plan(s, now=T0 + timedelta(days=1), day=date(2026, 7, 31))
        assert nxt.planned == 1


def test_digest_run_reports_progress_per_message(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    _setup_one_unplanned = [f"p{i}@example.org" for i in range(3)]
    with session_scope(factory) as s:
        for a in _setup_one_unplanned:
            factories.subscriber(s, a, "diffusion", now=T0 - timedelta(days=1))
        ingest_bytes(s, DUMP_000, source="000", now=T0)
    calls: list[int] = []
    from newsletter.digest.send import MemoryTransport

    summary = run_digest(
        factory,
        settings_for(tmp_path),
        now=T0 + timedelta(hours=3),
        day=date(2026, 7, 30),
        transport=MemoryTransport(),
        progress=calls.append,
    )
    assert summary.sent == 3
    assert calls == [-3, 1, 1, 1]  # the total first, then one tick per message sent


def test_claim_takes_expired_leases_first_then_the_oldest_due(
    factory: sessionmaker[Session],
) -> None:
    from newsletter.digest.deliver import claim

    _setup_one(factory, n=4)
    t = T0 + timedelta(hours=3)
    with session_scope(factory) as s:
        rows = s.scalars(select(Delivery).order_by(Delivery.id)).all()
        a, b, c, d = rows
        a.next_attempt_at = t - timedelta(minutes=1)  # due, but retried most recently
        b.next_attempt_at = t - timedelta(hours=2)  # due longest
        c.status, c.lease_until = "sending", t - timedelta(seconds=1)  # its worker died
        d.next_attempt_at = t + timedelta(hours=1)  # not due yet
        ids = [r.id for r in rows]
    with session_scope(factory) as s:
        assert claim(s, now=t, limit=2) == sorted([ids[2], ids[1]])
    with session_scope(factory) as s:
        assert claim(s, now=t, limit=5) == [ids[0]]
        assert claim(s, now=t, limit=5) == []


def _count_statements(engine: Engine, run: Callable[[], object]) -> tuple[int, int]:
    """(statements, commits) the engine's connections ran during ``run()``; SET and
    RESET of the batch's connection settings not counted."""
    counts = [0, 0]

    def on_execute(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not statement.startswith(("SET ", "RESET ")):
            counts[0] += 1

    def on_commit(conn: object) -> None:
        counts[1] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
    return counts[0], counts[1]


def test_a_send_costs_one_statement(
    engine: Engine, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Delivery reads a batch in a fixed number of queries; each message sent adds one
    UPDATE and, on SQLite, its commit (on PostgreSQL the UPDATE commits by itself)."""
    _setup_one(factory, n=12)
    settings = settings_for(tmp_path, render_ahead=False)
    t = T0 + timedelta(hours=3)
    with factory() as s:
        ids = list(s.scalars(select(Delivery.id).order_by(Delivery.id)))
    runs = []
    # First 4 of the rows are due, then the other 8: the same runs, twice the sends.
    for due, later in ((ids[:4], ids[4:]), (ids[4:], [])):
        with session_scope(factory) as s:
            for rows, when in ((due, t - timedelta(minutes=1)), (later, t + timedelta(days=1))):
                s.execute(
                    update(Delivery).where(Delivery.id.in_(rows)).values(next_attempt_at=when)
                )
        transport = MemoryTransport()
        run = functools.partial(deliver_due, factory, settings, transport, now=lambda: t)
        runs.append(_count_statements(engine, run))
        assert len(transport.sent) == len(due)
    (statements_4, commits_4), (statements_8, commits_8) = runs
    assert statements_8 - statements_4 == 4  # one UPDATE per message
    per_message_commits = 0 if engine.dialect.name == "postgresql" else 1
    assert commits_8 - commits_4 == 4 * per_message_commits
    with factory() as s:
        assert Counter(s.scalars(select(Delivery.status))) == Counter({"sent": 12})


def test_digests_are_dkim_signed_when_configured(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """NEWSLETTER_DKIM_* turn signing on for every message the service sends; the
    signature verifies as received and covers both List-Unsubscribe headers."""
    import base64

    import dkim

    from tests.smtp_server import rsa_key_pair

    private, public = rsa_key_pair()
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(private)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.digest.example.org."
        return record

    addrs = _setup_one(factory, n=3)
    with smtp_server() as server:
        settings = settings_for(
            tmp_path,
            mail_url=f"smtp://{server.host}:{server.port}",
            dkim_selector="news",
            dkim_domain="digest.example.org",
            dkim_key_file=key_file,
        )
        summary = run_digest(factory, settings, now=T0 + timedelta(hours=3))
        assert summary.sent == 3
        got = server.handler.accepted
    assert sorted(r.rcpt_tos[0] for r in got) == sorted(addrs)
    for r in got:
        assert dkim.verify(r.content, dnsfunc=dns)
        signature = email.message_from_bytes(r.content)["DKIM-Signature"]
        covered = dkim.util.parse_tag_value(" ".join(signature.split()).encode())[b"h"]
        names = {n.strip().lower() for n in covered.split(b":")}
        assert {b"list-unsubscribe", b"list-unsubscribe-post"} <= names


def test_dkim_settings_are_checked_before_sending(tmp_path: Path) -> None:
    from newsletter.digest.send import DkimTransport, transport_for
    from newsletter.errors import ConfigError
    from tests.smtp_server import rsa_key_pair

    env = {"NEWSLETTER_VAR_DIR": str(tmp_path), "NEWSLETTER_DKIM_SELECTOR": "news"}
    with pytest.raises(ConfigError, match="NEWSLETTER_DKIM_DOMAIN"):
        Settings.from_env(env)
    key_file = tmp_path / "dkim.pem"
    env |= {"NEWSLETTER_DKIM_DOMAIN": "example.org", "NEWSLETTER_DKIM_KEY_FILE": str(key_file)}
    with pytest.raises(ConfigError, match="cannot read the DKIM key file"):
        transport_for(Settings.from_env(env))
    key_file.write_text("not a key")
    with pytest.raises(ConfigError, match="not an RSA key"):
        transport_for(Settings.from_env(env))
    key_file.write_bytes(rsa_key_pair()[0])
    assert isinstance(transport_for(Settings.from_env(env)), DkimTransport)
    unsigned = {k: v for k, v in env.items() if "DKIM" not in k}
    assert not isinstance(transport_for(Settings.from_env(unsigned)), DkimTransport)


def test_release_hands_back_only_rows_still_under_our_lease(
    factory: sessionmaker[Session],
) -> None:
    """A worker whose lease ran out must not hand back rows another worker has
    claimed since: a third worker would then send them while the second still does."""
    from newsletter.digest.deliver import LEASE, claim, release

    _setup_one(factory, n=2)
    t = T0 + timedelta(hours=3)
    with session_scope(factory) as s:
        ours = claim(s, now=t, limit=2)
    later = t + LEASE + timedelta(seconds=1)
    with session_scope(factory) as s:
        assert claim(s, now=later, limit=1) == ours[:1]  # expired: another worker's now
    with session_scope(factory) as s:
        release(s, ours, lease_until=t + LEASE)
    with factory() as s:
        rows = {d.id: d for d in s.scalars(select(Delivery))}
    taken, still_ours = rows[ours[0]], rows[ours[1]]
    assert (taken.status, taken.lease_until) == ("sending", later + LEASE)
    assert (still_ours.status, still_ours.lease_until, still_ours.attempts) == ("planned", None, 0)
