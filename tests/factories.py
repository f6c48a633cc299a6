"""Row factories for tests (one place, real services: no hand-built rows)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.subscribers import service
from newsletter.subscribers.models import Subscriber

SECRET = "test-secret-key"


def subscriber(
    session: Session,
    email: str,
    profile: str,
    *,
    now: datetime,
    frequency: str = "daily",
    hour: int = 7,
    timezone: str = "UTC",
    weekday: int = 0,
    confirmed: bool = True,
) -> Subscriber:
    result = service.subscribe(
        session,
        email,
        service.Preferences(profile, frequency, hour, timezone, weekday),
        secret_key=SECRET,
        now=now,
        confirmed=confirmed,
    )
    session.flush()
    return result.subscriber
