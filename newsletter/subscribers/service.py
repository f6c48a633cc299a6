"""Subscribe, confirm, change preferences, unsubscribe, export, delete.

Services take a Session and never commit: the web route, CLI command or job that
calls them owns the transaction. Nothing here sends mail; callers send the
confirmation email *after* the commit, so a rolled-back row never gets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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


def _issue_confirmation(sub: Subscriber, now: datetime) -> str | None:
    if sub.confirm_sent_at and now - sub.confirm_sent_at < CONFIRM_RESEND_AFTER:
        return None
    token = tokens.new_confirm_token()
    sub.confirm_token_hash = tokens.token_hash(token)
    sub.confirm_sent_at = now
    return token


def _activate(sub: Subscriber, now: datetime) -> None:
    sub.status = "active"
    sub.confirmed_at = now
    sub.unsubscribed_at = None
    sub.suppressed_reason = None
    sub.confirm_token_hash = None


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
        salt = tokens.new_salt()
        sub = Subscriber(
            email=address,
            status="pending",
            paused=False,
            created_at=now,
            token_salt=salt,
            manage_token_hash=tokens.token_hash(tokens.manage_token(secret_key, salt)),
        )
        _apply(sub, prefs)
        try:
            with session.begin_nested():
                session.add(sub)
        except IntegrityError:
            # A parallel request created the row first: behave as for a pending one.
            sub = session.scalars(select(Subscriber).where(Subscriber.email == address)).one()
            return SubscribeResult(sub, None)
    elif sub.status == "active" and not confirmed:
        return SubscribeResult(sub, None)
    else:
        _apply(sub, prefs)
        if sub.status in ("unsubscribed", "suppressed"):
            sub.status = "pending"
    if confirmed:
        _activate(sub, now)
        return SubscribeResult(sub, None)
    return SubscribeResult(sub, _issue_confirmation(sub, now))


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


def suppress(sub: Subscriber, reason: str) -> None:
    """The mail server refused the address for good: never mail it again."""
    sub.status = "suppressed"
    sub.suppressed_reason = reason


def delete(session: Session, sub: Subscriber) -> None:
    """Delete the subscriber and (by cascade) everything about them."""
    session.delete(sub)
