"""Settings, read from ``NEWSLETTER_*`` environment variables once.

Nothing else in the project reads ``os.environ``. Every setting has a default that
makes ``newsletter serve`` work on a fresh machine: SQLite and a Maildir under ``var/``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.errors import ConfigError

PREFIX = "NEWSLETTER_"


@dataclass(frozen=True)
class Settings:
    """All configuration. Build with :meth:`from_env`; tests use :meth:`replace`."""

    var_dir: Path = Path("var")
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8000"
    mail_url: str = ""
    sender: str = "Paper Digest <digest@localhost>"
    site_name: str = "Paper Digest"
    inbox_dir: Path = Path("var/inbox")
    feeds: tuple[str, ...] = ()
    secret_key: str = ""
    max_papers: int = 20
    send_empty: bool = False
    fetch_timeout: float = 30.0
    # 20 MB: the largest arXiv listing feed is a few MB; anything far larger is a mistake.
    fetch_max_bytes: int = 20_000_000
    host: str = "127.0.0.1"
    port: int = 8000
    # How long a worker holds claimed deliveries; after that a crashed worker's rows
    # are claimed again. Far longer than a batch takes; short in crash tests.
    delivery_lease_seconds: float = 600.0
    # Messages per second per worker; 0 = unlimited (relays throttle bursts).
    send_rate: float = 0.0
    # Render big runs in a helper process while the worker sends (newsletter.digest.
    # prerender). from_env turns it on when the machine has more than one core.
    render_ahead: bool = False
    # DKIM signing of every message (RFC 6376): all three, or none to send unsigned.
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: str = "") -> str:
            return env.get(PREFIX + name, default).strip()

        var_dir = Path(get("VAR_DIR", "var"))
        try:
            settings = cls(
                var_dir=var_dir,
                database_url=get("DATABASE_URL") or f"sqlite:///{var_dir / 'newsletter.db'}",
                base_url=(get("BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
                mail_url=get("MAIL_URL") or f"maildir://{var_dir / 'maildir'}",
                sender=get("SENDER") or cls.sender,
                site_name=get("SITE_NAME") or cls.site_name,
                inbox_dir=Path(get("INBOX_DIR") or var_dir / "inbox"),
                feeds=tuple(u for u in get("FEEDS").replace(",", " ").split() if u),
                secret_key=get("SECRET_KEY"),
                max_papers=int(get("MAX_PAPERS", "20")),
                send_empty=_flag(get("SEND_EMPTY"), default=False),
                fetch_timeout=float(get("FETCH_TIMEOUT", "30")),
                fetch_max_bytes=int(get("FETCH_MAX_BYTES", "20000000")),
                host=get("HOST") or "127.0.0.1",
                port=int(get("PORT", "8000")),
                delivery_lease_seconds=float(get("DELIVERY_LEASE_SECONDS", "600")),
                send_rate=float(get("SEND_RATE", "0")),
                render_ahead=_flag(get("RENDER_AHEAD"), default=(os.cpu_count() or 1) > 1),
                dkim_selector=get("DKIM_SELECTOR"),
                dkim_domain=get("DKIM_DOMAIN"),
                dkim_key_file=Path(get("DKIM_KEY_FILE")) if get("DKIM_KEY_FILE") else None,
            )
        except ValueError as exc:
            raise ConfigError(f"bad NEWSLETTER_* setting: {exc}") from exc
        if settings.max_papers < 1:
            raise ConfigError("NEWSLETTER_MAX_PAPERS must be at least 1")
        dkim = (settings.dkim_selector, settings.dkim_domain, settings.dkim_key_file)
        if any(dkim) and not all(dkim):
            raise ConfigError(
                "DKIM signing needs NEWSLETTER_DKIM_SELECTOR, NEWSLETTER_DKIM_DOMAIN and "
                "NEWSLETTER_DKIM_KEY_FILE together"
            )
        return settings

    def replace(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id: ``<digest.HOST>`` from the base URL's host."""
        host = urlsplit(self.base_url).hostname or "localhost"
        return f"<digest.{host}>"

    def resolved_secret_key(self) -> str:
        """The secret key; generated once and kept in ``var/secret_key`` when unset,
        so signed tokens survive a restart on the embedded defaults."""
        if self.secret_key:
            return self.secret_key
        path = self.var_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


def _flag(value: str, *, default: bool) -> bool:
    """A yes/no setting: 1/true/yes/on or 0/false/no/off; empty means ``default``."""
    if not value:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {value!r}")


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
