"""Engine helpers shared by every package."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import JSONText, session_scope
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
