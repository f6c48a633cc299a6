"""Ingest speed: parse rate, and parse + dedup + store rate into a database that
already holds 10k and 1M papers, on SQLite and PostgreSQL, next to a naive
one-row-at-a-time ORM baseline measured in the same run.

Targets (issue 2): ≥ 20,000 papers/s parsed, ≥ 5,000 papers/s stored, the per-paper
cost flat from 10k to 1M stored papers.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine, select

from benchmarks.common import Row, format_table, stopwatch
from newsletter import schema
from newsletter.db import make_engine, make_session_factory
from newsletter.papers.identity import keys_for
from newsletter.papers.ingest import store_records
from newsletter.papers.models import Paper, PaperKey
from newsletter.papers.parse_dump import parse_dump
from newsletter.papers.records import PaperRecord

SAMPLES = Path(__file__).resolve().parents[1] / "newsletter" / "samples"
PG_ADMIN = os.environ.get(
    "NEWSLETTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 7, 30, tzinfo=UTC)


def _sample_bytes() -> bytes:
    return (SAMPLES / "000_9c40651dd6d15728.txt").read_bytes()


def bench_parse(seconds: float = 1.0) -> Row:
    """Parse the 56-paper sample dump over and over for about ``seconds``."""
    data = _sample_bytes()
    per_file = len(parse_dump(data, file_time=NOW).records)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            parse_dump(data, file_time=NOW)
        n += 20 * per_file
    return Row(
        "parse dump", n / (time.perf_counter() - start), "papers/s", target="≥ 20,000 papers/s"
    )


def synthetic_records(n: int, seed: int, prefix: str) -> list[PaperRecord]:
    """Realistic records: sample abstracts, unique titles, half with arXiv ids."""
    base = parse_dump(_sample_bytes(), file_time=NOW).records
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        b = base[i % len(base)]
        arxiv = f"{prefix}{i:05d}" if i % 2 == 0 else None
        out.append(
            PaperRecord(
                title=f"{b.title} {prefix} {i} {rnd.randrange(10**9)}",
                abstract=b.abstract,
                arxiv_id=f"26{arxiv[:2]}.{arxiv[2:]}" if arxiv else None,
                listed_on=NOW.date(),
            )
        )
    return out


def _prefill(engine: Engine, total: int) -> None:
    """Fill ``total`` papers with their keys using plain executemany (fast setup)."""
    chunk = 20_000
    with engine.begin() as conn:
        have = conn.execute(select(sa.func.count()).select_from(Paper)).scalar_one()
        for start in range(have, total, chunk):
            stop = min(total, start + chunk)
            papers = [
                {
                    "id": i + 1,
                    "title": f"Prefilled paper number {i}",
                    "abstract": "x",
                    "authors": [],
                    "categories": [],
                    "first_seen_at": NOW,
                }
                for i in range(start, stop)
            ]
            conn.execute(sa.insert(Paper), papers)
            keys = []
            for i in range(start, stop):
                keys.append({"key": f"arxiv:pre/{i:07d}", "paper_id": i + 1})
                fp = hashlib.blake2b(f"prefilled paper number {i}".encode(), digest_size=16)
                keys.append({"key": f"title:{fp.hexdigest()}", "paper_id": i + 1})
            conn.execute(sa.insert(PaperKey), keys)
        if engine.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('papers','id'), "
                    "(SELECT max(id) FROM papers))"
                )
            )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))


def _ours(engine: Engine, records: list[PaperRecord]) -> float:
    factory = make_session_factory(engine)
    with stopwatch() as t, factory.begin() as session:
        # Batches like a real ingest of many files: 2,000 records per call.
        for i in range(0, len(records), 2000):
            store_records(session, records[i : i + 2000], now=NOW)
    return len(records) / t[0]


def _naive(engine: Engine, records: list[PaperRecord]) -> float:
    """One record at a time through the ORM: a query per key, a flush per paper."""
    factory = make_session_factory(engine)
    with stopwatch() as t, factory.begin() as session:
        for rec in records:
            keys = keys_for(rec)
            hit = None
            for k in keys:
                hit = session.get(PaperKey, k)
                if hit:
                    break
            if hit:
                continue
            paper = Paper(
                title=rec.title,
                abstract=rec.abstract,
                authors=[],
                categories=[],
                first_seen_at=NOW,
                arxiv_id=rec.arxiv_id,
            )
            session.add(paper)
            session.flush()
            for k in keys:
                session.add(PaperKey(key=k, paper_id=paper.id))
            session.flush()
    return len(records) / t[0]


def _sqlite_engine(folder: str) -> Engine:
    return make_engine(f"sqlite:///{folder}/bench.db")


def _pg_engine() -> Engine:
    admin = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS "newsletter_bench"'))
        conn.execute(sa.text('CREATE DATABASE "newsletter_bench"'))
    admin.dispose()
    return make_engine(
        sa.engine.make_url(PG_ADMIN)
        .set(database="newsletter_bench")
        .render_as_string(hide_password=False)
    )


def bench_store(dialect: str, sizes: list[int], batch: int, naive_batch: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        engine = _sqlite_engine(folder) if dialect == "sqlite" else _pg_engine()
        schema.upgrade(engine)
        for round_no, size in enumerate(sizes):
            _prefill(engine, size)
            ours = _ours(engine, synthetic_records(batch, round_no, f"{round_no}1"))
            naive = _naive(engine, synthetic_records(naive_batch, round_no, f"{round_no}2"))
            rows.append(
                Row(
                    f"store {batch:,} new into {size:,} ({dialect})",
                    ours,
                    "papers/s",
                    baseline=naive,
                    baseline_name="naive ORM",
                    target="≥ 5,000 papers/s",
                )
            )
            # Same batch again: all duplicates (the daily case for repeated dumps).
            dup = _ours(engine, synthetic_records(batch, round_no, f"{round_no}1"))
            rows.append(
                Row(
                    f"re-ingest {batch:,} duplicates at {size:,} ({dialect})",
                    dup,
                    "papers/s",
                    target="≥ 5,000 papers/s",
                )
            )
        engine.dispose()
    return rows


def run(quick: bool = False) -> list[Row]:
    sizes = [10_000, 50_000] if quick else [10_000, 1_000_000]
    batch = 2_000 if quick else 10_000
    naive_batch = 300 if quick else 1_000
    rows = [bench_parse(0.5 if quick else 2.0)]
    for dialect in ("sqlite", "postgresql"):
        rows += bench_store(dialect, sizes, batch, naive_batch)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(format_table(run(quick="--quick" in args)))


if __name__ == "__main__":
    main()
