"""The confirmation email (double opt-in): build it and send it.

Callers send *after* the transaction that issued the token has committed, so a
rolled-back subscription never mails a link that leads nowhere. The message carries no
List-Unsubscribe header: the address is not on the list until it confirms.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

from newsletter.config import Settings
from newsletter.db import utcnow
from newsletter.digest.message import build_message
from newsletter.digest.render import build_confirm_context, render_email
from newsletter.digest.send import Transport, transport_for


def confirm_url(settings: Settings, token: str) -> str:
    """The emailed link; it only shows a page, and the page's button POSTs."""
    return f"{settings.base_url}/confirm/{token}"


def confirmation_message(
    settings: Settings, email: str, profile: str, token: str, *, now: datetime | None = None
) -> EmailMessage:
    """The confirmation email for ``email``, asking to confirm ``profile``."""
    context = build_confirm_context(
        email=email,
        profile=profile,
        confirm_url=confirm_url(settings, token),
        site_name=settings.site_name,
    )
    rendered = render_email("confirm", context)
    host = urlsplit(settings.base_url).hostname or "localhost"
    # Derived from the token, so a retried send of one link is recognisably one
    # message; a hash, so the Message-ID (which mail servers log) leaks no token.
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    return build_message(
        rendered,
        sender=settings.sender,
        to=email,
        message_id=f"<confirm.{digest}@{host}>",
        date=now or utcnow(),
    )


def send_confirmation(
    settings: Settings,
    email: str,
    profile: str,
    token: str,
    *,
    transport: Transport | None = None,
) -> None:
    """Build and send the confirmation email over ``transport`` (default: the one
    ``settings.mail_url`` names). Raises the transport's SendError on failure."""
    msg = confirmation_message(settings, email, profile, token)
    with transport or transport_for(settings) as t:
        t.send(msg)
