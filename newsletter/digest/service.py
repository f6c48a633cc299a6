"""The digest run: plan what is due, then deliver it. Called by the CLI and scheduler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import session_scope, utcnow
from newsletter.digest.deliver import DeliverSummary, deliver_due, delivery_message
from newsletter.digest.models import Delivery
from newsletter.digest.plan import PlanSummary, plan, plan_rows
from newsletter.digest.send import Transport, transport_for
from newsletter.errors import NotFound
from newsletter.gc_tuning import release_memory
from newsletter.papers.models import Paper
from newsletter.subscribers.service import by_email


@dataclass
class DigestSummary:
    planned: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "planned": self.planned,
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
        }


def run_digest(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    day: date | None = None,
    force: bool = False,
    to: str | None = None,
    dry_run: bool = False,
    transport: Transport | None = None,
    progress: Callable[[int], object] | None = None,
) -> DigestSummary:
    """Plan every due digest and send what is due (including earlier retries).

    ``dry_run`` plans in a transaction that is rolled back and sends nothing, so the
    summary says what a real run would do. ``to`` restricts planning to one address.
    """
    now = now or utcnow()
    only: list[int] | None = None
    with session_scope(factory) as session:
        if to is not None:
            sub = by_email(session, to)
            if sub is None:
                raise NotFound(f"no subscriber {to}")
            only = [sub.id]
        planned: PlanSummary = plan(
            session,
            now=now,
            day=day,
            force=force,
            max_papers=settings.max_papers,
            send_empty=settings.send_empty,
            only=only,
        )
        if dry_run:
            session.rollback()
    release_memory()  # planning's peak is not needed while the digests go out
    summary = DigestSummary(planned=planned.planned, skipped=planned.skipped)
    if dry_run:
        return summary
    # ``progress(total)`` is called once with the number planned, then ``progress(1)`` per
    # message sent (the CLI's progress bar).
    if progress:
        progress(-planned.planned)
    delivered: DeliverSummary = deliver_due(
        factory,
        settings,
        transport or transport_for(settings),
        now=lambda: now,
        on_sent=(lambda: progress(1)) if progress else None,
    )
    summary.sent = delivered.sent
    summary.failed = delivered.failed
    summary.retried = delivered.retried
    summary.skipped += delivered.skipped
    summary.errors = delivered.errors
    return summary


def preview(session: Session, settings: Settings, email: str, *, now: datetime) -> EmailMessage:
    """The subscriber's next digest as it would be sent now (whatever their hour,
    status or pause), built without writing anything."""
    sub = by_email(session, email)
    if sub is None:
        raise NotFound(f"no subscriber {email}")
    rows, _ = plan_rows(
        session,
        now=now,
        force=True,
        max_papers=settings.max_papers,
        send_empty=True,
        only=[sub.id],
        include_planned=True,
        any_status=True,
    )
    if not rows:
        raise NotFound(f"nothing to preview for {email}")
    row = rows[0] | {"id": 0, "web_token": "preview"}
    delivery = Delivery(**row)
    papers = {
        p.id: p
        for p in session.scalars(
            select(Paper).where(Paper.id.in_([i["paper_id"] for i in delivery.items]))
        )
    }
    return delivery_message(settings, delivery, sub, papers)
