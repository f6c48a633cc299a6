"""Subscribe, confirm, change preferences, unsubscribe, export, delete.

Services take a Session and never commit: the web route, CLI command or job that
calls them owns the transaction. Nothing here sends mail; callers send the
confirmation email *after* the commit, so a rolled-back row never gets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from newsletter.digest.models import Delivery
from newsletter.errors import InvalidEmail, NewsletterError, NotFound
from newsletter.subscribers import tokens
from newsletter.subscribers.models import FREQUENCIES, Subscriber
from newsletter.subscribers.query import compile_profile

# A confirmation link is good for three days (issue: "tokens expire (72 h)").
CONFIRM_TTL = timedelta(hours=72)
# Re-asking within this window sends no second confirmation email: a double click or
# a burst of parallel requests yields one email, and the form cannot be used to flood
# somebody's inbox.
CONFIRM_RESEND_AFTER = timedelta(minutes=10)
MAX_PROFILE_CHARS = 2000


class InvalidPreference(NewsletterError):
    """A frequency, hour, weekday or time zone that is not allowed."""


@dataclass(frozen=True)
class Preferences:
    profile: str
    frequency: str = "daily"
    hour: int = 7
    timezone: str = "UTC"
    weekday: int = 0


@dataclass(frozen=True)
class SubscribeResult:
    """``confirm_token`` is set when the caller must mail a confirmation link."""

    subscriber: Subscriber
    confirm_token: str | None


def normalise_email(text: str) -> str:
    """The address normalised and lowercased; raises InvalidEmail (syntax only)."""
    try:
        info = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"{text.strip()!r} is not a valid email address: {exc}") from exc
    return info.normalized.lower()


def validate_preferences(prefs: Preferences) -> Preferences:
    """Check every field; raises QueryError (profile) or InvalidPreference."""
    if len(prefs.profile) > MAX_PROFILE_CHARS:
        raise InvalidPreference(f"the profile is longer than {MAX_PROFILE_CHARS} characters")
    compile_profile(prefs.profile)
    if prefs.frequency not in FREQUENCIES:
        raise InvalidPreference(f"frequency must be one of {', '.join(FREQUENCIES)}")
    if not 0 <= prefs.hour <= 23:
        raise InvalidPreference("hour must be between 0 and 23")
    if not 0 <= prefs.weekday <= 6:
        raise InvalidPreference("weekday must be between 0 (Monday) and 6 (Sunday)")
    try:
        ZoneInfo(prefs.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidPreference(f"unknown time zone {prefs.timezone!r}") from exc
    return prefs


def _apply(sub: Subscriber, prefs: Preferences) -> None:
    sub.profile = prefs.profile
    sub.frequency = prefs.frequency
    sub.hour = prefs.hour
    sub.timezone = prefs.timezone
    sub.weekday = prefs.weekday


def _issue_confirmation(session: Session, sub: Subscriber, now: datetime) -> str | None:
    """A fresh confirmation token for ``sub``, or None when one went out recently.

    Compare-and-set in one UPDATE, not read-then-write: of any number of parallel
    requests for one address exactly one sees the old ``confirm_sent_at`` and wins (the
    others wait on its row lock, then find the new value), so a burst of requests
    mails at most one link.
    """
    if sub.confirm_sent_at and now - sub.confirm_sent_at < CONFIRM_RESEND_AFTER:
        return None
    token = tokens.new_confirm_token()
    session.flush()  # the preference changes first, so the UPDATE below sees the row
    won = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == sub.id,
            or_(
                Subscriber.confirm_sent_at.is_(None),
                Subscriber.confirm_sent_at <= now - CONFIRM_RESEND_AFTER,
            ),
        )
        .values(confirm_token_hash=tokens.token_hash(token), confirm_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return None
    set_committed_value(sub, "confirm_token_hash", tokens.token_hash(token))
    set_committed_value(sub, "confirm_sent_at", now)
    return token


def _activate(sub: Subscriber, now: datetime) -> None:
    sub.status = "active"
    sub.confirmed_at = now
    sub.unsubscribed_at = None
    sub.suppressed_reason = None
    sub.confirm_token_hash = None
    # The resend throttle protects a mailbox that never consented; this one just did,
    # so leaving and coming back within CONFIRM_RESEND_AFTER still gets a link.
    sub.confirm_sent_at = None


def subscribe(
    session: Session,
    email: str,
    prefs: Preferences,
    *,
    secret_key: str,
    now: datetime,
    confirmed: bool = False,
) -> SubscribeResult:
    """Start (or restart) a subscription.

    ``confirmed=True`` is the operator's path (CLI): the address is active at once and
    an existing subscriber's preferences are replaced. Without it (the public form):
    a new, unsubscribed or suppressed address becomes pending and needs the emailed
    link; a pending one gets its preferences updated and a fresh link (at most one per
    CONFIRM_RESEND_AFTER); an active one is left unchanged, because whoever typed the
    address may not own it.
    """
    address = normalise_email(email)
    validate_preferences(prefs)
    sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if sub is None:
        created = _insert_new(session, address, prefs, secret_key=secret_key, now=now)
        if created is None:
            # A parallel request created the row first: behave as for a pending one
            # (that request mails the link; this one must not mail a second).
            sub = session.scalars(select(Subscriber).where(Subscriber.email == address)).one()
            return SubscribeResult(sub, None)
        sub = created
    elif sub.status == "active" and not confirmed:
        return SubscribeResult(sub, None)
    else:
        _apply(sub, prefs)
        if sub.status in ("unsubscribed", "suppressed"):
            sub.status = "pending"
    if confirmed:
        _activate(sub, now)
        return SubscribeResult(sub, None)
    return SubscribeResult(sub, _issue_confirmation(session, sub, now))


def _insert_new(
    session: Session, address: str, prefs: Preferences, *, secret_key: str, now: datetime
) -> Subscriber | None:
    """Insert a pending subscriber; None when the address exists (a parallel request).

    INSERT … ON CONFLICT DO NOTHING rather than a savepoint around a plain INSERT:
    it needs no savepoint (which pysqlite runs outside the transaction, committing
    early) and on PostgreSQL it waits for a parallel insert to commit, then yields.
    """
    salt = tokens.new_salt()
    row: dict[str, Any] = {
        "email": address,
        "status": "pending",
        "paused": False,
        "profile": prefs.profile,
        "frequency": prefs.frequency,
        "hour": prefs.hour,
        "timezone": prefs.timezone,
        "weekday": prefs.weekday,
        "created_at": now,
        "token_salt": salt,
        "manage_token_hash": tokens.token_hash(tokens.manage_token(secret_key, salt)),
    }
    ins = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new_id = session.scalar(
        ins(Subscriber)
        .values(row)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(Subscriber.id)
    )
    return None if new_id is None else session.get(Subscriber, new_id)


def confirm(session: Session, token: str, *, now: datetime) -> Subscriber:
    """Activate the subscriber the confirmation ``token`` was mailed to.

    Raises NotFound for an unknown, used or expired token.
    """
    sub = session.scalar(
        select(Subscriber).where(Subscriber.confirm_token_hash == tokens.token_hash(token))
    )
    if sub is None or sub.confirm_sent_at is None or now - sub.confirm_sent_at > CONFIRM_TTL:
        raise NotFound("this confirmation link is unknown, used or expired")
    _activate(sub, now)
    return sub


def pending_confirmation(session: Session, token: str, *, now: datetime) -> Subscriber | None:
    """The subscriber ``confirm(token)`` would activate, without activating (the page
    an emailed link shows); None for an unknown, used or expired token."""
    sub = session.scalar(
        select(Subscriber).where(Subscriber.confirm_token_hash == tokens.token_hash(token))
    )
    if sub is None or sub.confirm_sent_at is None or now - sub.confirm_sent_at > CONFIRM_TTL:
        return None
    return sub


def manage_token_for(sub: Subscriber, secret_key: str) -> str:
    """The unsubscribe / preferences token for ``sub`` (derived, never stored)."""
    return tokens.manage_token(secret_key, sub.token_salt)


def by_manage_token(session: Session, token: str) -> Subscriber | None:
    return session.scalar(
        select(Subscriber).where(Subscriber.manage_token_hash == tokens.token_hash(token))
    )


def by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalise_email(email)))


def unsubscribe(sub: Subscriber, *, now: datetime) -> bool:
    """Stop all mail to ``sub``; returns False when already unsubscribed (idempotent)."""
    if sub.status == "unsubscribed":
        return False
    sub.status = "unsubscribed"
    sub.unsubscribed_at = now
    sub.confirm_token_hash = None
    return True


def update_preferences(sub: Subscriber, prefs: Preferences, *, paused: bool | None = None) -> None:
    _apply(sub, validate_preferences(prefs))
    if paused is not None:
        sub.paused = paused


def set_paused(sub: Subscriber, paused: bool) -> bool:
    """Pause or resume digests; returns False when nothing changed (idempotent)."""
    if sub.paused == paused:
        return False
    sub.paused = paused
    return True


def suppress(sub: Subscriber, reason: str) -> None:
    """The mail server refused the address for good: never mail it again."""
    sub.status = "suppressed"
    sub.suppressed_reason = reason


def export(session: Session, sub: Subscriber) -> dict[str, Any]:
    """Everything stored about ``sub``, JSON-safe ("export my data"): the subscriber
    and each digest planned for them. Token material (salt, hashes) is left out: it is
    ours, not theirs, and would only help someone who stole the file."""
    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == sub.id).order_by(Delivery.id)
    )
    return {
        "subscriber": sub.as_dict(),
        "digests": [
            {
                "period": d.period,
                "status": d.status,
                "planned_at": d.planned_at.isoformat(),
                "sent_at": d.sent_at.isoformat() if d.sent_at else None,
                "profile": d.profile,
                "paper_ids": [item["paper_id"] for item in d.items],
                "more_count": d.more_count,
                "skip_reason": d.skip_reason,
            }
            for d in deliveries
        ],
    }


def delete(session: Session, sub: Subscriber) -> None:
    """Delete the subscriber and (by cascade) everything about them."""
    session.delete(sub)
