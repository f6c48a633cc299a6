"""Ingest: parse an input, recognise papers already seen, store the new ones.

The one place where parsers, identity and storage meet. Services take a Session and
never commit; :func:`ingest_inbox` is the exception that owns one transaction per file,
because a file is only moved after its papers are committed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import insert_ignoring_conflicts, session_scope, table_of, utcnow
from newsletter.errors import FetchError, RejectedInput
from newsletter.papers.fetch import Fetched, fetch_url, read_path
from newsletter.papers.identity import keys_for
from newsletter.papers.models import Feed, Ingest, Paper, PaperKey
from newsletter.papers.parse_dump import parse_dump
from newsletter.papers.parse_feed import parse_feed
from newsletter.papers.records import PaperRecord, ParseResult

log = logging.getLogger(__name__)

# IN-lists stay well below SQLite's 32,766 bound-parameter limit and keep PostgreSQL
# plans cheap; 500 keys per query measured flat from 10k to 1M stored papers.
KEY_LOOKUP_CHUNK = 500

# The papers table itself: a Core INSERT of it is a plain executemany (the ORM's bulk
# insert of the same rows is several times slower).
_PAPERS = table_of(Paper)

# Announcements that are not new papers: a new version of an old paper, or a listing
# of an old abstract. One of these for a paper we never saw is skipped, not stored,
# because it is not news to anybody (DESIGN.md: a replacement is never a new paper).
NOT_NEW_ANNOUNCEMENTS = frozenset({"replace", "replace-cross", "absonly"})

# Papers fields a later sighting may fill in when the stored paper lacks them.
_ENRICHABLE = ("abstract", "authors", "url", "arxiv_id", "doi", "categories", "published_at")


@dataclass
class IngestSummary:
    """Counts over one or many inputs; ``--json`` prints exactly these four keys."""

    new: int = 0
    duplicate: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: IngestSummary) -> None:
        self.new += other.new
        self.duplicate += other.duplicate
        self.skipped += other.skipped
        self.errors.extend(other.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "duplicate": self.duplicate,
            "skipped": self.skipped,
            "errors": list(self.errors),
        }


@dataclass
class _Pending:
    """A paper this batch will insert, merged from every record that names it."""

    record: PaperRecord
    values: dict[str, Any]
    keys: list[str]
    paper_id: int | None = None


def detect_kind(data: bytes) -> str:
    """``feed`` for XML feeds, ``dump`` for everything else (the dump parser refuses
    what is not a dump, with its reason)."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<?xml") or b"<rss" in head or b"<feed" in head or b"<rdf:rdf" in head:
        return "feed"
    return "dump"


def parse_input(data: bytes, *, kind: str, file_time: datetime, source: str) -> ParseResult:
    """Run the parser for ``kind``; raises RejectedInput for what cannot be ingested."""
    if kind == "feed":
        return parse_feed(data, url=source)
    return parse_dump(data, file_time=file_time)


def _record_values(rec: PaperRecord) -> dict[str, Any]:
    return {
        "title": rec.title,
        "abstract": rec.abstract,
        "authors": list(rec.authors),
        "url": rec.url,
        "arxiv_id": rec.arxiv_id,
        "doi": rec.doi.lower() if rec.doi else None,
        "categories": list(rec.categories),
        "published_at": rec.published,
        "listed_on": rec.listed_on or (rec.published.date() if rec.published else None),
    }


def _fill_missing(target: dict[str, Any], incoming: dict[str, Any]) -> bool:
    """Copy into ``target`` every enrichable field it lacks; True if anything changed."""
    changed = False
    for name in _ENRICHABLE:
        if not target.get(name) and incoming.get(name):
            target[name] = incoming[name]
            changed = True
    return changed


# Two ingests that look up the same unseen keys at once would both store the paper.
# On PostgreSQL a transaction-scoped advisory lock serialises the store step (held to
# commit); SQLite serialises writers by itself (the second writer fails and its file is
# retried on the next scan).
INGEST_LOCK_ID = 0x6E6C5F696E67  # "nl_ing"


def _serialise_ingests(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": INGEST_LOCK_ID})


def _allocate_paper_ids(session: Session, n: int) -> list[int]:
    """``n`` fresh paper ids, so new papers and their keys go in as two bulk inserts.

    PostgreSQL takes them from the column's sequence (safe beside any other writer).
    SQLite hands out ``max(id) + 1`` onwards: it has one writer at a time, and a writer
    that raced ahead of this transaction's snapshot makes our write fail (busy snapshot
    or primary-key conflict) and roll back, never store two papers under one id.
    """
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('papers', 'id')) FROM generate_series(1, :n)"
            ),
            {"n": n},
        )
        return [int(r[0]) for r in rows]
    start = session.scalar(select(func.coalesce(func.max(Paper.id), 0))) or 0
    return list(range(start + 1, start + 1 + n))


def _lookup_keys(session: Session, keys: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(keys))
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter instead of an IN-list of hundreds: PostgreSQL plans it
        # once, as an index scan, however many keys the batch has.
        rows = session.execute(
            select(PaperKey.key, PaperKey.paper_id).where(
                PaperKey.key == any_(bindparam("keys", unique, type_=ARRAY(String)))
            )
        )
        return {k: pid for k, pid in rows}
    for i in range(0, len(unique), KEY_LOOKUP_CHUNK):
        chunk = unique[i : i + KEY_LOOKUP_CHUNK]
        rows = session.execute(
            select(PaperKey.key, PaperKey.paper_id).where(PaperKey.key.in_(chunk))
        )
        found.update({k: pid for k, pid in rows})
    return found


def _insert_keys_ignoring_conflicts(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert key rows; a key another ingest stored meanwhile keeps its first paper."""
    if rows:
        session.execute(insert_ignoring_conflicts(session, PaperKey, ["key"]), rows)


def store_records(
    session: Session,
    records: Sequence[PaperRecord],
    *,
    now: datetime,
    ingest_id: int | None = None,
) -> IngestSummary:
    """Recognise, merge and store ``records``; returns new/duplicate/skipped counts.

    A record is a duplicate when any of its identity keys is already stored or was
    earlier in the same batch; its strongest known key decides which paper it is.
    A duplicate fills in fields the stored paper lacks (a dump paper gains its arXiv
    id, authors and link from a feed) and adds its keys. A not-new announcement of an
    unknown paper is skipped. Works in a few set-based statements per batch, so the
    cost per paper stays flat however many papers are stored.
    """
    summary = IngestSummary()
    _serialise_ingests(session)
    record_keys = [keys_for(r) for r in records]
    known: dict[str, int] = _lookup_keys(session, (k for ks in record_keys for k in ks))

    pending: list[_Pending] = []
    pending_by_key: dict[str, _Pending] = {}
    existing_updates: dict[int, dict[str, Any]] = {}
    new_key_rows: list[dict[str, Any]] = []

    for rec, keys in zip(records, record_keys, strict=True):
        if not keys:
            summary.skipped += 1
            summary.errors.append(f"skipped a record with an empty title: {rec.abstract[:60]!r}")
            continue
        values = _record_values(rec)
        stored_id = next((known[k] for k in keys if k in known), None)
        batch_twin = next((pending_by_key[k] for k in keys if k in pending_by_key), None)
        if stored_id is not None:
            summary.duplicate += 1
            _fill_missing(existing_updates.setdefault(stored_id, {}), values)
            for k in keys:
                if k not in known:
                    known[k] = stored_id
                    new_key_rows.append({"key": k, "paper_id": stored_id})
        elif batch_twin is not None:
            summary.duplicate += 1
            _fill_missing(batch_twin.values, values)
            for k in keys:
                if k not in pending_by_key:
                    pending_by_key[k] = batch_twin
                    batch_twin.keys.append(k)
        elif rec.announce_type in NOT_NEW_ANNOUNCEMENTS:
            summary.skipped += 1
        else:
            item = _Pending(rec, values, list(keys))
            pending.append(item)
            for k in keys:
                pending_by_key[k] = item

    if pending:
        ids = _allocate_paper_ids(session, len(pending))
        rows = []
        for item, pid in zip(pending, ids, strict=True):
            item.paper_id = pid
            rows.append(
                item.values | {"id": pid, "first_seen_at": now, "first_ingest_id": ingest_id}
            )
            new_key_rows.extend({"key": k, "paper_id": pid} for k in item.keys)
        # Ids are known beforehand, so this is a plain executemany that SQLAlchemy
        # batches into multi-row INSERTs (insertmanyvalues). `RETURNING id` in
        # parameter order would fall back to one statement per row on both dialects.
        session.execute(insert(_PAPERS), rows)
        summary.new = len(pending)

    _insert_keys_ignoring_conflicts(session, new_key_rows)
    _enrich_existing(session, existing_updates)
    return summary


def _enrich_existing(session: Session, updates: dict[int, dict[str, Any]]) -> None:
    """Fill fields stored papers lack from what later sightings brought."""
    if not updates:
        return
    ids = list(updates)
    changes: list[dict[str, Any]] = []
    cols = [getattr(Paper, name) for name in _ENRICHABLE]
    for i in range(0, len(ids), KEY_LOOKUP_CHUNK):
        chunk = ids[i : i + KEY_LOOKUP_CHUNK]
        for row in session.execute(select(Paper.id, *cols).where(Paper.id.in_(chunk))):
            current = dict(zip(_ENRICHABLE, row[1:], strict=True))
            if _fill_missing(current, updates[row[0]]):
                changes.append({"id": row[0], **current})
    if changes:
        session.execute(update(Paper), changes)


def ingest_bytes(
    session: Session,
    data: bytes,
    *,
    source: str,
    now: datetime | None = None,
    file_time: datetime | None = None,
    kind: str | None = None,
) -> IngestSummary:
    """Parse ``data`` and store its papers, recording the ingest.

    Raises RejectedInput (after recording a ``rejected`` ingest row in the session)
    when the input is not a dump or feed at all.
    """
    now = now or utcnow()
    kind = kind or detect_kind(data)
    ingest = Ingest(
        source=source,
        kind=kind,
        status="ok",
        content_sha256=hashlib.sha256(data).hexdigest(),
        started_at=now,
        new_count=0,
        duplicate_count=0,
        skipped_count=0,
        errors=[],
    )
    session.add(ingest)
    try:
        parsed = parse_input(data, kind=kind, file_time=file_time or now, source=source)
    except RejectedInput as exc:
        ingest.status = "rejected"
        ingest.errors = [exc.reason]
        ingest.finished_at = utcnow()
        session.flush()
        raise
    session.flush()
    summary = store_records(session, parsed.records, now=now, ingest_id=ingest.id)
    summary.skipped += parsed.skipped
    summary.errors = [f"{source}: {w}" for w in [*parsed.warnings, *summary.errors]]
    ingest.new_count = summary.new
    ingest.duplicate_count = summary.duplicate
    ingest.skipped_count = summary.skipped
    ingest.errors = summary.errors
    ingest.status = "partial" if summary.errors else "ok"
    ingest.finished_at = utcnow()
    return summary


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def ingest_source(
    session: Session,
    source: str,
    *,
    timeout: float = 30.0,
    max_bytes: int = 20_000_000,
    now: datetime | None = None,
) -> IngestSummary:
    """Ingest one path or URL. A URL is fetched conditionally (ETag/Last-Modified
    kept per feed in ``feeds``); a 304 ingests nothing. Errors are reported in the
    summary, never raised: one bad input does not stop the others."""
    now = now or utcnow()
    summary = IngestSummary()
    try:
        if _is_url(source):
            feed = session.scalar(select(Feed).where(Feed.url == source))
            if feed is None:
                feed = Feed(url=source)
                session.add(feed)
            fetched = fetch_url(
                source,
                etag=feed.etag,
                last_modified=feed.last_modified,
                timeout=timeout,
                max_bytes=max_bytes,
            )
            feed.last_fetched_at = now
            if fetched.data is None:
                feed.last_status = "not_modified"
                feed.last_error = None
                return summary
            feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
            feed.last_status = str(fetched.status or "ok")
            feed.last_error = None
        else:
            fetched = read_path(Path(source), max_bytes=max_bytes)
        summary.add(_ingest_fetched(session, fetched, now=now))
    except (FetchError, RejectedInput) as exc:
        summary.errors.append(f"{source}: {exc}")
        if _is_url(source):
            feed = session.scalar(select(Feed).where(Feed.url == source))
            if feed is not None:
                feed.last_status = "error"
                feed.last_error = str(exc)
    return summary


def _ingest_fetched(session: Session, fetched: Fetched, *, now: datetime) -> IngestSummary:
    assert fetched.data is not None
    file_time = now
    if not _is_url(fetched.source):
        file_time = datetime.fromtimestamp(Path(fetched.source).stat().st_mtime, UTC)
    return ingest_bytes(session, fetched.data, source=fetched.source, now=now, file_time=file_time)


def _move_beside(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` without overwriting anything already there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    shutil.move(str(path), target)
    return target


def inbox_files(inbox: Path) -> list[Path]:
    """Files waiting in the inbox, oldest first; hidden and partial files are left
    alone (a writer may still be copying them)."""
    if not inbox.is_dir():
        return []
    files = [
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".part", ".tmp"))
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def ingest_inbox(
    factory: sessionmaker[Session],
    inbox: Path,
    *,
    max_bytes: int = 20_000_000,
    now: Callable[[], datetime] = utcnow,
    on_file: Callable[[Path], None] | None = None,
) -> IngestSummary:
    """Ingest every file in ``inbox``, one transaction each.

    An ingested file moves to ``inbox/processed/``; a refused one to
    ``inbox/failed/`` with ``<name>.reason.txt`` beside it. Nothing is deleted. The
    move happens after the commit: a crash in between re-ingests the file next time,
    which changes nothing because every paper in it is then a duplicate.
    """
    total = IngestSummary()
    for path in inbox_files(inbox):
        if on_file:
            on_file(path)
        reason: str | None = None
        try:
            fetched = read_path(path, max_bytes=max_bytes)
        except FetchError as exc:
            reason = str(exc)
        else:
            with session_scope(factory) as session:
                try:
                    total.add(_ingest_fetched(session, fetched, now=now()))
                except RejectedInput as exc:
                    # The rejected ingest row is in the session: commit it as the record.
                    reason = exc.reason
        if reason is None:
            _move_beside(path, inbox / "processed")
            continue
        total.errors.append(f"{path.name}: {reason}")
        moved = _move_beside(path, inbox / "failed")
        moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
        log.warning("ingest refused %s: %s", path.name, reason)
    return total
