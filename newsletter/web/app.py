"""The web app factory: subscribe, confirm, preferences, unsubscribe, web copies, API.

``create_app`` wires settings, the database, CSRF, rate limits, security headers and
the confirmation mailer; :mod:`newsletter.web.routes` holds the (thin) views.

Security decisions, in one place:

* Every state change is a POST. Emailed links (confirm, unsubscribe, preferences, web
  copy) only show a page, because mail scanners fetch — and some "click" — links.
* Human forms carry a Flask-WTF CSRF token. Two POSTs go without one, on purpose:
  the RFC 8058 one-click unsubscribe (a mail provider posts
  ``List-Unsubscribe=One-Click`` with no cookies; the unguessable token in the URL is
  the credential) and the JSON API (it accepts only ``application/json``, which a
  cross-site form cannot send and a cross-site script cannot send without a CORS
  preflight that we never answer).
* The Flask session key is derived from the site secret rather than being it, so a
  session cookie forged from a leaked key would not forge unsubscribe tokens too.
* Pages are ``no-store`` and ``noindex`` (they carry tokens and addresses); the
  ``Referrer-Policy`` keeps tokens in our URLs from leaking to the sites a digest
  links to; the CSP allows scripts and styles from our own origin only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Final

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings, get_settings
from newsletter.db import make_engine, make_session_factory, utcnow
from newsletter.digest.send import Transport
from newsletter.subscribers.emails import send_confirmation

log = logging.getLogger(__name__)

# Profiles are at most a few thousand characters; nothing we accept is larger, and a
# cap stops a client from making us buffer and parse megabytes of form data.
MAX_REQUEST_BYTES: Final = 64 * 1024
# A subscribe form left open over lunch should still submit; a day is plenty.
CSRF_TOKEN_LIFETIME: Final = timedelta(hours=24)
# Confirmation emails go out on a small pool: see ConfirmationMailer.
MAIL_THREADS: Final = 2

STATE_KEY: Final = "newsletter"


@dataclass(frozen=True)
class RateLimits:
    """Flask-Limiter limit strings ("N per period", ``;`` joins several).

    Subscribing is limited per client IP and per address: the first stops one client
    from signing up many addresses, the second stops many clients from flooding one
    mailbox (the service's resend throttle already caps the mail itself). The live
    profile check fires as someone types (debounced); the preview matches stored
    papers and costs more, so it gets less.
    """

    subscribe_per_ip: str = "20 per hour;5 per minute"
    subscribe_per_address: str = "5 per hour"
    check_per_ip: str = "120 per minute"
    preview_per_ip: str = "30 per minute"


class ConfirmationMailer:
    """Sends confirmation emails after the subscribing transaction committed.

    In the background by default, so the response to a subscribe is the same — in
    status, body *and* time — whether or not an email went out: a synchronous SMTP
    round trip would tell a prober which addresses are new. Failures are logged,
    never shown, for the same reason; the person can simply submit again once
    ``CONFIRM_RESEND_AFTER`` has passed. ``ThreadPoolExecutor`` joins its threads at
    interpreter exit, so a clean shutdown still sends what was queued.
    """

    def __init__(
        self,
        settings: Settings,
        transport: Callable[[], Transport] | None = None,
        *,
        background: bool = True,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._background = background
        self._pool: ThreadPoolExecutor | None = None

    def send(self, email: str, profile: str, token: str) -> None:
        if not self._background:
            self._send(email, profile, token)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAIL_THREADS, thread_name_prefix="confirm-mail")
        self._pool.submit(self._send, email, profile, token)

    def _send(self, email: str, profile: str, token: str) -> None:
        try:
            transport = self._transport() if self._transport is not None else None
            send_confirmation(self._settings, email, profile, token, transport=transport)
        except Exception:
            # Logged without the token: it is a credential, and logs travel further.
            log.exception("could not send the confirmation email")

    def shutdown(self) -> None:
        """Wait for queued emails (tests call this before counting messages)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass
class WebState:
    """What the views need, kept on ``app.extensions["newsletter"]``."""

    settings: Settings
    factory: sessionmaker[Session]
    secret_key: str
    mailer: ConfirmationMailer
    clock: Callable[[], datetime] = utcnow
    limits: RateLimits | None = None


def web_dir() -> Path:
    """``templates/web`` of the installed package (pages and ``static/``)."""
    return Path(str(files("newsletter.templates"))) / "web"


def create_app(
    settings: Settings | None = None,
    *,
    factory: sessionmaker[Session] | None = None,
    rate_limits: RateLimits | None = RateLimits(),
    transport: Callable[[], Transport] | None = None,
    mail_in_background: bool = True,
    clock: Callable[[], datetime] = utcnow,
) -> Flask:
    """The Flask app.

    ``settings`` default to :func:`get_settings`; without ``factory`` the app builds
    its own engine and upgrades the schema. ``rate_limits=None`` turns rate limiting
    off (tests). ``transport`` makes the transport confirmation emails go over
    (default: ``settings.mail_url``); ``mail_in_background=False`` sends them inside
    the request (tests). ``clock`` is "now" for token expiry.
    """
    settings = settings or get_settings()
    if factory is None:
        from newsletter import schema

        engine = make_engine(settings.database_url)
        schema.upgrade(engine)
        factory = make_session_factory(engine)
    secret = settings.resolved_secret_key()

    root = web_dir()
    app = Flask(
        __name__,
        template_folder=str(root),
        static_folder=str(root / "static"),
        static_url_path="/static",
    )
    app.config.update(
        SECRET_KEY=_derived_key(secret, "flask-session"),
        SESSION_COOKIE_NAME="digest_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        # We decide per request which POSTs need a token (see _csrf_guard).
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=int(CSRF_TOKEN_LIFETIME.total_seconds()),
        # Flask-WTF's strict referrer check on HTTPS stays on; our Referrer-Policy
        # (same-origin) still sends the Referer it needs on our own forms.
        WTF_CSRF_SSL_STRICT=True,
    )
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    csrf = CSRFProtect(app)
    limiter: Limiter | None = None
    if rate_limits is not None:
        # In-process memory: right for one web process; several processes each count
        # on their own (configure a shared storage if that ever matters).
        limiter = Limiter(
            key_func=get_remote_address,
            app=app,
            storage_uri="memory://",
            strategy="fixed-window",
            headers_enabled=False,
        )

    app.extensions[STATE_KEY] = WebState(
        settings=settings,
        factory=factory,
        secret_key=secret,
        mailer=ConfirmationMailer(settings, transport, background=mail_in_background),
        clock=clock,
        limits=rate_limits,
    )

    from newsletter.web import routes

    routes.register(app, csrf, limiter, rate_limits)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"site_name": settings.site_name})
    return app


def state(app: Flask) -> WebState:
    result: WebState = app.extensions[STATE_KEY]
    return result


def _derived_key(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


# The page CSP: our own scripts, styles and fetches only; no plugins, no framing, no
# <base> tricks, forms post only to us.
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The web copy of a digest is the email's HTML, whose styles are inline attributes
# (mail clients need that); it runs no script and posts no form.
DIGEST_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _security_headers(response: Response) -> Response:
    static = request.endpoint == "static"
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # same-origin: our CSRF check may read the Referer on our own forms, while the
    # token in a /u/, /p/ or /d/ URL never travels to arXiv or anywhere else.
    headers.setdefault("Referrer-Policy", "same-origin")
    if not static:
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        # Pages carry tokens, addresses and profiles: no shared or back-button cache,
        # no search index.
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("X-Robots-Tag", "noindex, nofollow")
    return response
