"""Match profiles against stored papers (the DB side of the pure matcher)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.matching.match import Match, MatchPaper, PaperIndex, match_profile
from newsletter.papers.models import Paper
from newsletter.subscribers.query import compile_profile


@dataclass(frozen=True)
class PaperMatch:
    paper: Paper
    match: Match

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.paper.id,
            "title": self.paper.title,
            "url": self.paper.url,
            "arxiv_id": self.paper.arxiv_id,
            "first_seen_at": self.paper.first_seen_at.isoformat(),
            "score": round(self.match.score, 3),
            "matched": list(self.match.matched),
            "spans": {
                "title": [list(s) for s in self.match.title_spans],
                "abstract": [list(s) for s in self.match.abstract_spans],
            },
        }


def match_papers(profile: str, papers: Sequence[Paper]) -> list[PaperMatch]:
    """Rank ``papers`` for ``profile`` (raises QueryError for a bad profile)."""
    compiled = compile_profile(profile)
    by_id = {p.id: p for p in papers}
    index = PaperIndex.build(
        [MatchPaper(p.id, p.title, p.abstract, tuple(p.authors or ())) for p in papers]
    )
    return [PaperMatch(by_id[m.paper_key], m) for m in match_profile(compiled, index)]


def match_stored(
    session: Session, profile: str, *, since: datetime | None = None, limit: int | None = None
) -> list[PaperMatch]:
    """Try ``profile`` against stored papers first seen at or after ``since``."""
    compile_profile(profile)  # fail before loading anything
    stmt = select(Paper).order_by(Paper.id)
    if since is not None:
        stmt = stmt.where(Paper.first_seen_at >= since)
    found = match_papers(profile, session.scalars(stmt).all())
    return found[:limit] if limit is not None else found
