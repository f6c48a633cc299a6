"""Engine helpers shared by every package."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import JSONText, bulk_insert_ignoring_conflicts, session_scope
from newsletter.digest.models import Delivery
from tests import factories

NOW = datetime(2026, 7, 30, 8, 0, tzinfo=UTC)


def test_json_text_is_stored_as_the_json_it_holds(factory: sessionmaker[Session]) -> None:
    items = [{"paper_id": 1, "matched": ["a", "b"], "title_spans": [[0, 3]]}]
    with session_scope(factory) as s:
        sub = factories.subscriber(s, "j@example.org", "diffusion", now=NOW)
        row = Delivery(
            subscriber_id=sub.id,
            period="D2026-07-30",
            status="skipped",
            window_start=NOW,
            window_end=NOW,
            items=JSONText(json.dumps(items)),
            planned_at=NOW,
        )
        s.add(row)
    with session_scope(factory) as s:
        assert s.scalars(select(Delivery.items)).one() == items
        s.execute(update(Delivery).values(items=JSONText("[]")))
    with factory() as s:
        assert s.scalars(select(Delivery.items)).one() == []
        # A plain str is still a JSON string, not JSON text.
        s.execute(update(Delivery).values(items="[1]"))
        assert s.scalars(select(Delivery.items)).one() == "[1]"


def _row(sub_id: int, period: str, **extra: object) -> dict[str, object]:
    return {
        "subscriber_id": sub_id,
        "period": period,
        "status": "planned",
        "window_start": NOW,
        "window_end": NOW,
        "items": [],
        "planned_at": NOW,
        **extra,
    }


def test_bulk_insert_keeps_rows_stored_meanwhile_and_returns_what_it_inserted(
    factory: sessionmaker[Session],
) -> None:
    # On PostgreSQL this goes through COPY and a staging table; the values must come
    # back exactly, including the characters COPY's text format escapes.
    awkward = "tab\there\nnew line \\ backslash \\N ünïcode"
    with session_scope(factory) as s:
        a = factories.subscriber(s, "a@example.org", "diffusion", now=NOW).id
        b = factories.subscriber(s, "b@example.org", "diffusion", now=NOW).id
        c = factories.subscriber(s, "c@example.org", "diffusion", now=NOW).id
        s.add(Delivery(**_row(a, "D2026-07-30", profile="first")))  # type: ignore[arg-type]
    with session_scope(factory) as s:
        inserted = bulk_insert_ignoring_conflicts(
            s,
            Delivery,
            [
                _row(a, "D2026-07-30", profile="second"),
                _row(b, "D2026-07-30", profile=awkward, items=JSONText('[{"t": "a\\"b"}]')),
                _row(c, "D2026-07-30", profile="", items=[{"x": awkward}], skip_reason=None),
            ],
            ["subscriber_id", "period"],
            "subscriber_id",
        )
        assert sorted(inserted) == [b, c]
        # Twice in one transaction: the staging table is made again.
        again = bulk_insert_ignoring_conflicts(
            s, Delivery, [_row(a, "D2026-07-31")], ["subscriber_id", "period"], "subscriber_id"
        )
        assert again == [a]
    with factory() as s:
        got = {
            (d.subscriber_id, d.period): d
            for d in s.scalars(select(Delivery).order_by(Delivery.id))
        }
        assert got[(a, "D2026-07-30")].profile == "first"
        assert got[(b, "D2026-07-30")].profile == awkward
        assert got[(b, "D2026-07-30")].items == [{"t": 'a"b'}]
        assert got[(c, "D2026-07-30")].items == [{"x": awkward}]
        assert got[(c, "D2026-07-30")].window_start == NOW
        assert got[(c, "D2026-07-30")].skip_reason is None
        assert (got[(b, "D2026-07-30")].more_count, got[(b, "D2026-07-30")].attempts) == (0, 0)
        assert len(got) == 4


def test_bulk_insert_refuses_naive_datetimes(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        a = factories.subscriber(s, "a@example.org", "diffusion", now=NOW).id
    with factory() as s, pytest.raises(Exception, match="naive datetime"):
        bulk_insert_ignoring_conflicts(
            s,
            Delivery,
            [_row(a, "D2026-07-30", planned_at=NOW.replace(tzinfo=None))],
            ["subscriber_id", "period"],
            "subscriber_id",
        )
