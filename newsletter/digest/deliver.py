"""Deliver planned digests: claim → render → send → record.

Every send is recorded in its own commit right after the server accepted it, so a
crash loses nothing and re-sends at most the one message in flight (its lease
expires and another worker claims it). Claiming is one UPDATE … RETURNING: atomic
on SQLite, and on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` any number of workers
share the outbox without waiting on each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, and_, bindparam, select, update
from sqlalchemy.orm import Session, defer, sessionmaker

from newsletter.config import Settings
from newsletter.db import session_scope, table_of, utcnow
from newsletter.digest.message import build_message
from newsletter.digest.models import Delivery
from newsletter.digest.plan import period_label
from newsletter.digest.prerender import Prerenderer
from newsletter.digest.render import (
    DigestPaper,
    Recipient,
    Rendered,
    build_digest_context,
    render_email,
)
from newsletter.digest.send import (
    PermanentSendError,
    RateLimiter,
    SessionRefusedError,
    TransientSendError,
    Transport,
)
from newsletter.gc_tuning import relaxed_gc
from newsletter.papers.models import Paper
from newsletter.subscribers import service as subscribers
from newsletter.subscribers.models import Subscriber
from newsletter.subscribers.tokens import manage_token

log = logging.getLogger(__name__)

# A worker holds claimed rows this long; a row still `sending` after that belonged to
# a worker that died and is claimed again. Far longer than one batch takes to send.
LEASE = timedelta(minutes=10)
# Retry transient failures with capped exponential backoff: 1, 2, 4 … 60 minutes,
# until the digest is this old; a digest days late is worse than none.
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
RETRY_DEADLINE = timedelta(days=2)
# Rows claimed per transaction: one SMTP connection serves the batch.
BATCH_SIZE = 100


@dataclass
class DeliverSummary:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "skipped": self.skipped,
        }

    def add(self, other: DeliverSummary) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.retried += other.retried
        self.skipped += other.skipped
        self.errors += other.errors


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts`` (1-based): 1, 2, 4 … minutes, capped."""
    exponent = min(max(0, attempts - 1), 30)  # 2**30 minutes is far past the cap already
    delay: timedelta = BACKOFF_BASE * (2**exponent)
    return min(BACKOFF_CAP, delay)


def claim(
    session: Session, *, now: datetime, limit: int = BATCH_SIZE, lease: timedelta = LEASE
) -> list[int]:
    """Lease up to ``limit`` due deliveries to this worker; returns their ids.

    First rows whose lease expired (their worker died), then planned rows whose time
    has come, oldest first (``next_attempt_at``, then ``id``: the claim index's order,
    so each pick is one ordered index scan that stops after ``limit`` rows)."""
    expired = and_(Delivery.status == "sending", Delivery.lease_until < now)
    due = and_(Delivery.status == "planned", Delivery.next_attempt_at <= now)
    ids = _claim(session, expired, (Delivery.id,), now, limit, lease)
    if len(ids) < limit:
        order = (Delivery.next_attempt_at, Delivery.id)
        ids += _claim(session, due, order, now, limit - len(ids), lease)
    return sorted(ids)


def _claim(
    session: Session,
    where: Any,
    order: tuple[Any, ...],
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[int]:
    pick = select(Delivery.id).where(where).order_by(*order).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(pick.scalar_subquery()))
        .values(status="sending", lease_until=now + lease, attempts=Delivery.attempts + 1)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(stmt).all())


def renew(session: Session, ids: Sequence[int], *, old: datetime, new: datetime) -> set[int]:
    """Extend this worker's lease (``old``) on ``ids`` to ``new``; returns the ids that
    are still this worker's."""
    rows = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == "sending", Delivery.lease_until == old)
        .values(lease_until=new)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return set(rows.scalars())


def release(session: Session, ids: Sequence[int], *, lease_until: datetime) -> None:
    """Hand claimed, unsent rows back (a clean shutdown); the claim's attempt is undone.

    Only rows still under this worker's lease (``lease_until``) go back: a row whose
    lease ran out may be another worker's by now, and handing it back would let a
    third worker send it while the second still does."""
    session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(ids),
            Delivery.status == "sending",
            Delivery.lease_until == lease_until,
        )
        .values(status="planned", lease_until=None, attempts=Delivery.attempts - 1)
        .execution_options(synchronize_session=False)
    )


def _release_claimed(
    factory: sessionmaker[Session], ids: Sequence[int], *, lease_until: datetime
) -> None:
    try:
        with session_scope(factory) as session:
            release(session, ids, lease_until=lease_until)
    except Exception:  # the database is gone: the lease runs out instead
        log.warning("could not release %d claimed deliveries", len(ids), exc_info=True)


def manage_links(settings: Settings, sub: RecipientFields) -> tuple[str, str]:
    """(unsubscribe URL, preferences URL) for ``sub``."""
    token = manage_token(settings.resolved_secret_key(), sub.token_salt)
    return f"{settings.base_url}/u/{token}", f"{settings.base_url}/p/{token}"


def message_id(settings: Settings, delivery: DeliveryFields) -> str:
    """Stable for a delivery, so a retry or a duplicate send is recognisable."""
    host = urlsplit(settings.base_url).hostname or "localhost"
    return f"<digest.{delivery.id}.{delivery.period}@{host}>"


class PaperFields(Protocol):
    """What an email shows of a paper: a ``Paper`` or a row of those columns."""

    @property
    def title(self) -> str: ...
    @property
    def abstract(self) -> str: ...
    @property
    def authors(self) -> list[str] | None: ...
    @property
    def arxiv_id(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...


class DeliveryFields(Protocol):
    """What an email needs of its delivery: a ``Delivery`` or a row of those columns."""

    @property
    def id(self) -> int: ...
    @property
    def period(self) -> str: ...
    @property
    def items(self) -> list[dict[str, Any]]: ...
    @property
    def more_count(self) -> int: ...
    @property
    def profile(self) -> str: ...
    @property
    def planned_at(self) -> datetime: ...
    @property
    def web_token(self) -> str | None: ...


class RecipientFields(Protocol):
    """What an email needs of its subscriber: a ``Subscriber`` or a row of those."""

    @property
    def email(self) -> str: ...
    @property
    def token_salt(self) -> str: ...


PaperMap = Mapping[int, PaperFields]
Spans = tuple[tuple[int, int], ...]
#: Items a worker remembers as DigestPapers (see digest_papers); cleared when full.
ITEM_MEMO_MAX = 50_000


def digest_papers(
    delivery: DeliveryFields,
    papers: PaperMap,
    memo: dict[tuple[Any, ...], DigestPaper] | None = None,
) -> list[DigestPaper]:
    """The delivery's planned items as DigestPapers, best first.

    ``memo`` (kept across a run) maps an item's content to its DigestPaper: the same
    paper with the same matches is an item of many deliveries, and handing the
    context builder the same object again is what makes its cache hit cheaply.
    """
    out = []
    if memo is not None and len(memo) > ITEM_MEMO_MAX:
        memo.clear()
    for item in delivery.items:
        paper_id = item["paper_id"]
        # JSON gave [start, end] lists; map(tuple) converts them in C.
        title_spans = cast(Spans, tuple(map(tuple, item["title_spans"])))
        abstract_spans = cast(Spans, tuple(map(tuple, item["abstract_spans"])))
        matched = tuple(item["matched"])
        score = float(item["score"])
        key = (paper_id, score, matched, title_spans, abstract_spans)
        found = memo.get(key) if memo is not None else None
        if found is None:
            p = papers.get(paper_id)
            if p is None:  # deleted since planning; the rest of the digest still goes
                continue
            found = DigestPaper(
                title=p.title,
                abstract=p.abstract,
                authors=tuple(p.authors or ()),
                arxiv_id=p.arxiv_id,
                url=p.url,
                score=score,
                matched=matched,
                title_spans=title_spans,
                abstract_spans=abstract_spans,
            )
            if memo is not None:
                memo[key] = found
        out.append(found)
    return out


def render_delivery(
    settings: Settings,
    delivery: DeliveryFields,
    sub: RecipientFields,
    papers: PaperMap,
    memo: dict[tuple[Any, ...], DigestPaper] | None = None,
) -> Rendered:
    unsubscribe_url, preferences_url = manage_links(settings, sub)
    recipient = Recipient(
        email=sub.email,
        profile=delivery.profile,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
    )
    context = build_digest_context(
        recipient,
        digest_papers(delivery, papers, memo),
        period_label=period_label(delivery.period),
        web_url=f"{settings.base_url}/d/{delivery.web_token}",
        site_name=settings.site_name,
        max_papers=settings.max_papers,
        more_count=delivery.more_count,
    )
    return render_email("digest", context)


def delivery_message(
    settings: Settings,
    delivery: DeliveryFields,
    sub: RecipientFields,
    papers: PaperMap,
    memo: dict[tuple[Any, ...], DigestPaper] | None = None,
) -> EmailMessage:
    rendered = render_delivery(settings, delivery, sub, papers, memo)
    # The List-Unsubscribe headers carry the email's own unsubscribe link.
    return build_message(
        rendered,
        sender=settings.sender,
        to=sub.email,
        message_id=message_id(settings, delivery),
        date=delivery.planned_at,
        list_id=settings.list_id,
    )


#: Papers a worker keeps between batches (a day's digests share a few hundred papers).
PAPER_CACHE_MAX = 20_000


def load_batch(
    session: Session,
    ids: Sequence[int],
    papers: dict[int, PaperFields] | None = None,
    *,
    with_papers: bool = True,
) -> tuple[list[Delivery], dict[int, Subscriber], dict[int, PaperFields]]:
    """The deliveries, their subscribers and every paper they list (as rows of the
    columns an email shows): three queries. ``papers`` is a cache kept across
    batches: only papers missing from it are fetched (and added to it). Without
    ``with_papers`` (a helper process renders the batch) neither the papers nor the
    deliveries' item lists are read; :func:`load_papers` reads them when needed."""
    query = select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)
    if not with_papers:
        query = query.options(defer(Delivery.items))
    deliveries = list(session.scalars(query).all())
    subs = {
        s.id: s
        for s in session.scalars(
            select(Subscriber).where(Subscriber.id.in_({d.subscriber_id for d in deliveries}))
        )
    }
    if papers is None:
        papers = {}
    if with_papers:
        load_papers(session, deliveries, papers)
    return deliveries, subs, papers


class DeliveryRow(DeliveryFields, RecipientFields, Protocol):
    """A delivery with its subscriber's fields, as :func:`load_rows` reads it."""

    @property
    def subscriber_id(self) -> int: ...


def load_rows(
    session: Session, ids: Sequence[int], papers: dict[int, PaperFields]
) -> list[DeliveryRow]:
    """What rendering needs of the deliveries ``ids`` and their subscribers, as plain
    rows of one query (no ORM objects: the render helper only reads), in id order;
    their papers are added to ``papers``."""
    d, s = Delivery, Subscriber
    columns = (d.id, d.subscriber_id, d.period, d.items, d.more_count, d.profile)
    query = (
        select(*columns, d.planned_at, d.web_token, s.email, s.token_salt)
        .join(s, s.id == d.subscriber_id)
        .where(d.id.in_(ids))
        .order_by(d.id)
    )
    rows = cast(list[DeliveryRow], list(session.execute(query)))
    load_papers(session, rows, papers)
    return rows


def load_papers(
    session: Session, deliveries: Sequence[DeliveryFields], papers: dict[int, PaperFields]
) -> None:
    """Add to ``papers`` (a cache, emptied when full) the papers of ``deliveries``
    it lacks."""
    if len(papers) > PAPER_CACHE_MAX:
        papers.clear()
    missing = {item["paper_id"] for d in deliveries for item in d.items} - papers.keys()
    if missing:
        columns = (Paper.id, Paper.title, Paper.abstract, Paper.authors, Paper.arxiv_id, Paper.url)
        for row in session.execute(select(*columns).where(Paper.id.in_(missing))):
            papers[row.id] = row


_DELIVERIES = table_of(Delivery)


@contextmanager
def _batch_session(
    factory: sessionmaker[Session],
) -> Iterator[tuple[Session, Callable[[dict[str, Any]], object]]]:
    """A session that keeps one connection for a whole batch, and the function that
    records a send (``_MARK_SENT``'s parameters), committed at once.

    A plain session hands its connection back to the pool at every commit, and the
    pool pings PostgreSQL on every checkout: with a commit per message that was an
    extra round trip per message. On PostgreSQL the connections also set
    ``synchronous_commit`` off for the batch: a commit that records a send need not
    wait for its WAL flush (~0.4 ms a message here). A worker that dies still leaves
    its commits to the server; only a crash of the server itself can drop the last
    fraction of a second of records, and a dropped record means that message is sent
    again — a duplicate, never a loss, as when a worker dies between send and commit.

    On PostgreSQL a send is recorded by a second connection in autocommit mode: the
    UPDATE commits by itself in one round trip, where the session's BEGIN, UPDATE and
    COMMIT took three (377 → 176 µs a message, half the worker's CPU for it). Every
    other change (skips, failures with their suppressions, leases) stays in the
    session's transactions. Elsewhere the session's connection records it.
    """
    engine = factory.kw.get("bind")
    if not isinstance(engine, Engine):
        with factory() as session:
            yield session, _recorder(session.connection)
        return
    with ExitStack() as stack:
        connection = stack.enter_context(engine.connect())
        if connection.dialect.name != "postgresql":
            session = stack.enter_context(factory(bind=connection))
            yield session, _recorder(session.connection)
            return
        recorder = stack.enter_context(engine.connect()).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        recorder.exec_driver_sql("SET synchronous_commit TO OFF")
        stack.callback(_reset_synchronous_commit, recorder)
        connection.exec_driver_sql("SET synchronous_commit TO OFF")
        connection.commit()
        stack.callback(_reset_synchronous_commit, connection)
        session = stack.enter_context(factory(bind=connection))
        yield session, _recorder(lambda: recorder)


def _recorder(connection: Callable[[], Connection]) -> Callable[[dict[str, Any]], object]:
    def record(params: dict[str, Any]) -> None:
        connection().execute(_MARK_SENT, params)

    return record


def _reset_synchronous_commit(connection: Connection) -> None:
    """Undo the batch's setting before the connection goes back to the pool."""
    if connection.invalidated:
        return
    try:
        if connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql("RESET synchronous_commit")
        if connection.in_transaction():
            connection.commit()
    except Exception:  # a broken connection: the pool discards it
        log.debug("could not reset synchronous_commit", exc_info=True)


_MARK_SENT = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("row_id"))
    .values(
        status="sent",
        sent_at=bindparam("sent_at"),
        lease_until=None,
        message_id=bindparam("message_id"),
    )
)


def _still_wanted(sub: Subscriber | None) -> str | None:
    if sub is None:
        return "subscriber deleted before sending"
    if sub.status != "active":
        return f"subscriber {sub.status} before sending"
    if sub.paused:
        return "subscriber paused before sending"
    return None


@dataclass(frozen=True)
class Claimed:
    """A batch this worker leased: its ids (in sending order) and the end of the
    lease the claim set on them (what renew and release check)."""

    ids: list[int]
    lease_until: datetime
    #: Already handed to the render helper (a batch claimed ahead).
    submitted: bool = False


def claim_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    limit: int = BATCH_SIZE,
) -> Claimed | None:
    """Claim the next batch in a transaction of its own; None when nothing is due."""
    at = now()
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    with session_scope(factory) as session:
        ids = claim(session, now=at, limit=limit, lease=lease)
    return Claimed(ids, at + lease) if ids else None


def deliver_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    *,
    now: Callable[[], datetime] = utcnow,
    limit: int = BATCH_SIZE,
    pace: Callable[[], object] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[], object] | None = None,
    paper_cache: dict[int, PaperFields] | None = None,
    prerender: Prerenderer | None = None,
    claimed: Claimed | None = None,
    claim_next: Callable[[], object] | None = None,
) -> DeliverSummary | None:
    """Send one batch over ``transport`` (already open): ``claimed``, or else one
    claimed now. None when nothing was due. When ``should_stop`` turns true mid-batch,
    the unsent rows are released (back to planned) for the next worker instead of
    waiting for the lease.

    With ``prerender``, a full batch (the sign of a big run) or any batch once it has
    started is rendered ahead by its helper process; this process still sends and
    records every message, and renders whatever the helper does not deliver.
    ``claim_next`` is called once, after the batch's first message: the caller claims
    the next batch there and hands it to the helper, which then never waits between
    batches for this process to claim and read."""
    if claimed is None:
        claimed = claim_batch(factory, settings, now=now, limit=limit)
        if claimed is None:
            return None
    ids = claimed.ids
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    ahead = prerender if prerender and (prerender.started or len(ids) >= limit) else None
    if ahead and not claimed.submitted:
        ahead.submit(ids)
    try:
        return _send_batch(
            factory,
            settings,
            transport,
            ids,
            DeliverSummary(),
            lease,
            claimed.lease_until,
            now=now,
            pace=pace,
            should_stop=should_stop,
            on_sent=on_sent,
            paper_cache=paper_cache,
            prerender=ahead,
            # Only worth it when the helper renders and more rows are likely due.
            claim_next=claim_next if ahead and ahead.started and len(ids) >= limit else None,
        )
    finally:
        if ahead:
            ahead.drain(ids)


def _send_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    ids: list[int],
    summary: DeliverSummary,
    lease: timedelta,
    lease_end: datetime,
    *,
    now: Callable[[], datetime],
    pace: Callable[[], object] | None,
    should_stop: Callable[[], bool],
    on_sent: Callable[[], object] | None,
    paper_cache: dict[int, PaperFields] | None,
    prerender: Prerenderer | None,
    claim_next: Callable[[], object] | None,
) -> DeliverSummary:
    with _batch_session(factory) as (session, record_sent):
        deliveries, subs, papers = load_batch(
            session, ids, paper_cache, with_papers=prerender is None
        )
        lost: set[int] = set()
        for n, d in enumerate(deliveries):
            if d.id in lost:
                continue
            if should_stop():
                release(
                    session,
                    [x.id for x in deliveries[n:] if x.id not in lost],
                    lease_until=lease_end,
                )
                session.commit()
                break
            t = now()
            if t > lease_end - lease / 2:
                # A slow batch: renew the lease on what is left, and drop any row whose
                # lease already lapsed and was claimed by another worker.
                rest = [x.id for x in deliveries[n:]]
                ours = renew(session, rest, old=lease_end, new=t + lease)
                session.commit()
                lease_end = t + lease
                lost.update(set(rest) - ours)
                if d.id in lost:
                    continue
            sub = subs.get(d.subscriber_id)
            reason = _still_wanted(sub)
            if reason or sub is None:
                d.status, d.skip_reason, d.lease_until = "skipped", reason, None
                session.commit()
                summary.skipped += 1
                continue
            try:
                msg = prerender.take(d.id) if prerender is not None else None
                if msg is None:
                    if prerender is not None:
                        load_papers(session, [d], papers)
                    msg = delivery_message(settings, d, sub, papers)
                if pace:
                    pace()
                transport.send(msg)
            except SessionRefusedError as exc:
                # The server refuses us (bad password, TLS): every message would fail
                # the same way. Retry this one later and hand the rest back.
                d.status, d.next_attempt_at = "planned", now() + backoff(d.attempts)
                d.last_error, d.lease_until = str(exc), None
                release(
                    session,
                    [x.id for x in deliveries[n + 1 :] if x.id not in lost],
                    lease_until=lease_end,
                )
                summary.retried += 1
                summary.errors.append(f"mail server refused the session: {exc}")
                session.commit()
                break
            except TransientSendError as exc:
                t = now()
                d.last_error = str(exc)
                d.lease_until = None
                if t - d.planned_at > RETRY_DEADLINE:
                    d.status = "failed"
                    summary.failed += 1
                else:
                    d.status, d.next_attempt_at = "planned", t + backoff(d.attempts)
                    summary.retried += 1
                summary.errors.append(f"{sub.email}: {exc}")
            except PermanentSendError as exc:
                d.status, d.last_error, d.lease_until = "failed", str(exc), None
                subscribers.suppress(sub, str(exc))
                summary.failed += 1
                summary.errors.append(f"{sub.email}: {exc}")
            else:
                # The common case skips the unit of work: one UPDATE by primary key,
                # committed by itself on PostgreSQL (see _batch_session). (The
                # Delivery object is not used again, so it may stay stale.)
                record_sent(
                    {"row_id": d.id, "sent_at": now(), "message_id": message_id(settings, d)}
                )
                summary.sent += 1
                if on_sent:
                    on_sent()
            # One commit per message: a crash re-sends at most the message in flight.
            # (After a recorded send the session has nothing left to commit.)
            session.commit()
            if claim_next is not None:
                claim_next()
                claim_next = None
    return summary


def deliver_due(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    *,
    now: Callable[[], datetime] = utcnow,
    batch_size: int = BATCH_SIZE,
    per_second: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[], object] | None = None,
    render_ahead: bool | None = None,
) -> DeliverSummary:
    """Send everything due, batch after batch, over one transport session.

    ``render_ahead`` (default: ``settings.render_ahead``) renders big runs in a helper
    process (:mod:`newsletter.digest.prerender`) while this one sends."""
    if render_ahead is None:
        render_ahead = settings.render_ahead
    total = DeliverSummary()
    pace = RateLimiter(per_second).wait if per_second else None
    # Papers are read once per run, not once per batch. (A paper enriched during the
    # run keeps its old fields in this run's remaining emails: a missing author list
    # or link, never a wrong one.)
    papers: dict[int, PaperFields] = {}
    # A full batch, rendered ahead, claims the next one after its first message and
    # submits it to the helper (see deliver_batch); it is sent next.
    upcoming: list[Claimed] = []
    with transport, Prerenderer(settings) as ahead, relaxed_gc():

        def claim_next() -> None:
            nxt = claim_batch(factory, settings, now=now, limit=batch_size)
            if nxt is not None:
                ahead.submit(nxt.ids)
                upcoming.append(replace(nxt, submitted=True))

        try:
            while not should_stop():
                claimed = upcoming.pop() if upcoming else None
                batch = deliver_batch(
                    factory,
                    settings,
                    transport,
                    now=now,
                    limit=batch_size,
                    pace=pace,
                    should_stop=should_stop,
                    on_sent=on_sent,
                    paper_cache=papers,
                    prerender=ahead if render_ahead else None,
                    claimed=claimed,
                    claim_next=claim_next,
                )
                if batch is None:
                    break
                total.add(batch)
                if batch.sent == 0 and batch.retried + batch.failed > 0 and batch.skipped == 0:
                    break  # the server refuses everything right now: leave the rest for later
        finally:
            # A batch claimed ahead and not sent (stopped, refused, or an error) goes
            # back to planned at once rather than when its lease runs out.
            for left in upcoming:
                _release_claimed(factory, left.ids, lease_until=left.lease_until)
    return total
