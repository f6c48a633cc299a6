"""The ``newsletter`` command line. Thin: parse options, open a session, call a service.

Every command is documented in README.md; ``tests/test_docs.py`` fails when one is not.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings, get_settings
from newsletter.db import make_engine, make_session_factory, session_scope
from newsletter.errors import NewsletterError


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
    return sorted(
        Path(str(p)) for p in root.iterdir() if p.name.endswith((".txt", ".xml"))
    )


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--inbox", "use_inbox", is_flag=True, help="Ingest every file in the inbox folder.")
@click.option("--samples", is_flag=True, help="Ingest the sample dumps and feeds shipped with the package.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the totals.")
@pass_app
def ingest(app: App, sources: tuple[str, ...], use_inbox: bool, samples: bool, as_json: bool) -> None:
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


def _progress(items: list[str], label: str, quiet: bool) -> Any:
    """A progress bar on a terminal for more than one item; silent otherwise."""
    show = not quiet and len(items) > 1 and sys.stderr.isatty()
    return click.progressbar(items, label=label, file=sys.stderr if show else None) if show else _Plain(items)


class _Plain:
    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __enter__(self) -> list[str]:
        return self.items

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    try:
        cli(standalone_mode=True)
    except NewsletterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
