"""Plan digests: which subscriber is due, which papers each one gets.

Planning fixes every delivery's paper list in the outbox, so a retry sends the same
email, and the unique (subscriber, period) key makes planning twice plan once — even
two planners at once. Work is batched in the Zulip digest's manner: shared queries
once, one paper index per run, then every profile matched against it.
"""

from __future__ import annotations

import bisect
import functools
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.db import JSONText, bulk_insert_ignoring_conflicts
from newsletter.digest.models import Delivery
from newsletter.matching.match import Match, MatchPaper, PaperIndex, match_many
from newsletter.papers.models import Paper
from newsletter.subscribers.models import Subscriber
from newsletter.subscribers.query import CompiledProfile, compile_many

# Marks a row that re-plans a period skipped earlier (an UPDATE, not an INSERT).
REPLAN = "_replan"


@dataclass
class PlanSummary:
    planned: int = 0
    skipped: int = 0
    already: int = 0
    not_due: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "planned": self.planned,
            "skipped": self.skipped,
            "already": self.already,
            "not_due": self.not_due,
        }

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1


def period_of(frequency: str, day: date) -> str:
    """The period key of ``day``: ``D2026-07-30`` (daily) or ``W2026-W31`` (weekly)."""
    if frequency == "weekly":
        year, week, _ = day.isocalendar()
        return f"W{year}-W{week:02d}"
    return f"D{day.isoformat()}"


@functools.lru_cache(maxsize=64)
def period_label(period: str) -> str:
    """Human words for a period key: "Thursday 30 July 2026", "week 31 of 2026"."""
    if period.startswith("W"):
        year, week = period[1:].split("-W")
        return f"week {int(week)} of {year}"
    day = date.fromisoformat(period[1:])
    return f"{day:%A} {day.day} {day:%B %Y}"


def due_period(sub: Subscriber, now: datetime) -> str | None:
    """The period ``sub`` is due for at ``now``, or None if their hour has not come.

    Wall-clock comparison in the subscriber's zone: on a DST change the local hour
    still arrives once per local day (a skipped 02:00 is caught at 03:00), and the
    period key — the local date — keeps an hour that occurs twice from mailing twice.
    Missed periods are not replayed: the next digest's window starts where the last
    one ended, so it carries every paper seen meanwhile (one email, nothing lost).
    """
    local = now.astimezone(ZoneInfo(sub.timezone))
    if sub.frequency == "weekly":
        weekday = local.weekday()
        if weekday < sub.weekday or (weekday == sub.weekday and local.hour < sub.hour):
            return None
        return period_of("weekly", local.date())
    if local.hour < sub.hour:
        return None
    return period_of("daily", local.date())


def worth_sending(matches: Sequence[Match], *, send_empty: bool) -> str | None:
    """None if the digest should go out, else the reason it is skipped."""
    if matches or send_empty:
        return None
    return "no new paper matched the profile"


def _day_start(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(0), tzinfo=UTC)


def _first_window_start(sub: Subscriber, ingest_times: Sequence[datetime]) -> datetime:
    """A newcomer's first digest also covers the most recent ingest day before they
    subscribed, so they are not left waiting a day for their first email."""
    i = bisect.bisect_right(ingest_times, sub.created_at)
    if i == 0:
        return sub.created_at
    return min(sub.created_at, _day_start(ingest_times[i - 1]))


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> set[int]:
    """Insert delivery rows; a (subscriber, period) planned meanwhile is left alone.

    Returns the subscriber ids whose row this call inserted.
    """
    return set(
        bulk_insert_ignoring_conflicts(
            session, Delivery, rows, ["subscriber_id", "period"], "subscriber_id"
        )
    )


def _item(m: Match) -> dict[str, Any]:
    # Tuples are stored as JSON arrays, so they come back as the lists they were.
    return {
        "paper_id": m.paper_key,
        "score": round(m.score, 4),
        "matched": m.matched,
        "title_spans": m.title_spans,
        "abstract_spans": m.abstract_spans,
    }


class _Items(dict[int, tuple[Match, dict[str, Any]]]):
    """Match → its outbox item, once per Match object: the matcher hands the same
    Match to every subscriber whose clause selected that paper. Keyed by identity;
    each entry keeps its Match alive, so an id cannot be reused meanwhile."""

    def of(self, m: Match) -> dict[str, Any]:
        entry = self.get(id(m))
        if entry is None:
            entry = self[id(m)] = (m, _item(m))
        return entry[1]


def plan(
    session: Session,
    *,
    now: datetime,
    day: date | None = None,
    force: bool = False,
    max_papers: int = 20,
    send_empty: bool = False,
    only: Iterable[int] | None = None,
) -> PlanSummary:
    """Plan the due period of every active subscriber (one outbox row each).

    ``day`` plans that day's period for everybody (backfills, tests); ``force`` plans
    the current period without waiting for the subscriber's hour; ``only`` restricts
    to subscriber ids. Papers: first seen since the subscriber's previous delivery
    window ended, up to ``now``; ranked; capped at ``max_papers`` (the rest counted).
    """
    rows, summary = plan_rows(
        session,
        now=now,
        day=day,
        force=force,
        max_papers=max_papers,
        send_empty=send_empty,
        only=only,
    )
    fresh: list[dict[str, Any]] = []
    replans: list[dict[str, Any]] = []
    encoded: dict[int, str] = {}
    for row in rows:
        row["items"] = _items_json(row["items"], encoded)
        (replans if row.pop(REPLAN) else fresh).append(row)
    inserted = _insert_ignoring_duplicates(session, fresh)
    for row in fresh:
        if row["subscriber_id"] not in inserted:
            summary.already += 1  # a parallel planner planned this period first
        elif row["skip_reason"]:
            summary.skip(row["skip_reason"])
        else:
            summary.planned += 1
    worth = [r for r in replans if not r["skip_reason"]]
    summary.already += len(replans) - len(worth)
    summary.planned += _replan_skipped(session, worth)
    return summary


def _items_json(items: list[dict[str, Any]], encoded: dict[int, str]) -> JSONText:
    """A row's items as JSON text, each item encoded once per plan (items are shared
    between the rows of subscribers who got the same match; ``encoded`` is keyed by
    their identity, and they stay alive in the rows meanwhile)."""
    parts = []
    for item in items:
        text = encoded.get(id(item))
        if text is None:
            text = encoded[id(item)] = json.dumps(item)
        parts.append(text)
    return JSONText("[" + ",".join(parts) + "]")


def _replan_skipped(session: Session, rows: list[dict[str, Any]]) -> int:
    """Turn skipped rows that now have papers into planned ones; a row another
    planner changed meanwhile (no longer skipped) is left alone."""
    done = 0
    for row in rows:
        result = session.execute(
            update(Delivery)
            .where(
                Delivery.subscriber_id == row["subscriber_id"],
                Delivery.period == row["period"],
                Delivery.status == "skipped",
            )
            .values({k: v for k, v in row.items() if k not in ("subscriber_id", "period")})
            .execution_options(synchronize_session=False)
        )
        done += int(getattr(result, "rowcount", 0) or 0)
    return done


def plan_rows(
    session: Session,
    *,
    now: datetime,
    day: date | None = None,
    force: bool = False,
    max_papers: int = 20,
    send_empty: bool = False,
    only: Iterable[int] | None = None,
    include_planned: bool = False,
    any_status: bool = False,
) -> tuple[list[dict[str, Any]], PlanSummary]:
    """The outbox rows :func:`plan` would insert, without inserting them.

    ``include_planned`` also builds rows for periods already planned (a preview of
    the next digest); ``any_status`` includes pending, paused and unsubscribed
    subscribers (the operator's preview). The summary counts only not-due and
    already-planned subscribers.
    """
    summary = PlanSummary()
    stmt = select(Subscriber)
    if not any_status:
        stmt = stmt.where(Subscriber.status == "active", Subscriber.paused.is_(False))
    if only is not None:
        stmt = stmt.where(Subscriber.id.in_(list(only)))
    subscribers = session.scalars(stmt).all()

    periods: dict[int, str] = {}
    for sub in subscribers:
        period = period_of(sub.frequency, day) if day else due_period(sub, now)
        if period is None and force:
            period = period_of(sub.frequency, now.astimezone(ZoneInfo(sub.timezone)).date())
        if period is None:
            summary.not_due += 1
        else:
            periods[sub.id] = period
    if not periods:
        return [], summary

    existing = {
        (sid, period): (status, window_start)
        for sid, period, status, window_start in session.execute(
            select(
                Delivery.subscriber_id, Delivery.period, Delivery.status, Delivery.window_start
            ).where(Delivery.period.in_(set(periods.values())))
        )
    }
    last_end = dict(
        session.execute(
            select(Delivery.subscriber_id, func.max(Delivery.window_end)).group_by(
                Delivery.subscriber_id
            )
        ).all()
    )
    ingest_times = sorted(session.scalars(select(Paper.first_seen_at).distinct()).all())
    ever_mailed = set(
        session.scalars(
            select(Delivery.subscriber_id).distinct().where(Delivery.status != "skipped")
        )
    )

    # Every due profile compiled at once (each distinct text once, the GC paused).
    compiled_by_text = compile_many(sub.profile for sub in subscribers if sub.id in periods)
    todo: list[tuple[Subscriber, str, datetime, CompiledProfile | None]] = []
    replan: set[int] = set()
    for sub in subscribers:
        period = periods.get(sub.id)
        if period is None:
            continue
        status, skipped_start = existing.get((sub.id, period), (None, None))
        start = last_end.get(sub.id)
        if status == "skipped" and sub.id not in ever_mailed and not include_planned:
            # A newcomer whose first period found nothing yet (they subscribed before
            # today's papers came in): plan again when papers arrive, so their first
            # digest does not wait a day. Later periods stay at the subscriber's hour:
            # re-planning those would drift every digest to the papers' arrival time.
            replan.add(sub.id)
            start = skipped_start
        elif status is not None and not include_planned:
            summary.already += 1
            continue
        start = start or _first_window_start(sub, ingest_times)
        if start.tzinfo is None:  # an aggregate can come back without its type's zone
            start = start.replace(tzinfo=UTC)
        found = compiled_by_text.get(sub.profile)
        compiled = found if isinstance(found, CompiledProfile) else None
        todo.append((sub, period, min(start, now), compiled))
    if not todo:
        return [], summary

    earliest = min(start for _, _, start, _ in todo)
    paper_rows = session.execute(
        select(Paper.id, Paper.title, Paper.abstract, Paper.authors, Paper.first_seen_at)
        .where(Paper.first_seen_at >= earliest, Paper.first_seen_at < now)
        .order_by(Paper.id)
    ).all()
    seen_at = {row.id: row.first_seen_at for row in paper_rows}
    index = PaperIndex.build(
        [MatchPaper(r.id, r.title, r.abstract, tuple(r.authors or ())) for r in paper_rows]
    )
    profiles = {sub.id: c for sub, _, _, c in todo if c is not None}
    matched = match_many(profiles, index)

    rows: list[dict[str, Any]] = []
    items = _Items()
    for sub, period, start, compiled in todo:
        in_window = [m for m in matched.get(sub.id, []) if seen_at[m.paper_key] >= start]
        reason = "the profile does not parse" if compiled is None else None
        reason = reason or worth_sending(in_window, send_empty=send_empty)
        kept = in_window[:max_papers]
        rows.append(
            {
                "subscriber_id": sub.id,
                "period": period,
                "status": "skipped" if reason else "planned",
                "window_start": start,
                "window_end": now,
                "items": [items.of(m) for m in kept],
                "more_count": len(in_window) - len(kept),
                "profile": sub.profile,
                "planned_at": now,
                "attempts": 0,
                "next_attempt_at": now,
                "skip_reason": reason,
                "web_token": None if reason else secrets.token_urlsafe(16),
                REPLAN: sub.id in replan,
            }
        )
    return rows, summary
