"""Paper identity: which keys name a paper, strongest first (pure).

The documented order (DESIGN.md, "Paper identity and seen"):

1. ``arxiv:<id>``: the arXiv identifier without its version, new style
   (``2401.01234``) or old style (``hep-th/9901001``), found in ids, URLs, guids or text;
2. ``doi:<doi>``: the DOI, lowercased (DOIs are case-insensitive by definition);
3. ``title:<fingerprint>``: a digest of the normalised title.

Every key a record yields is stored and points at one paper, so a paper that first
arrives title-only (a dump) and later with an arXiv id (a feed) is recognised by its
title key and gains the id key.
"""

from __future__ import annotations

import hashlib
import re

from newsletter.papers.records import PaperRecord
from newsletter.text import fold

# New-style ids: YYMM.NNNN (2007-2014) or YYMM.NNNNN (2015-), optional vN.
# The look-behind/ahead keep us from reading an id out of a longer number.
_NEW_ID = re.compile(r"(?<![\d.])(\d{4}\.\d{4,5})(?:v(\d+))?(?![\d])")
# Old-style ids: archive(.SUBJ)/YYMMNNN, e.g. hep-th/9901001, math.GT/0309136.
_OLD_ID = re.compile(r"(?<![\w.-])([a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7})(?:v(\d+))?(?!\d)")
# Where an arXiv id may be announced explicitly; we only trust bare ids in such contexts
# to avoid reading a stray "1234.5678" in an abstract as an id.
_ARXIV_CONTEXT = re.compile(r"arxiv(?:\.org)?(?:/abs|/pdf|:|\s)", re.IGNORECASE)

_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"'<>]+)", re.IGNORECASE)
_DOI_TRAILING = ".,;)]}"

_NON_WORD = re.compile(r"[\W_]+")

#: A title with fewer word characters than this has no fingerprint. Even short titles
#: ("GPT-4 Report") are kept as keys: without one the paper would be mailed again daily.
MIN_FINGERPRINT_CHARS = 1


def parse_arxiv_id(text: str) -> tuple[str, int | None] | None:
    """The arXiv id in an id-bearing string (URL, guid, ``arXiv:…``), without version.

    Returns ``(id, version)`` or None. Accepts ``http://arxiv.org/abs/2202.12139v1``,
    ``oai:arXiv.org:2401.01234v2``, ``arXiv:hep-th/9901001``, ``2401.01234``.
    """
    m = _NEW_ID.search(text)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    m = _OLD_ID.search(text)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    return None


def find_arxiv_id_in_text(text: str) -> tuple[str, int | None] | None:
    """An arXiv id mentioned in free text, only where the text says it is one."""
    for ctx in _ARXIV_CONTEXT.finditer(text):
        found = parse_arxiv_id(text[ctx.end() : ctx.end() + 40])
        if found:
            return found
    return None


def normalise_doi(text: str) -> str | None:
    """The DOI in ``text`` (bare, ``doi:``-prefixed or a doi.org URL), lowercased."""
    m = _DOI.search(text)
    if not m:
        return None
    return m.group(1).rstrip(_DOI_TRAILING).lower()


def normalise_title(title: str) -> str:
    """Title folded for comparison: NFKC, accents folded, casefold, punctuation and
    whitespace collapsed to single spaces."""
    return _NON_WORD.sub(" ", fold(title)).strip()


def title_fingerprint(title: str) -> str | None:
    """A fixed-length digest of the normalised title, or None for a too-short title."""
    norm = normalise_title(title)
    if len(norm.replace(" ", "")) < MIN_FINGERPRINT_CHARS:
        return None
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).hexdigest()


def keys_for(record: PaperRecord) -> list[str]:
    """Every identity key of ``record``, strongest first, without duplicates."""
    keys: list[str] = []
    if record.arxiv_id:
        keys.append(f"arxiv:{record.arxiv_id}")
    if record.doi:
        keys.append(f"doi:{record.doi.lower()}")
    fp = title_fingerprint(record.title)
    if fp:
        keys.append(f"title:{fp}")
    return keys
