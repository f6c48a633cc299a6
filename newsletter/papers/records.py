"""PaperRecord: what a parser produces, before identity and storage.

Parsers are pure: they turn bytes into records and warnings and never touch the
database or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class PaperRecord:
    """One paper as one source described it.

    Only ``title`` is required; a dump entry has title and abstract and nothing else.
    ``arxiv_id`` is stored *without* version (``2401.01234``, ``hep-th/9901001``);
    ``version`` keeps the version number when the source gave one.
    ``announce_type`` is the arXiv listing's announce type (new, cross, replace,
    replace-cross, absonly) or None for sources that do not say.
    """

    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    url: str | None = None
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    listed_on: date | None = None
    announce_type: str | None = None
    guid: str | None = None


@dataclass(slots=True)
class ParseResult:
    """Records a parser recovered, and what it had to say about the input.

    ``warnings`` are problems that lost part of the input (a truncated record, a
    fallback decoding); ``skipped`` counts records that were recognised but not kept.
    """

    records: list[PaperRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    listed_on: date | None = None
