"""The outbox: one Delivery per (subscriber, period), the truth about what was sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, UTCDateTime
from newsletter.papers.models import BigIntPK

# planned → sending (leased to a worker) → sent | failed; or skipped at planning
# (nothing matched). A transient failure puts the row back to planned with a later
# next_attempt_at; an expired lease makes a `sending` row claimable again, which is
# how a crashed worker's row is recovered.
DELIVERY_STATUSES = ("planned", "sending", "sent", "failed", "skipped")


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    # "D2026-07-30" for a daily digest, "W2026-W31" for a weekly one.
    period: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # Papers first seen in [window_start, window_end): consecutive deliveries of one
    # subscriber have adjacent windows, so no paper can be mailed to them twice.
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    # Fixed at planning, so a retry sends the same email: ranked
    # [{"paper_id", "score", "matched", "title_spans", "abstract_spans"}, ...].
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    more_count: Mapped[int] = mapped_column(Integer, default=0)
    # The profile as it was at planning; the email explains matches with it.
    profile: Mapped[str] = mapped_column(Text, default="")
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    # A random token for the web copy of this digest (view-on-web link).
    web_token: Mapped[str | None] = mapped_column(String(64), unique=True)

    __table_args__ = (
        UniqueConstraint("subscriber_id", "period"),
        # Claim order (digest.deliver.claim): one ordered index scan per claim.
        Index("ix_deliveries_status_next_attempt_at_id", "status", "next_attempt_at", "id"),
        Index("ix_deliveries_subscriber_id_window_end", "subscriber_id", "window_end"),
    )
