"""Photograph every page of the web app with headless chromium, at 1200 and 375 px.

    python scripts/screenshot_web.py [--out screenshots] [--chromium /usr/bin/chromium]

Builds a throwaway site in a temporary folder (SQLite, the two sample dumps ingested,
a few subscribers, one digest sent to an in-memory transport), serves it on a free
loopback port and drives chromium through it with Playwright (the Python package; its
own browser download is never used — Debian's chromium is). Writes
``<out>/web-<page>-<width>.png`` (full-page) for:

subscribe, subscribe-live (profile typed: live check and preview), subscribe-error
(a profile that does not parse), subscribe-done, confirm, confirmed, preferences,
preferences-saved, unsubscribe, unsubscribed, deleted, link-invalid, csrf (a form
sent without its token), digest (the web copy).

``screenshots/`` is gitignored. Needs ``pip install playwright``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from newsletter.config import Settings
from newsletter.db import make_engine, make_session_factory, session_scope, utcnow
from newsletter.digest.send import MemoryTransport
from newsletter.digest.service import run_digest
from newsletter.papers.ingest import ingest_bytes
from newsletter.schema import upgrade
from newsletter.subscribers import service
from newsletter.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "newsletter" / "samples"
WIDTHS = (1200, 375)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROFILE = '"optimal transport", equivari*, gaussian splatting -survey'
BAD_PROFILE = '"optimal transport, equivari*'


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


class _LateApp:
    """A WSGI app set after the server is up (the base URL needs the port)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


def build_site(tmp: Path, base_url: str) -> tuple[Any, dict[str, Any]]:
    """The app and the tokens the screenshots need."""
    settings = Settings(
        var_dir=tmp,
        database_url=f"sqlite:///{tmp / 'site.db'}",
        base_url=base_url,
        mail_url="memory://",
        secret_key="screenshot-secret",
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    now = utcnow()
    key = settings.resolved_secret_key()
    with session_scope(factory) as session:
        for dump in sorted(SAMPLES.glob("*.txt")):
            ingest_bytes(session, dump.read_bytes(), source=dump.name, now=now - timedelta(hours=2))
    prefs = service.Preferences(PROFILE, "daily", 7, "Europe/Berlin")
    tokens: dict[str, Any] = {}
    with session_scope(factory) as session:
        reader = service.subscribe(
            session, "mira.okafor@example.org", prefs, secret_key=key, now=now, confirmed=True
        ).subscriber
        session.flush()
        tokens["reader"] = service.manage_token_for(reader, key)
        for width in WIDTHS:
            pending = service.subscribe(
                session, f"new-{width}@example.org", prefs, secret_key=key, now=now
            )
            leaving = service.subscribe(
                session,
                f"leaving-{width}@example.org",
                prefs,
                secret_key=key,
                now=now,
                confirmed=True,
            ).subscriber
            deleting = service.subscribe(
                session,
                f"deleting-{width}@example.org",
                prefs,
                secret_key=key,
                now=now,
                confirmed=True,
            ).subscriber
            tokens[width] = {
                "confirm": pending.confirm_token,
                "leave": service.manage_token_for(leaving, key),
                "delete": service.manage_token_for(deleting, key),
            }
    run_digest(factory, settings, now=now, force=True, transport=MemoryTransport())
    from sqlalchemy import select

    from newsletter.digest.models import Delivery

    with session_scope(factory) as session:
        tokens["web"] = session.scalar(
            select(Delivery.web_token).where(Delivery.web_token.is_not(None)).limit(1)
        )
    app = create_app(settings, factory=factory, rate_limits=None, transport=MemoryTransport)
    return app, tokens


def shoot(base: str, tokens: dict[str, Any], out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for width in WIDTHS:
            context = browser.new_context(
                viewport={"width": width, "height": 900},
                device_scale_factor=1,
                timezone_id="Europe/Berlin",
                locale="en-GB",
            )
            page = context.new_page()
            mine = tokens[width]

            def snap(name: str, _page: Any = page, _width: int = width) -> None:
                path = out / f"web-{name}-{_width}.png"
                _page.screenshot(path=str(path), full_page=True)
                written.append(path)

            page.goto(f"{base}/")
            snap("subscribe")
            page.fill("#profile", BAD_PROFILE)
            page.wait_for_selector(".status.bad .where")
            snap("subscribe-error")
            page.fill("#email", f"reader-{width}@example.org")
            page.fill("#profile", PROFILE)
            page.wait_for_selector("#preview .matches li")
            snap("subscribe-live")
            page.click("button[type=submit]:has-text('Subscribe')")
            page.wait_for_selector("h1:has-text('Check your inbox')")
            snap("subscribe-done")

            page.goto(f"{base}/confirm/{mine['confirm']}")
            snap("confirm")
            page.click("button:has-text('Confirm subscription')")
            page.wait_for_selector("h1:has-text('You are subscribed')")
            snap("confirmed")

            page.goto(f"{base}/p/{tokens['reader']}")
            page.wait_for_selector("#preview .matches li")
            snap("preferences")
            page.select_option("#hour", "8")
            page.click("button:has-text('Save changes')")
            page.wait_for_selector(".notice.success")
            page.wait_for_selector("#preview .matches li")
            snap("preferences-saved")

            page.goto(f"{base}/u/{mine['leave']}")
            snap("unsubscribe")
            page.click("button:has-text('Unsubscribe')")
            page.wait_for_selector("h1:has-text('You are unsubscribed')")
            snap("unsubscribed")

            page.goto(f"{base}/p/{mine['delete']}")
            page.check("input[name=confirm]")
            page.click("button:has-text('Delete my data')")
            page.wait_for_selector("h1:has-text('Everything is deleted')")
            snap("deleted")

            page.goto(f"{base}/u/not-a-real-token")
            snap("link-invalid")

            page.goto(f"{base}/")
            context.clear_cookies()
            page.fill("#email", "late@example.org")
            page.fill("#profile", "diffusion")
            page.click("button[type=submit]:has-text('Subscribe')")
            page.wait_for_selector("h1:has-text('This form has expired')")
            snap("csrf")

            page.goto(f"{base}/d/{tokens['web']}")
            snap("digest")
            context.close()
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    late = _LateApp()
    with tempfile.TemporaryDirectory(prefix="web-shots-") as tmp, serving(late) as base:
        late.app, tokens = build_site(Path(tmp), base)
        for path in shoot(base, tokens, args.out, args.chromium):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
