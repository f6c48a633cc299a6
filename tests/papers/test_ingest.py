"""Ingest end to end: parse, recognise, store, record — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import session_scope
from newsletter.papers.ingest import detect_kind, ingest_bytes, ingest_inbox, store_records
from newsletter.papers.models import Ingest, Paper, PaperKey
from newsletter.papers.records import PaperRecord
from tests.conftest import SAMPLES

DUMP_000 = SAMPLES / "000_9c40651dd6d15728.txt"
DUMP_001 = SAMPLES / "001_b52638599966a208.txt"
T0 = datetime(2026, 7, 30, 8, 0, tzinfo=UTC)


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_samples_new_then_duplicates(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        first = ingest_bytes(s, DUMP_000.read_bytes(), source="000", now=T0)
    assert (first.new, first.duplicate) == (56, 0)
    with session_scope(factory) as s:
        second = ingest_bytes(s, DUMP_001.read_bytes(), source="001", now=T0 + timedelta(days=1))
    assert (second.new, second.duplicate) == (55, 4)
    for name, path in [("000", DUMP_000), ("001", DUMP_001)]:
        with session_scope(factory) as s:
            again = ingest_bytes(s, path.read_bytes(), source=name, now=T0 + timedelta(days=2))
        assert again.new == 0
    with factory() as s:
        assert _count(s, Paper) == 111
        # first_seen_at is set once: repeats on later days did not move it.
        days = s.scalars(select(Paper.first_seen_at).distinct()).all()
        assert sorted(days) == [T0, T0 + timedelta(days=1)]
        ingests = s.scalars(select(Ingest).order_by(Ingest.id)).all()
        assert [(i.new_count, i.duplicate_count) for i in ingests] == [
            (56, 0),
            (55, 4),
            (0, 56),
            (0, 59),
        ]
        assert ingests[0].content_sha256 == ingests[2].content_sha256
        assert all(i.status == "ok" for i in ingests)


def test_crlf_bom_copy_is_the_same_papers(factory: sessionmaker[Session]) -> None:
    raw = DUMP_000.read_bytes()
    crlf = b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n")
    with session_scope(factory) as s:
        assert ingest_bytes(s, raw, source="a", now=T0).new == 56
    with session_scope(factory) as s:
        summary = ingest_bytes(s, crlf, source="b", now=T0)
    assert (summary.new, summary.duplicate) == (0, 56)


def test_truncated_dump_keeps_complete_records_and_reports_broken_one(
    factory: sessionmaker[Session],
) -> None:
    text = DUMP_000.read_text()
    cut = text[: text.rindex("\n\n") + 200]  # a little way into the last abstract
    with session_scope(factory) as s:
        summary = ingest_bytes(s, cut.encode(), source="cut.txt", now=T0)
    assert summary.new == 55
    assert summary.skipped == 1
    assert len(summary.errors) == 1 and "cut.txt" in summary.errors[0]
    with factory() as s:
        ingest = s.scalars(select(Ingest)).one()
        assert ingest.status == "partial" and ingest.skipped_count == 1


def _arxiv(
    title: str, arxiv_id: str, version: int = 1, announce: str | None = "new"
) -> PaperRecord:
    return PaperRecord(
        title=title,
        abstract="An abstract.",
        authors=("Ada Lovelace", "Alan Turing"),
        url=f"https://arxiv.org/abs/{arxiv_id}",
        arxiv_id=arxiv_id,
        version=version,
        categories=("cs.LG",),
        announce_type=announce,
    )


def test_feed_item_matching_dump_title_is_duplicate_and_fills_in_id(
    factory: sessionmaker[Session],
) -> None:
    with session_scope(factory) as s:
        ingest_bytes(s, DUMP_000.read_bytes(), source="000", now=T0)
    with session_scope(factory) as s:
        # Different case and punctuation, same title.
        summary = store_records(s, [_arxiv("DYNAMIC POINT FIELDS.", "2304.02626")], now=T0)
    assert (summary.new, summary.duplicate) == (0, 1)
    with factory() as s:
        paper = s.scalars(select(Paper).where(Paper.title == "Dynamic Point Fields")).one()
        assert paper.arxiv_id == "2304.02626"
        assert paper.authors == ["Ada Lovelace", "Alan Turing"]
        assert paper.url == "https://arxiv.org/abs/2304.02626"
        assert paper.abstract.startswith("Recent years")  # kept, not overwritten
        assert paper.first_seen_at == T0
        keys = set(s.scalars(select(PaperKey.key).where(PaperKey.paper_id == paper.id)))
        assert "arxiv:2304.02626" in keys and any(k.startswith("title:") for k in keys)


def test_versions_and_replacements_are_duplicates(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        assert store_records(s, [_arxiv("A Paper About Things", "2401.01234")], now=T0).new == 1
    with session_scope(factory) as s:
        summary = store_records(
            s,
            [
                _arxiv("A Paper About Things (revised title)", "2401.01234", version=2),
                _arxiv("A Paper About Things", "2401.01234", 3, announce="replace"),
                _arxiv("Old paper never seen", "2301.00001", 4, announce="replace"),
                _arxiv("Old abstract never seen", "2301.00002", 1, announce="absonly"),
                _arxiv("Cross-listed new paper", "2401.05555", 1, announce="cross"),
            ],
            now=T0,
        )
    assert (summary.new, summary.duplicate, summary.skipped) == (1, 2, 2)


def test_same_paper_twice_in_one_batch(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        summary = store_records(
            s,
            [PaperRecord(title="Twin Title Here"), _arxiv("twin title here", "2402.00001")],
            now=T0,
        )
    assert (summary.new, summary.duplicate) == (1, 1)
    with factory() as s:
        paper = s.scalars(select(Paper)).one()
        assert paper.arxiv_id == "2402.00001"  # the twin's id merged into the pending paper
        assert _count(s, PaperKey) == 2


def test_bulk_ids_and_keys_interleave_with_other_writers(factory: sessionmaker[Session]) -> None:
    # store_records allocates ids itself (sequence on PostgreSQL, max + 1 on SQLite);
    # a paper added through the ORM in between must neither collide nor be pointed at
    # by the wrong keys.
    with session_scope(factory) as s:
        store_records(s, [PaperRecord(title=f"Batch one paper {i}") for i in range(3)], now=T0)
    with session_scope(factory) as s:
        s.add(
            Paper(title="Added by hand", abstract="", authors=[], categories=[], first_seen_at=T0)
        )
    with session_scope(factory) as s:
        summary = store_records(
            s, [PaperRecord(title=f"Batch two paper {i}") for i in range(3)], now=T0
        )
    assert summary.new == 3
    with factory() as s:
        titles: dict[int, str] = {i: t for i, t in s.execute(select(Paper.id, Paper.title))}
        assert len(titles) == 7
        keyed = s.execute(select(PaperKey.paper_id)).scalars().all()
        # Every key points at the paper whose title it fingerprints.
        assert sorted(keyed) == sorted(i for i, t in titles.items() if t != "Added by hand")
        assert {titles[i] for i in keyed} == {
            *(f"Batch one paper {i}" for i in range(3)),
            *(f"Batch two paper {i}" for i in range(3)),
        }


def test_detect_kind() -> None:
    assert detect_kind(b'<?xml version="1.0"?><feed>') == "feed"
    assert detect_kind(b"\xef\xbb\xbf  <rss version='2.0'>") == "feed"
    assert detect_kind(DUMP_000.read_bytes()) == "dump"
    assert detect_kind(b"<!DOCTYPE html><html>") == "dump"  # the dump parser refuses it


def test_inbox_moves_files_and_keeps_rejects_with_reason(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_bytes(DUMP_000.read_bytes())
    (inbox / "page.html").write_text("<!DOCTYPE html><html><body><p>hi</p></body></html>")
    (inbox / "blob.bin").write_bytes(bytes(range(256)) * 8)
    (inbox / "empty.txt").write_bytes(b"")
    (inbox / ".hidden").write_text("not mine")
    summary = ingest_inbox(factory, inbox, now=lambda: T0)
    assert summary.new == 56
    assert len(summary.errors) == 3
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.txt"]
    failed = sorted(p.name for p in (inbox / "failed").iterdir())
    assert failed == [
        "blob.bin",
        "blob.bin.reason.txt",
        "empty.txt",
        "empty.txt.reason.txt",
        "page.html",
        "page.html.reason.txt",
    ]
    assert "HTML" in (inbox / "failed" / "page.html.reason.txt").read_text()
    assert (inbox / "failed" / "blob.bin").read_bytes() == bytes(range(256)) * 8  # kept intact
    assert (inbox / ".hidden").exists()
    with factory() as s:
        statuses = sorted(s.scalars(select(Ingest.status)))
    assert statuses == ["ok", "rejected", "rejected", "rejected"]

    # The same file dropped again: processed again, nothing new, nothing overwritten.
    (inbox / "a.txt").write_bytes(DUMP_000.read_bytes())
    again = ingest_inbox(factory, inbox, now=lambda: T0)
    assert (again.new, again.duplicate) == (0, 56)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.1.txt", "a.txt"]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_ingest_json_across_process_restarts(db_url: str, tmp_path: Path) -> None:
    env = {"NEWSLETTER_DATABASE_URL": db_url, "NEWSLETTER_VAR_DIR": str(tmp_path / "var")}
    runs = [
        _cli(env, "ingest", str(DUMP_000), "--json"),
        _cli(env, "ingest", str(DUMP_001), "--json"),
        _cli(env, "ingest", str(DUMP_000), str(DUMP_001), "--json"),
    ]
    out = [json.loads(r.stdout) for r in runs]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert out[0] == {"new": 56, "duplicate": 0, "skipped": 0, "errors": []}
    assert out[1] == {"new": 55, "duplicate": 4, "skipped": 0, "errors": []}
    assert out[2] == {"new": 0, "duplicate": 115, "skipped": 0, "errors": []}


def test_cli_reports_refused_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body>nope</body></html>")
    env = {
        "NEWSLETTER_VAR_DIR": str(tmp_path / "var"),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    r = _cli(env, "ingest", str(bad), "--json")
    assert r.returncode == 1
    body = json.loads(r.stdout)
    assert body["new"] == 0 and len(body["errors"]) == 1 and "HTML" in body["errors"][0]
    assert bad.exists()  # a path given on the command line is never moved or deleted


@pytest.mark.parametrize("source", ["missing.txt", "ftp://example.invalid/feed"])
def test_cli_unreadable_source(tmp_path: Path, source: str) -> None:
    env = {
        "NEWSLETTER_VAR_DIR": str(tmp_path / "var"),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    r = _cli(env, "ingest", str(tmp_path / source) if "://" not in source else source, "--json")
    assert r.returncode == 1
    assert len(json.loads(r.stdout)["errors"]) == 1
