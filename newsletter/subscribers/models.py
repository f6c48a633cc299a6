"""Subscribers: address, keyword profile, schedule, and the state of their consent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, UTCDateTime
from newsletter.papers.models import BigIntPK

# pending: asked to subscribe, not confirmed (double opt-in); gets no digests.
# active: confirmed; gets digests unless paused.
# unsubscribed: left; gets nothing until they subscribe and confirm again.
# suppressed: the mail server refused the address permanently (SMTP 5xx); never mailed
#   again until the person re-subscribes and confirms.
STATUSES = ("pending", "active", "unsubscribed", "suppressed")
FREQUENCIES = ("daily", "weekly")


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Stored normalised (email-validator) and lowercased: one row per mailbox.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    profile: Mapped[str] = mapped_column(Text)
    frequency: Mapped[str] = mapped_column(String(8), default="daily")
    # Local delivery hour 0-23 in ``timezone``; weekly digests go out on ``weekday``
    # (0 = Monday).
    hour: Mapped[int] = mapped_column(Integer, default=7)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    weekday: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    suppressed_reason: Mapped[str | None] = mapped_column(Text)
    # Secret per-subscriber salt from which the unsubscribe / preferences token is
    # derived with the site's secret key (HMAC), so a digest can carry the link while
    # the database stores only the token's hash. Rotating it revokes the links.
    token_salt: Mapped[str] = mapped_column(String(64))
    manage_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The confirmation token is random, mailed once, stored hashed, expires, works once.
    confirm_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    confirm_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def as_dict(self) -> dict[str, object]:
        """The subscriber's own data, for "export my data" (no token material)."""
        return {
            "email": self.email,
            "status": self.status,
            "paused": self.paused,
            "profile": self.profile,
            "frequency": self.frequency,
            "hour": self.hour,
            "timezone": self.timezone,
            "weekday": self.weekday,
            "created_at": self.created_at.isoformat(),
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "unsubscribed_at": self.unsubscribed_at.isoformat() if self.unsubscribed_at else None,
        }
