"""APScheduler wiring: which job runs when. Jobs call service functions only.

Exactly-once comes from the database (unique outbox keys, identity keys), not from
the scheduler: two schedulers at once, a restart mid-day or a job run twice never
sends a second digest for a period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.db import session_scope, utcnow
from newsletter.digest.deliver import deliver_due
from newsletter.digest.plan import PlanSummary, plan
from newsletter.digest.send import transport_for
from newsletter.gc_tuning import release_memory
from newsletter.papers.ingest import IngestSummary, ingest_inbox, ingest_source
from newsletter.status import prune, recorded

log = logging.getLogger(__name__)

# Seconds between runs. The planner runs often so a subscriber's local hour is met
# within minutes; delivery runs more often still so confirmations of retries go out
# promptly. Each run is cheap when there is nothing to do (one indexed query).
INBOX_EVERY = 60
FEEDS_EVERY = 30 * 60
PLAN_EVERY = 5 * 60
DELIVER_EVERY = 30
FIRST_PLAN_DELAY = 20
# A job that could not start on time (process asleep, machine suspended) still runs
# within this many seconds instead of being dropped (APScheduler's default is 1 s).
MISFIRE_GRACE = 6 * 3600


def poll_feeds(factory: sessionmaker[Session], settings: Settings) -> IngestSummary:
    total = IngestSummary()
    for url in settings.feeds:
        with session_scope(factory) as session:
            total.add(
                ingest_source(
                    session, url, timeout=settings.fetch_timeout, max_bytes=settings.fetch_max_bytes
                )
            )
    return total


def build_scheduler(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    worker: bool = True,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
    scheduler: BaseScheduler | None = None,
) -> BaseScheduler:
    """A scheduler with the ingest, planning and pruning jobs (and delivery when
    ``worker``). Not started; the caller starts and shuts it down."""
    stop = stop or threading.Event()
    sched = scheduler or BackgroundScheduler(timezone="UTC")
    sched.configure(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE}
    )

    def job(name: str, fn: Callable[[], object]) -> Callable[[], object]:
        return lambda: recorded(factory, name, fn)

    def plan_job() -> object:
        with session_scope(factory) as session:
            summary = plan(
                session,
                now=clock(),
                max_papers=settings.max_papers,
                send_empty=settings.send_empty,
            )
        release_memory()  # a long-running process: do not keep planning's peak
        return summary

    def prune_job() -> object:
        with session_scope(factory) as session:
            return prune(session, now=clock())

    def after_ingest(summary: IngestSummary) -> IngestSummary:
        # New papers: plan at once rather than at the next planning tick, and wake the
        # delivery job, so a dropped-in dump reaches inboxes within seconds.
        if summary.new:
            planned = recorded(factory, "plan", plan_job)
            if worker and isinstance(planned, PlanSummary) and planned.planned:
                sched.modify_job("deliver", next_run_time=clock())
        return summary

    sched.add_job(
        job("inbox", lambda: after_ingest(ingest_inbox(factory, settings.inbox_dir, now=clock))),
        "interval",
        seconds=INBOX_EVERY,
        id="inbox",
        name="inbox",
        next_run_time=clock(),
    )
    if settings.feeds:
        sched.add_job(
            job("feeds", lambda: after_ingest(poll_feeds(factory, settings))),
            "interval",
            seconds=FEEDS_EVERY,
            id="feeds",
            name="feeds",
            next_run_time=clock(),
        )
    # The first planning waits for the first inbox scan, so a dump dropped in before
    # a start is in the first digests rather than the next day's.
    sched.add_job(
        job("plan", plan_job),
        "interval",
        seconds=PLAN_EVERY,
        id="plan",
        name="plan",
        next_run_time=clock() + timedelta(seconds=FIRST_PLAN_DELAY),
    )
    sched.add_job(job("prune", prune_job), "cron", hour=3, minute=17, id="prune", name="prune")
    if worker:
        sched.add_job(
            job("deliver", lambda: run_worker_once(factory, settings, stop, clock)),
            "interval",
            seconds=DELIVER_EVERY,
            id="deliver",
            name="deliver",
            next_run_time=clock(),
        )
    return sched


def run_worker_once(
    factory: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    clock: Callable[[], datetime] = utcnow,
) -> object:
    """Send everything due; stops between messages when ``stop`` is set, leaving
    unsent rows to their lease (nothing is lost)."""
    return deliver_due(
        factory,
        settings,
        transport_for(settings),
        now=clock,
        should_stop=stop.is_set,
        per_second=settings.send_rate or None,
    )
