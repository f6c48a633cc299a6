"""Papers, the keys that identify them, ingests, and polled feeds."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Ingest(Base):
    """One ingest of one input (file, URL): the audit trail of what came in."""

    __tablename__ = "ingests"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # dump | feed
    # ok | partial (warnings) | rejected | not_modified | error
    status: Mapped[str] = mapped_column(String(16))
    content_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    new_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)


class Paper(Base):
    """A paper, once, however many sources and days it appeared in.

    ``first_seen_at`` is set by the ingest that first saw the paper and never changes:
    a paper is *new* only for that ingest. Later sightings only fill in missing fields.
    """

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(JSON, default=list)
    url: Mapped[str | None] = mapped_column(Text)
    arxiv_id: Mapped[str | None] = mapped_column(String(64))
    doi: Mapped[str | None] = mapped_column(String(255))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    listed_on: Mapped[date | None] = mapped_column(Date)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_ingest_id: Mapped[int | None] = mapped_column(
        ForeignKey("ingests.id", ondelete="SET NULL")
    )

    __table_args__ = (Index("ix_papers_first_seen_at", "first_seen_at"),)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "abstract": self.abstract,
            "authors": list(self.authors or []),
            "url": self.url,
            "arxiv_id": self.arxiv_id,
            "doi": self.doi,
            "categories": list(self.categories or []),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "listed_on": self.listed_on.isoformat() if self.listed_on else None,
            "first_seen_at": self.first_seen_at.isoformat(),
        }


class PaperKey(Base):
    """Every identity key ever seen (``arxiv:…``, ``doi:…``, ``title:…``) → one paper."""

    __tablename__ = "paper_keys"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)


class Feed(Base):
    """A polled feed URL and its conditional-GET validators."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
