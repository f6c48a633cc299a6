"""Email contexts: what a digest or a confirmation says, as plain JSON-safe data.

Pure: no database, no network, no templates. The planner hands over a
:class:`Recipient` and ranked :class:`DigestPaper` values; :func:`build_digest_context`
returns a dict of str / int / float / bool / None / lists / dicts only, so a context
can be stored, logged, compared in tests and written to golden files as JSON, and the
templates (``templates/email/<name>/``) only lay it out.

Everything that came from outside (titles, abstracts, authors, profiles, URLs) is
cleaned here once: control characters and bidirectional overrides removed, whitespace
collapsed, lengths capped, and only ``http(s)`` URLs kept. Escaping is the templates'
job (jinja2 autoescape); this module never produces markup.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MAX_PAPERS",
    "DigestPaper",
    "Recipient",
    "build_confirm_context",
    "build_digest_context",
    "clean_text",
    "safe_url",
]

#: Papers listed in one email; the rest are counted and linked ("and N more").
DEFAULT_MAX_PAPERS = 20
# An excerpt of about five lines of the HTML card: long enough to judge the paper,
# short enough that 20 cards stay well under Gmail's clipping size.
EXCERPT_CHARS = 320
# Caps on what one record can contribute, so a runaway feed entry cannot blow the
# size budget or the layout. Titles longer than this are cut at a word.
TITLE_CHARS = 300
AUTHOR_CHARS = 80
PROFILE_CHARS = 500
TERM_CHARS = 80
MAX_TERMS = 12
# "A, B, C, D, E" is still readable; past that the list becomes "A, B, C et al.".
ALL_AUTHORS_UP_TO = 5
SHOWN_AUTHORS = 3
# Browsers and mail clients cope with longer URLs, but nothing we link to needs more.
MAX_URL_CHARS = 2048

ELLIPSIS = "…"

# C0 and C1 controls (tab, LF and CR are whitespace and are collapsed instead) become
# a space; bidi embeddings/overrides/isolates and the BOM are dropped, because a title
# could otherwise reorder the text around it (a spoofing trick, CVE-2021-42574 style).
_CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_INVISIBLE_CHARS = "\u202a-\u202e\u2066-\u2069\ufeff"
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIRTY = re.compile(f"[{_CONTROL_CHARS}{_INVISIBLE_CHARS}\ud800-\udfff]")
_WS = re.compile(r"\s+")
# Whitespace that is not a single space: what collapsing has to touch (matching every
# space instead would copy every segment).
_ODD_WS = re.compile(r"\s{2,}|[^\S ]")
# arXiv identifiers without version, new style (2401.01234) and old (hep-th/9901001);
# anything else is not turned into an arXiv link.
_ARXIV_ID = re.compile(r"(?:\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?")


@dataclass(frozen=True, slots=True)
class DigestPaper:
    """One ranked match, as the planner hands it to the email.

    ``matched`` are the profile terms that matched, as the subscriber wrote them.
    ``title_spans`` / ``abstract_spans`` are ``[start, end)`` character offsets into
    ``title`` / ``abstract``, sorted and non-overlapping (invalid spans are ignored).
    ``url`` is the paper's web page, used when there is no arXiv id.
    """

    title: str
    abstract: str
    authors: tuple[str, ...]
    arxiv_id: str | None
    url: str | None
    score: float
    matched: tuple[str, ...]
    title_spans: tuple[tuple[int, int], ...]
    abstract_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a digest is for. The URLs are absolute ``http(s)`` URLs carrying the
    subscriber's token; the unsubscribe URL also becomes the List-Unsubscribe header."""

    email: str
    profile: str
    unsubscribe_url: str
    preferences_url: str


def build_digest_context(
    recipient: Recipient,
    papers: Sequence[DigestPaper],
    *,
    period_label: str,
    web_url: str,
    site_name: str,
    max_papers: int = DEFAULT_MAX_PAPERS,
    more_count: int = 0,
) -> dict[str, Any]:
    """The JSON-safe context of the ``digest`` email.

    ``papers`` are ranked, best first; the first ``max_papers`` are listed and the rest
    counted in ``more``, like the ``more_count`` papers the planner already left out.
    ``total`` is every match of the period (listed + more). Raises ``ValueError`` if a
    recipient or web URL is not an absolute http(s) URL: those links are mandatory.

    Shape (see ``tests/data/emails/*.context.json``)::

        {"site_name", "period_label", "recipient": {"email", "profile"},
         "links": {"web", "preferences", "unsubscribe"},
         "papers": [{"rank", "title": [segment], "title_text", "authors",
                     "excerpt": [segment], "excerpt_cut_start", "excerpt_cut_end",
                     "matched": [str], "links": [link], "url", "arxiv_id", "score"}],
         "total", "more"}

    where a segment is ``{"text": str, "hit": bool}`` (hits are highlighted) and a
    link is ``{"label", "url", "primary": bool}``; ``url`` is the title's link or None.
    The excerpt is a window of the abstract; ``excerpt_cut_start`` / ``_end`` say
    whether text was left out before / after it (each template draws its ellipsis).
    """
    if max_papers < 0 or more_count < 0:
        raise ValueError("max_papers and more_count must not be negative")
    shown = [_paper_context(rank, paper) for rank, paper in enumerate(papers[:max_papers], 1)]
    more = len(papers) - len(shown) + more_count
    return {
        "site_name": clean_text(site_name),
        "period_label": clean_text(period_label),
        "recipient": {
            "email": clean_text(recipient.email),
            "profile": _cap(clean_text(recipient.profile), PROFILE_CHARS),
        },
        "links": {
            "web": _require_url(web_url, "web_url"),
            "preferences": _require_url(recipient.preferences_url, "preferences_url"),
            "unsubscribe": _require_url(recipient.unsubscribe_url, "unsubscribe_url"),
        },
        "papers": shown,
        "total": len(shown) + more,
        "more": more,
    }


def build_confirm_context(
    *, email: str, profile: str, confirm_url: str, site_name: str
) -> dict[str, Any]:
    """The JSON-safe context of the ``confirm`` email (double opt-in).

    It carries no unsubscribe link: the address is not subscribed until it confirms.
    Raises ``ValueError`` if ``confirm_url`` is not an absolute http(s) URL.
    """
    return {
        "site_name": clean_text(site_name),
        "recipient": {
            "email": clean_text(email),
            "profile": _cap(clean_text(profile), PROFILE_CHARS),
        },
        "links": {"confirm": _require_url(confirm_url, "confirm_url")},
    }


def clean_text(text: str) -> str:
    """``text`` as one clean line: controls and bidi overrides removed, lone
    surrogates replaced, whitespace runs collapsed to one space, ends stripped."""
    return " ".join(_scrub(text).split())


# --------------------------------------------------------------------------- papers


#: Paper contexts kept per process (see ``_paper_fields``); a daily run shows about
#: 40,000 distinct (paper, highlights) pairs.
PAPER_CACHE_MAX = 50_000


def _paper_context(rank: int, paper: DigestPaper) -> dict[str, Any]:
    # The rank goes last: the renderer's card cache slices it off the values.
    return {**_paper_fields(paper), "rank": rank}


@functools.lru_cache(maxsize=PAPER_CACHE_MAX)
def _paper_fields(paper: DigestPaper) -> dict[str, Any]:
    """Everything of a paper's context but its rank, memoised: the same paper with
    the same matches is in many digests of a run. The result is shared between
    contexts, so contexts are read-only (nothing here or in the renderer changes one).
    """
    # A title is shown from its start (cut at a word if absurdly long); the excerpt
    # is the window of the abstract around its first match.
    title_end = _window(paper.title, (), TITLE_CHARS)[1]
    title_spans = _valid_spans(paper.title_spans, len(paper.title))
    title = _segments(paper.title, title_spans, 0, title_end)
    if title and _clipped(paper.title, 0, title_end)[1]:
        title.append({"text": " " + ELLIPSIS, "hit": False})
    abstract_spans = _valid_spans(paper.abstract_spans, len(paper.abstract))
    start, end = _window(paper.abstract, abstract_spans, EXCERPT_CHARS)
    excerpt = _segments(paper.abstract, abstract_spans, start, end)
    cut_start, cut_end = _clipped(paper.abstract, start, end) if excerpt else (False, False)
    links = _links(paper.arxiv_id, paper.url)
    return {
        "title": title,
        "title_text": "".join(s["text"] for s in title),
        "authors": _authors(paper.authors),
        "excerpt": excerpt,
        "excerpt_cut_start": cut_start,
        "excerpt_cut_end": cut_end,
        "matched": _terms(paper.matched),
        "links": links,
        "url": links[0]["url"] if links else None,
        "arxiv_id": _arxiv_id(paper.arxiv_id),
        "score": round(paper.score, 4) if math.isfinite(paper.score) else 0.0,
    }


def _valid_spans(spans: Sequence[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Spans clipped to the text, empty ones dropped, overlaps dropped (first wins)."""
    out: list[tuple[int, int]] = []
    last = 0
    for raw_start, raw_end in sorted(spans):
        start, end = max(raw_start, last, 0), min(raw_end, length)
        if start < end:
            out.append((start, end))
            last = end
    return out


def _window(text: str, spans: Sequence[tuple[int, int]], size: int) -> tuple[int, int]:
    """``[start, end)`` of at most about ``size`` characters of ``text``, centred on the
    first span (or from the start), widened or narrowed to whole words."""
    n = len(text)
    if n <= size:
        return 0, n
    first = spans[0] if spans else (0, 0)
    centre = (first[0] + first[1]) // 2
    start = max(0, min(centre - size // 2, n - size))
    end = min(n, start + size)
    if start > 0 and not text[start - 1].isspace():
        # Mid-word: move forward to the next word, unless that would cut the match.
        gap = _WS.search(text, start, first[0]) if spans else _WS.search(text, start)
        start = gap.end() if gap else _word_start(text, start)
    if end < n and not text[end].isspace():
        back = _last_ws(text, max(start, first[1]), end)
        end = back if back is not None else _word_end(text, end)
    return start, end


def _word_start(text: str, i: int) -> int:
    while i > 0 and not text[i - 1].isspace():
        i -= 1
    return i


def _word_end(text: str, i: int) -> int:
    n = len(text)
    while i < n and not text[i].isspace():
        i += 1
    return i


def _last_ws(text: str, lo: int, hi: int) -> int | None:
    """Index of the last whitespace character in ``text[lo:hi]``, or None."""
    for i in range(hi - 1, lo - 1, -1):
        if text[i].isspace():
            return i
    return None


def _segments(
    text: str, spans: Sequence[tuple[int, int]], start: int, end: int
) -> list[dict[str, Any]]:
    """``text[start:end]`` cut into plain and hit segments, each cleaned. ``spans``
    are valid (see :func:`_valid_spans`) offsets into the raw text, so the window and
    the spans are applied before any cleaning changes lengths."""
    raw: list[tuple[str, bool]] = []
    pos = start
    for s, e in spans:
        s, e = max(s, start), min(e, end)
        if s >= e:
            continue
        if s > pos:
            raw.append((text[pos:s], False))
        raw.append((text[s:e], True))
        pos = e
    if pos < end:
        raw.append((text[pos:end], False))

    out: list[dict[str, Any]] = []
    for piece, hit in raw:
        cleaned = _ODD_WS.sub(" ", _scrub(piece))
        if out and out[-1]["text"].endswith(" "):
            cleaned = cleaned.lstrip(" ")  # whitespace across a segment boundary
        if not cleaned:
            continue
        if out and out[-1]["hit"] == hit:
            out[-1]["text"] += cleaned
        else:
            out.append({"text": cleaned, "hit": hit})
    if out:
        out[0]["text"] = out[0]["text"].lstrip(" ")
        out[-1]["text"] = out[-1]["text"].rstrip(" ")
    return [s for s in out if s["text"]]


def _clipped(text: str, start: int, end: int) -> tuple[bool, bool]:
    """Whether the window ``[start, end)`` leaves out text before / after it."""
    return bool(text[:start].strip()), bool(text[end:].strip())


def _authors(authors: Sequence[str]) -> str:
    names = [name for name in (_cap(clean_text(a), AUTHOR_CHARS) for a in authors) if name]
    if len(names) <= ALL_AUTHORS_UP_TO:
        return ", ".join(names)
    return ", ".join(names[:SHOWN_AUTHORS]) + " et al."


def _terms(matched: Sequence[str]) -> list[str]:
    terms = [_cap(clean_text(term), TERM_CHARS) for term in matched]
    return list(dict.fromkeys(t for t in terms if t))[:MAX_TERMS]


def _arxiv_id(arxiv_id: str | None) -> str | None:
    if arxiv_id is None:
        return None
    arxiv_id = arxiv_id.strip()
    return arxiv_id if _ARXIV_ID.fullmatch(arxiv_id) else None


def _links(arxiv_id: str | None, url: str | None) -> list[dict[str, Any]]:
    """arXiv abstract and PDF when the id is known, else the paper's page if any."""
    known = _arxiv_id(arxiv_id)
    if known is not None:
        return [
            {"label": "Abstract", "url": f"https://arxiv.org/abs/{known}", "primary": True},
            {"label": "PDF", "url": f"https://arxiv.org/pdf/{known}", "primary": False},
        ]
    page = safe_url(url)
    if page is not None:
        return [{"label": "Read", "url": page, "primary": True}]
    return []


# --------------------------------------------------------------------------- helpers


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL without whitespace or controls, else
    None. This is what keeps ``javascript:``, ``data:`` and relative links out."""
    if not url or len(url) > MAX_URL_CHARS:
        return None
    url = url.strip()
    if not url.isprintable() or any(ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _require_url(url: str, what: str) -> str:
    safe = safe_url(url)
    if safe is None:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url!r}")
    return safe


def _scrub(text: str) -> str:
    if not _DIRTY.search(text):  # the usual case: one scan, no copies
        return text
    if _SURROGATE.search(text):  # lone surrogates from a bad decode: not encodable
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _INVISIBLE.sub("", _CONTROL.sub(" ", text))


def _cap(text: str, limit: int) -> str:
    """``text`` cut at a word to at most ``limit`` characters plus an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + ELLIPSIS
