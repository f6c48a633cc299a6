"""What the service is doing: job runs (for /healthz and logs) and table counts
(for ``newsletter status``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import JSON, String, Text, delete, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from newsletter.db import Base, UTCDateTime, session_scope, utcnow

log = logging.getLogger("newsletter.jobs")
T = TypeVar("T")


class JobRun(Base):
    """The last run of each scheduled job (one row per job name)."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))  # running | ok | error
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


def recorded(factory: sessionmaker[Session], name: str, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` as job ``name``: log one structured line with its counts, keep the
    outcome in ``job_runs``. A failing job is logged and recorded, never raised, so
    the scheduler keeps the next run."""
    started = utcnow()
    t0 = time.perf_counter()
    result: T | None = None
    status, error = "ok", None
    try:
        result = fn()
    except Exception as exc:  # a job must not take the scheduler down
        status, error = "error", f"{type(exc).__name__}: {exc}"
        log.exception("job %s failed", name)
    summary = _summary_of(result)
    log.info(
        json.dumps(
            {
                "job": name,
                "status": status,
                "seconds": round(time.perf_counter() - t0, 3),
                **summary,
            }
        )
    )
    with session_scope(factory) as session:
        run = session.get(JobRun, name) or JobRun(name=name)
        run.started_at, run.finished_at = started, utcnow()
        run.status, run.summary, run.error = status, summary, error
        session.merge(run)
    return result


def _summary_of(result: object) -> dict[str, Any]:
    as_dict = getattr(result, "as_dict", None)
    if callable(as_dict):
        data = as_dict()
        return {k: v for k, v in data.items() if isinstance(v, int | float | str)}
    return {}


def job_runs(session: Session) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "status": r.status,
            "started_at": r.started_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "summary": r.summary,
            "error": r.error,
        }
        for r in session.scalars(select(JobRun).order_by(JobRun.name))
    ]


def database_ok(session: Session) -> bool:
    try:
        session.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def counts(session: Session) -> dict[str, Any]:
    """Papers, subscribers by status, deliveries by status."""
    from newsletter.digest.models import Delivery
    from newsletter.papers.models import Paper
    from newsletter.subscribers.models import Subscriber

    def by_status(model: Any) -> dict[str, int]:
        rows = session.execute(select(model.status, func.count()).group_by(model.status))
        return {status: n for status, n in rows}

    return {
        "papers": session.scalar(select(func.count()).select_from(Paper)) or 0,
        "subscribers": by_status(Subscriber),
        "deliveries": by_status(Delivery),
    }


# Audit rows older than this are pruned; the paper and key tables are never pruned
# (they are the memory that keeps a paper from being mailed twice).
KEEP_INGESTS = timedelta(days=180)
KEEP_DELIVERIES = timedelta(days=400)


def prune(session: Session, *, now: datetime) -> dict[str, int]:
    """Delete old ingest records and old finished deliveries, keeping every
    subscriber's latest delivery (the next digest's window starts where it ended)."""
    from newsletter.digest.models import Delivery
    from newsletter.papers.models import Ingest

    latest = select(func.max(Delivery.id)).group_by(Delivery.subscriber_id).scalar_subquery()
    old_deliveries = session.execute(
        delete(Delivery).where(
            Delivery.planned_at < now - KEEP_DELIVERIES,
            Delivery.status.in_(["sent", "skipped", "failed"]),
            Delivery.id.not_in(latest),
        )
    )
    old_ingests = session.execute(delete(Ingest).where(Ingest.started_at < now - KEEP_INGESTS))
    return {
        "deliveries": int(getattr(old_deliveries, "rowcount", 0) or 0),
        "ingests": int(getattr(old_ingests, "rowcount", 0) or 0),
    }
