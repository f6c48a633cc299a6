"""The ``newsletter`` command line. Thin: parse options, open a session, call a service.

Every command is documented in README.md; ``tests/test_docs.py`` fails when one is not.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings, get_settings
from newsletter.db import make_engine, make_session_factory, session_scope, utcnow
from newsletter.errors import NewsletterError, NotFound


@dataclass
class App:
    """What every command needs: settings, and an engine upgraded to the schema head."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        from newsletter import schema

        engine = make_engine(self.settings.database_url)
        schema.upgrade(engine)
        return engine

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)


pass_app = click.make_pass_decorator(App)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=None, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Research-paper digest: ingest papers, match profiles, mail each paper once.

    Settings come from NEWSLETTER_* environment variables (see README.md); the
    defaults use SQLite and a Maildir under ./var.
    """
    ctx.obj = App(get_settings())


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create the database or upgrade it to the latest schema.

    Example: NEWSLETTER_DATABASE_URL=postgresql://localhost/digest newsletter init
    """
    from newsletter import schema

    engine = make_engine(app.settings.database_url)
    applied = schema.upgrade(engine)
    rev = schema.current_revision(engine)
    click.echo(f"database at revision {rev}" + (" (upgraded)" if applied else " (up to date)"))


def sample_paths() -> list[Path]:
    """The sample dumps and feeds shipped with the package."""
    root = files("newsletter.samples")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith((".txt", ".xml")))


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--inbox", "use_inbox", is_flag=True, help="Ingest every file in the inbox folder.")
@click.option(
    "--samples", is_flag=True, help="Ingest the sample dumps and feeds shipped with the package."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the totals.")
@pass_app
def ingest(
    app: App, sources: tuple[str, ...], use_inbox: bool, samples: bool, as_json: bool
) -> None:
    """Ingest daily-paper dumps and feeds from files or URLs.

    Papers seen before (same arXiv id, DOI or title) are counted as duplicates and
    never mailed again. With --inbox, files in the inbox folder (NEWSLETTER_INBOX_DIR,
    default var/inbox) move to processed/ or, refused, to failed/ with a reason file.

    Example: newsletter ingest var/inbox/2026-07-30.txt https://rss.arxiv.org/rss/cs.LG --json
    """
    from newsletter.papers.ingest import IngestSummary, ingest_inbox, ingest_source

    paths = [*sources, *(str(p) for p in sample_paths())] if samples else list(sources)
    if not paths and not use_inbox:
        raise click.UsageError("give at least one PATH or URL, --inbox or --samples")
    total = IngestSummary()
    s = app.settings
    with _progress(paths, "ingesting", as_json) as bar:
        for source in bar:
            with session_scope(app.factory) as session:
                total.add(
                    ingest_source(
                        session, source, timeout=s.fetch_timeout, max_bytes=s.fetch_max_bytes
                    )
                )
    if use_inbox:
        total.add(ingest_inbox(app.factory, s.inbox_dir, max_bytes=s.fetch_max_bytes))
    if as_json:
        _echo_json(total.as_dict())
    else:
        click.echo(f"{total.new} new, {total.duplicate} duplicate, {total.skipped} skipped")
        for err in total.errors:
            click.echo(f"  ! {err}", err=True)
    if total.errors and total.new == 0 and total.duplicate == 0:
        sys.exit(1)


def _parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not a date like 2026-07-30", param_hint=option
        ) from exc


@cli.command()
@click.argument("email")
@click.option(
    "--profile",
    "-p",
    required=True,
    help="Keyword profile, e.g. 'diffusion, \"graph neural network\" -survey'.",
)
@click.option(
    "--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True
)
@click.option(
    "--hour", type=click.IntRange(0, 23), default=7, show_default=True, help="Local delivery hour."
)
@click.option(
    "--tz", "timezone", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin."
)
@click.option(
    "--weekday",
    type=click.IntRange(0, 6),
    default=0,
    show_default=True,
    help="Weekly digests: 0 = Monday.",
)
@click.option(
    "--confirmed", is_flag=True, help="Activate at once instead of mailing a confirmation link."
)
@pass_app
def subscribe(
    app: App,
    email: str,
    profile: str,
    frequency: str,
    hour: int,
    timezone: str,
    weekday: int,
    confirmed: bool,
) -> None:
    """Subscribe EMAIL with a keyword profile (the operator's way in).

    Without --confirmed the address stays pending and a confirmation email is sent.
    With --confirmed an existing subscriber's profile and schedule are replaced.

    Example: newsletter subscribe ada@example.org --profile '"state space model", mamba' --confirmed
    """
    from newsletter.subscribers import service
    from newsletter.subscribers.emails import send_confirmation

    prefs = service.Preferences(profile, frequency, hour, timezone, weekday)
    with session_scope(app.factory) as session:
        result = service.subscribe(
            session,
            email,
            prefs,
            secret_key=app.settings.resolved_secret_key(),
            now=utcnow(),
            confirmed=confirmed,
        )
        address, status = result.subscriber.email, result.subscriber.status
    if result.confirm_token:
        send_confirmation(app.settings, address, profile, result.confirm_token)
        click.echo(f"{address}: {status}, confirmation email sent")
    else:
        click.echo(f"{address}: {status}")


@cli.command()
@click.argument("email")
@pass_app
def unsubscribe(app: App, email: str) -> None:
    """Unsubscribe EMAIL: no further digests.

    Example: newsletter unsubscribe ada@example.org
    """
    from newsletter.subscribers import service

    with session_scope(app.factory) as session:
        sub = service.by_email(session, email)
        if sub is None:
            raise NotFound(f"no subscriber {email}")
        changed = service.unsubscribe(sub, now=utcnow())
    click.echo(f"{sub.email}: unsubscribed" + ("" if changed else " (already)"))


@cli.command()
@click.argument("query")
@click.option("--since", help="Only papers first seen on or after this date (YYYY-MM-DD).")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of matches.")
@pass_app
def match(app: App, query: str, since: str | None, limit: int, as_json: bool) -> None:
    """Try a profile QUERY against stored papers, best first, with why each matched.

    A bad profile exits with status 2 and says where and what the problem is.

    Example: newsletter match 'ti:diffusion, "point cloud" -survey' --since 2026-07-01 --json
    """
    from newsletter.matching.service import match_stored

    day = _parse_day(since, "--since")
    start = datetime.combine(day, time(0), tzinfo=UTC) if day else None
    with app.factory() as session:
        found = match_stored(session, query, since=start, limit=limit)
        rows = [m.as_dict() for m in found]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no paper matches")
    for r in rows:
        click.echo(f"{r['score']:7.2f}  {r['title']}")
        click.echo(f"         matched: {', '.join(r['matched'])}")


@cli.command()
@click.argument("email")
@click.option("--html", "fmt", flag_value="html", help="Print the HTML part.")
@click.option(
    "--text", "fmt", flag_value="text", default=True, help="Print the text part (default)."
)
@click.option("--eml", "fmt", flag_value="eml", help="Print the whole message (RFC 5322).")
@pass_app
def preview(app: App, email: str, fmt: str) -> None:
    """Show EMAIL's next digest without sending or recording anything.

    Example: newsletter preview ada@example.org --html > digest.html
    """
    from newsletter.digest.service import preview as build_preview

    with app.factory() as session:
        msg = build_preview(session, app.settings, email, now=utcnow())
        session.rollback()
    if fmt == "eml":
        click.echo(msg.as_string())
        return
    body = msg.get_body(preferencelist=(fmt,))
    assert body is not None
    click.echo(body.get_content())


@cli.command()
@click.option(
    "--now", "force", is_flag=True, help="Plan every subscriber now, whatever their local hour."
)
@click.option(
    "--date", "day", help="Plan this day's period for everybody (YYYY-MM-DD; backfills, tests)."
)
@click.option("--dry-run", is_flag=True, help="Say what would be planned; write and send nothing.")
@click.option("--to", "to", help="Only this subscriber.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"planned","sent","skipped","failed"}.'
)
@pass_app
def digest(
    app: App, force: bool, day: str | None, dry_run: bool, to: str | None, as_json: bool
) -> None:
    """Plan the digests that are due and send them (and any pending retries).

    Each subscriber gets at most one digest per period (day or ISO week); running
    this twice sends nothing the second time.

    Example: newsletter digest --date 2026-07-30 --json
    """
    from newsletter.digest.service import run_digest

    bar = _DigestBar(enabled=not as_json and not dry_run and sys.stderr.isatty())
    try:
        summary = run_digest(
            app.factory,
            app.settings,
            day=_parse_day(day, "--date"),
            force=force,
            to=to,
            dry_run=dry_run,
            progress=bar.update if bar.enabled else None,
        )
    finally:
        bar.close()
    if as_json:
        _echo_json(summary.as_dict())
    else:
        click.echo(
            f"{summary.planned} planned, {summary.sent} sent, {summary.skipped} skipped, "
            f"{summary.failed} failed" + (" (dry run)" if dry_run else "")
        )
        for err in summary.errors:
            click.echo(f"  ! {err}", err=True)


@cli.command()
@pass_app
def status(app: App) -> None:
    """Print papers, subscribers and deliveries by state, and each job's last run.

    Example: newsletter status
    """
    from newsletter.status import counts, job_runs

    with app.factory() as session:
        data = counts(session) | {"jobs": job_runs(session)}
    _echo_json(data)


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@cli.command()
@pass_app
def serve(app: App) -> None:
    """Run the web app, the scheduler and a delivery worker in one process.

    Listens on NEWSLETTER_HOST:NEWSLETTER_PORT (127.0.0.1:8000). Drop dumps into the
    inbox folder (var/inbox) and they are ingested within a minute.

    Example: newsletter serve
    """
    from newsletter import serve as roles

    _logging()
    app.settings.inbox_dir.mkdir(parents=True, exist_ok=True)
    roles.serve(app.settings, app.factory)


@cli.command()
@pass_app
def web(app: App) -> None:
    """Run only the web app (behind a WSGI server; use several for scale-out).

    Example: NEWSLETTER_PORT=8080 newsletter web
    """
    from newsletter import serve as roles

    _logging()
    roles.serve(app.settings, app.factory, scheduler=False, worker=False)


@cli.command()
@pass_app
def scheduler(app: App) -> None:
    """Run only the scheduler: inbox, feeds, planning, pruning (run exactly one).

    Example: newsletter scheduler
    """
    from newsletter import serve as roles

    _logging()
    roles.run_scheduler(app.settings, app.factory)


@cli.command()
@click.option("--until-idle", is_flag=True, help="Exit once nothing is due instead of waiting.")
@pass_app
def worker(app: App, until_idle: bool) -> None:
    """Run only a delivery worker, until stopped (any number on PostgreSQL).

    Example: newsletter worker
    """
    from newsletter import serve as roles

    _logging()
    roles.run_worker(app.settings, app.factory, until_idle=until_idle)


class _DigestBar:
    """A progress bar over the messages a digest run sends (terminal only)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def update(self, n: int) -> None:
        if n < 0:  # the first call announces how many were planned
            self.bar = click.progressbar(length=-n, label="sending", file=sys.stderr)
            self.bar.__enter__()
        elif self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _progress(items: list[str], label: str, quiet: bool) -> Any:
    """A progress bar on a terminal for more than one item; silent otherwise."""
    show = not quiet and len(items) > 1 and sys.stderr.isatty()
    return (
        click.progressbar(items, label=label, file=sys.stderr if show else None)
        if show
        else contextlib.nullcontext(items)
    )


def main() -> None:
    try:
        cli(standalone_mode=True)
    except NewsletterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
