"""Delivery speed.

1. SMTP: messages/s from one worker to an SMTP sink in another process, reusing one
   connection vs connecting per message (the naive way).
2. The whole daily run: N subscribers × 500 new papers — plan + render + send to a
   Maildir and to an SMTP sink, on SQLite and PostgreSQL — each in a fresh process so
   its peak memory is its own. Baseline: planning one subscriber at a time (a query
   and a match per subscriber), timed on a subset and scaled.

Targets (issue 5): ≥ 1,000 messages/s per worker; the whole run for 100,000
subscribers ≤ 5 minutes on this 2-core machine; peak memory ≤ 1 GB.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.bench_match import make_papers, make_profiles
from benchmarks.common import (
    Row,
    TreeMemory,
    children_peak_rss_mb,
    format_table,
    peak_rss_mb,
)
from newsletter import schema
from newsletter.config import Settings
from newsletter.db import make_engine, make_session_factory
from newsletter.digest.deliver import deliver_due
from newsletter.digest.models import Delivery
from newsletter.digest.plan import plan
from newsletter.digest.send import MaildirTransport, SMTPTransport
from newsletter.gc_tuning import release_memory
from newsletter.papers.ingest import store_records
from newsletter.papers.records import PaperRecord
from newsletter.subscribers.models import Subscriber
from newsletter.subscribers.tokens import manage_token, new_salt, token_hash

PG_ADMIN = os.environ.get(
    "NEWSLETTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 7, 30, 9, 0, tzinfo=UTC)
FORK = multiprocessing.get_context("fork")
BENCH_DIR = Path(__file__).resolve().parents[1] / "var" / "bench"
#: Delivery workers per dialect: one on both. Each worker renders ahead in a helper
#: process (newsletter.digest.prerender), so one worker already keeps both cores of
#: this machine busy; a second worker (and its helper) on PostgreSQL measured slower
#: (20,000 subscribers: deliver 73 s with two, 61 s with one), and on SQLite the
#: workers would wait on its single write lock.
WORKERS = {"sqlite": 1, "postgresql": 1}
SECRET = "bench-secret"


@contextmanager
def smtp_sink() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.smtp_sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    try:
        yield port
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _settings(folder: Path, db_url: str) -> Settings:
    return Settings(
        var_dir=folder,
        database_url=db_url,
        secret_key=SECRET,
        base_url="https://digest.example.org",
        sender="Paper Digest <digest@example.org>",
        # What Settings.from_env chooses on a machine with more than one core.
        render_ahead=(os.cpu_count() or 1) > 1,
    )


def _engine(dialect: str, folder: Path) -> sa.Engine:
    if dialect == "sqlite":
        return make_engine(f"sqlite:///{folder / 'daily.db'}")
    admin = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS "newsletter_bench_daily" WITH (FORCE)'))
        conn.execute(sa.text('CREATE DATABASE "newsletter_bench_daily"'))
    admin.dispose()
    url = sa.engine.make_url(PG_ADMIN).set(database="newsletter_bench_daily")
    return make_engine(url.render_as_string(hide_password=False))


def _fill(engine: sa.Engine, n_subs: int, n_papers: int) -> None:
    rnd = random.Random(7)
    papers = make_papers(n_papers, rnd)
    profiles = make_profiles(n_subs, papers, rnd)
    factory = make_session_factory(engine)
    with factory.begin() as s:
        records = [
            PaperRecord(title=f"{p.title} [{i}]", abstract=p.abstract) for i, p in enumerate(papers)
        ]
        store_records(s, records, now=NOW - timedelta(hours=2))
    rows = []
    for i, profile in enumerate(profiles):
        salt = new_salt()
        rows.append(
            {
                "email": f"reader{i:06d}@example.org",
                "status": "active",
                "paused": False,
                "profile": profile,
                "frequency": "daily",
                "hour": 7,
                "timezone": "UTC",
                "weekday": 0,
                "created_at": NOW - timedelta(days=1),
                "confirmed_at": NOW - timedelta(days=1),
                "token_salt": salt,
                "manage_token_hash": token_hash(manage_token(SECRET, salt)),
            }
        )
    with engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(sa.insert(Subscriber), rows[i : i + 5000])


def daily_run(
    dialect: str, sink: str, n_subs: int, n_papers: int, workers: int | None = None
) -> dict[str, Any]:
    """One whole daily run: fill, then plan in this process and deliver with
    ``workers`` worker processes; returns phase times and peak memory (of this
    process and of the largest worker)."""
    # Under the project's var/, where the service keeps its Maildir and database (on
    # this machine /tmp is several times slower at creating files).
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    workers = workers or WORKERS[dialect]
    # Kept until every run is done (run() removes them): deleting 100,000 files makes
    # ext4 without a journal (this machine's disk) scan past the freed inodes on each
    # file created for minutes afterwards ("recently_deleted"), which would bill one
    # run's cleanup to the next run's Maildir.
    folder = Path(tempfile.mkdtemp(dir=BENCH_DIR))
    tree = TreeMemory()
    with tree:
        engine = _engine(dialect, folder)
        schema.upgrade(engine)
        _fill(engine, n_subs, n_papers)
        factory = make_session_factory(engine)
        settings = _settings(folder, str(engine.url))
        rss_before = peak_rss_mb()
        t0 = time.perf_counter()
        with factory.begin() as s:
            planned = plan(s, now=NOW, day=date(2026, 7, 30), max_papers=settings.max_papers)
        release_memory()  # as newsletter digest and the scheduler do after planning
        t1 = time.perf_counter()

        engine.dispose()  # the workers are forked: each opens its own connections
        if sink == "maildir":
            _deliver_with_workers(settings, workers, "maildir", 0)
        else:
            with smtp_sink() as port:
                _deliver_with_workers(settings, workers, "smtp", port)
        t2 = time.perf_counter()
    with factory() as s:
        sent = (
            s.scalar(
                sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == "sent")
            )
            or 0
        )
    # Baseline: plan subscribers one at a time (on a copy of the period) for a subset.
    subset = 3  # one at a time scans every delivery per call: seconds each at 100k
    with factory.begin() as s:
        ids = list(s.scalars(sa.select(Subscriber.id).limit(subset)))
        tb = time.perf_counter()
        for sid in ids:
            plan(s, now=NOW, day=date(2026, 7, 31), only=[sid], max_papers=20)
        naive_per_sub = (time.perf_counter() - tb) / subset
        s.rollback()
    engine.dispose()
    return {
        "planned": planned.planned,
        "skipped": planned.skipped,
        "sent": sent,
        "plan_s": t1 - t0,
        "deliver_s": t2 - t1,
        "total_s": t2 - t0,
        "naive_plan_s": naive_per_sub * n_subs,
        "peak_mb": max(peak_rss_mb(), children_peak_rss_mb()),
        "tree_mb": tree.peak_mb,
        "workers": workers,
        "fill_peak_mb": rss_before,
        "folder": str(folder),
    }


def _worker(settings: Settings, sink: str, port: int) -> None:
    """One delivery worker (``newsletter worker --until-idle``) in its own process."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    transport: MaildirTransport | SMTPTransport
    if sink == "maildir":
        transport = MaildirTransport(settings.var_dir / "maildir")
    else:
        transport = SMTPTransport("127.0.0.1", port, timeout=30)
    deliver_due(factory, settings, transport, now=lambda: NOW, batch_size=100)
    engine.dispose()


def _deliver_with_workers(settings: Settings, workers: int, sink: str, port: int) -> None:
    procs = [FORK.Process(target=_worker, args=(settings, sink, port)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a delivery worker exited with {p.exitcode}")


def bench_smtp(n: int) -> Row:
    """One worker → sink: one reused connection vs a connection per message. The
    message is built as a worker builds a digest (``build_message``), about the size of
    a 10-paper digest."""
    from newsletter.digest.message import build_message
    from newsletter.digest.render import Rendered

    msg = build_message(
        Rendered("Benchmark digest", ("x" * 72 + "\n") * 110, "<p>" + "y" * 30000 + "</p>"),
        sender="digest@example.org",
        to="reader@example.org",
        message_id="<bench.1@example.org>",
        date=NOW,
        unsubscribe_url="https://digest.example.org/u/token",
    )
    with smtp_sink() as port:
        start = time.perf_counter()
        with SMTPTransport("127.0.0.1", port, timeout=30) as t:
            for _ in range(n):
                t.send(msg)
        reused = n / (time.perf_counter() - start)
        m = max(50, n // 10)
        start = time.perf_counter()
        for _ in range(m):
            with SMTPTransport("127.0.0.1", port, timeout=30) as t:
                t.send(msg)
        per_message = m / (time.perf_counter() - start)
    return Row(
        "SMTP to a sink process, 1 worker",
        reused,
        "messages/s",
        baseline=per_message,
        baseline_name="connect per message",
        target="≥ 1,000 messages/s",
    )


def run(quick: bool = False) -> list[Row]:
    n_subs = 5_000 if quick else 100_000
    rows = [bench_smtp(500 if quick else 3000)]
    folders: list[str] = []
    for dialect in ("sqlite", "postgresql"):
        for sink in ("maildir", "smtp"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_deliver",
                    "--daily",
                    dialect,
                    sink,
                    str(n_subs),
                    "500",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            folders.append(r["folder"])
            rows.append(
                Row(
                    f"daily run {n_subs:,} subs × 500 papers, {dialect} → {sink}",
                    r["total_s"],
                    "s (lower is better)",
                    baseline=r["plan_s"] - r["plan_s"] + r["naive_plan_s"] + r["deliver_s"],
                    baseline_name="plan one subscriber at a time",
                    target="≤ 300 s, ≤ 1 GB",
                    note=(
                        f"plan {r['plan_s']:.1f}s + deliver {r['deliver_s']:.1f}s "
                        f"({r['workers']} worker{'s' if r['workers'] > 1 else ''}); "
                        f"{r['sent']:,} sent, {r['skipped']:,} skipped; "
                        f"peak {r['peak_mb']:.0f} MB (largest process), "
                        f"{r['tree_mb']:.0f} MB (all our processes at once)"
                    ),
                    higher_is_better=False,
                )
            )
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--daily":
        dialect, sink, n_subs, n_papers = argv[1], argv[2], int(argv[3]), int(argv[4])
        print(json.dumps(daily_run(dialect, sink, n_subs, n_papers)))
        return  # the caller removes the run's folder
    print(format_table(run(quick="--quick" in argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
