"""Feed parser: RSS / Atom bytes → :class:`PaperRecord` s (pure).

Three kinds of feed arrive here, all through feedparser:

* the arXiv API (Atom, one ``<author>`` per author, ids such as
  ``http://arxiv.org/abs/2202.12139v1``, ``<arxiv:doi>``);
* the arXiv listing feeds (``rss.arxiv.org/rss/cs.LG`` and ``/atom/cs.LG``, since 2024):
  ``<arxiv:announce_type>``, guid ``oai:arXiv.org:2401.01234v2``, a description that
  starts ``arXiv:2401.01234v2 Announce Type: new Abstract:``, and every author in one
  comma-joined ``<dc:creator>``;
* any other RSS 0.9x / 1.0 / 2.0 or Atom feed (journals with ``prism:doi`` or
  ``dc:identifier``, blogs with a title, a link and a summary).

Decisions worth knowing (each is pinned by a test):

* **No IO.** The bytes go to feedparser wrapped in :class:`io.BytesIO`: handed a bare
  ``bytes``/``str``, feedparser tries it as a URL and then as a *file name* first.
* **No sanitising, no URI resolution in content.** We keep text only, so the sanitiser
  is wasted work — and it mangles TeX: it turns ``$a<b$ and $c>d$`` into ``$a<b>d$``.
* **arXiv text is plain text.** feedparser labels every RSS description ``text/html``,
  but arXiv escapes its TeX once for XML and never writes markup, so stripping "tags"
  would eat ``<b$ … >`` out of formulas. Other feeds are stripped according to the
  type feedparser reports (``text/html``, ``application/xhtml+xml``).
* **Mojibake is repaired.** The arXiv API samples carry author names and formulas
  UTF-8-encoded twice (``Dirk WÃ¼bben``, ``$Î±$``). A run of characters that is
  exactly the Latin-1 reading of a UTF-8 sequence (a lead byte U+00C2–U+00F4 followed
  by the right number of U+0080–U+00BF continuation bytes) is decoded back
  (``Dirk Wübben``, ``$α$``). Correctly encoded text almost never has that shape: a
  capital A-tilde or a multiplication sign followed by a Latin-1 symbol (``×²`` would
  become ``ײ``). Nothing is lost by the repair, so it is not reported as a warning.
* **arXiv ``dc:creator`` is split** on commas outside parentheses (affiliations such
  as ``(LBNL, Berkeley)`` stay with their author), the last piece also on ``and``
  (``A, B and C``, ``A, B, and C``); a lone ``Jr.``/``Sr.``/``II``… rejoins the name
  before it; ``et al.`` is dropped. Other feeds give one author per element and
  their names are kept whole, because ``Smith, J.`` is one person there.
* **Identity.** arXiv ids (without version; the version kept apart) are read only
  where they are explicit: an arXiv id/guid, an arXiv / Hugging Face papers link, the
  ``arXiv:<id>`` prefix of a listing description — never from free text, where a
  number like ``1234.5678`` means nothing. The URL of an arXiv paper is its
  version-less abstract page, so a digest always links the latest version.
* A DOI comes from ``arxiv:doi``, ``prism:doi``, ``dc:identifier``, a DOI-shaped
  guid, then the entry's own ``doi.org`` links (never from links inside content,
  which cite other papers).
* Only ``http``/``https`` URLs are kept: the URL ends up as a link in an email.
* A listing feed's announcement day is each record's ``listed_on`` (the date of its
  ``pubDate`` in arXiv's own time zone).
"""

from __future__ import annotations

import io
import re
import warnings
import xml.sax
from collections.abc import Iterable
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from newsletter.errors import RejectedInput
from newsletter.papers.identity import normalise_doi, parse_arxiv_id
from newsletter.papers.records import PaperRecord, ParseResult
from newsletter.text import collapse_ws

#: The announce types arXiv's listing feeds use; another value is kept but reported,
#: because ingest decides what is news by it.
KNOWN_ANNOUNCE_TYPES = frozenset({"new", "cross", "replace", "replace-cross", "absonly"})

# "arXiv:2401.01234v2 Announce Type: new \nAbstract: ..." (the listing description).
_LISTING_PREFIX = re.compile(
    r"^\s*arXiv:(\S+)\s+Announce\s+Type:\s*([A-Za-z-]+)\s*(?:Abstract:\s*)?", re.IGNORECASE
)

# Hosts whose /abs/, /pdf/ or /html/ paths name an arXiv paper.
_ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
_ARXIV_PATHS = ("/abs/", "/pdf/", "/html/")
# Hugging Face Daily Papers pages are keyed by the arXiv id: /papers/2401.01234.
_HF_HOSTS = frozenset({"huggingface.co", "hf.co"})
_DOI_HOSTS = frozenset({"doi.org", "dx.doi.org", "www.doi.org"})

# A UTF-8 sequence read as Latin-1: a lead byte and its continuation bytes.
_MOJIBAKE = re.compile(
    "[\u00c2-\u00df][\u0080-\u00bf]|[\u00e0-\u00ef][\u0080-\u00bf]{2}|[\u00f0-\u00f4][\u0080-\u00bf]{3}"
)

_NAME_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"})
_ET_AL = re.compile(r"^et\.?\s+al\.?$", re.IGNORECASE)
_AND = re.compile(r"(?:^|\s+)and\s+", re.IGNORECASE)

# Closing tags of items/entries, to tell whether the last entry of a broken document
# was complete (any namespace prefix; feedparser accepts ``<atom:entry>`` too).
_ENTRY_END = re.compile(r"</(?:[\w.-]+:)?(?:item|entry)\s*>", re.IGNORECASE)

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: How many entry positions a warning lists before it says "and N more".
MAX_LISTED_POSITIONS = 10


def parse_feed(data: bytes, *, url: str | None = None) -> ParseResult:
    """Parse an RSS or Atom document into paper records.

    ``url`` is where the bytes came from; an ``http(s)`` URL is the base for relative
    links, anything else (a file path) is ignored. Nothing is fetched.

    Returns every entry with a title as a :class:`PaperRecord`; untitled entries are
    counted in ``skipped``. ``warnings`` reports what was lost: a document that is not
    well-formed XML (its entries are kept as far as feedparser recovers them, except a
    last entry cut off by the end of the document), a fallback character encoding,
    untitled entries, unknown announce types. A feed with no entries is a valid, empty
    result (an arXiv listing is empty every weekend).

    Raises :class:`RejectedInput` (and nothing else, for any bytes) when ``data`` is not
    a feed at all: empty, binary, JSON, an HTML page, other XML.
    """
    reason = _sniff_not_a_feed(data)
    if reason:
        raise RejectedInput(reason)
    parsed, parser_notes = _run_feedparser(data, url)
    raw_entries = list(dict.get(parsed, "entries") or [])
    error = parsed.get("bozo_exception") if parsed.get("bozo") else None
    # The document text is only needed to explain a parse error; decode it only then.
    text = _decode(data, parsed.get("encoding")) if isinstance(error, _XML_ERRORS) else ""
    if not parsed.get("version") and not raw_entries:
        raise RejectedInput(_why_not_a_feed(data, error, text))

    result = ParseResult()
    if isinstance(error, _XML_ERRORS):
        result.warnings.append(
            f"feed is not well-formed XML: {_xml_error(error, text)}; "
            f"{len(raw_entries)} {_entries(len(raw_entries))} recovered"
        )
    elif error is not None:
        result.warnings.append(f"feed encoding: {error}")
    result.warnings.extend(parser_notes)
    entries = _drop_cut_off_entry(error, text, raw_entries, result)
    base = url if url and _scheme(url) in ("http", "https") else None

    untitled: list[int] = []
    unknown_types: dict[str, int] = {}
    for position, entry in enumerate(entries, start=1):
        record = _record(entry, base)
        if record is None:
            untitled.append(position)
            continue
        if record.announce_type and record.announce_type not in KNOWN_ANNOUNCE_TYPES:
            unknown_types[record.announce_type] = unknown_types.get(record.announce_type, 0) + 1
        result.records.append(record)

    if untitled:
        result.skipped += len(untitled)
        result.warnings.append(
            f"{len(untitled)} {_entries(len(untitled))} without a title skipped "
            f"({_positions(untitled)})"
        )
    for kind, count in unknown_types.items():
        result.warnings.append(f"unknown arXiv announce type {kind!r} in {count} {_entries(count)}")
    days = {r.listed_on for r in result.records}
    if len(days) == 1:
        result.listed_on = days.pop()
    return result


# -- is it a feed at all? ------------------------------------------------------------------

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # also the start of the UTF-32 LE/BE BOMs


def _sniff_not_a_feed(data: bytes) -> str | None:
    """The reason ``data`` is obviously not a feed, before feedparser spends time on it."""
    if not data:
        return "empty document, not an RSS or Atom feed"
    head = data[:4096]
    # UTF-16/32 feeds are full of NULs; they start with a BOM or a NUL-padded '<'.
    wide = head.startswith(_UTF16_BOMS) or head[:4] in (b"<\x00?\x00", b"\x00<\x00?")
    if not wide and (b"\x00" in head or _control_ratio(head) > MAX_CONTROL_RATIO):
        return "binary data, not an RSS or Atom feed"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        return "empty document (only whitespace), not an RSS or Atom feed"
    if text[:1] in (b"{", b"["):
        return "JSON, not an RSS or Atom feed"
    return None


#: XML forbids C0 control characters; a feed with a stray one is still read (leniently),
#: but a head made of more than 1% of them is binary.
MAX_CONTROL_RATIO = 0.01
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 13))


def _control_ratio(head: bytes) -> float:
    stripped = head.translate(None, _CONTROL_BYTES)
    return (len(head) - len(stripped)) / len(head)


def _why_not_a_feed(data: bytes, error: object, text: str) -> str:
    head = data[:4096].lower()
    if b"<html" in head or b"<!doctype html" in head:
        return "an HTML page, not an RSS or Atom feed"
    if isinstance(error, _XML_ERRORS):
        return f"not an RSS or Atom feed: not well-formed XML ({_xml_error(error, text)})"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "XML, but not an RSS or Atom feed (no <rss>, <feed> or <rdf:RDF> root)"
    return "not an RSS or Atom feed"


def _run_feedparser(data: bytes, url: str | None) -> tuple[Any, list[str]]:
    """feedparser on the bytes, nothing fetched; its Python warnings are caught here.

    Deprecation warnings are about feedparser's own API, not the input, and are
    dropped; any other warning becomes a parse warning. Scoped to this call so the
    rest of the process (and pytest's ``filterwarnings = error``) is unaffected.
    feedparser 6.0 warns only when a FeedParserDict is read by a deprecated key, which
    :func:`_get` avoids, so this is a safety net; ``catch_warnings`` swaps the global
    filter list, so a warning raised by another thread meanwhile may be swallowed.
    """
    headers = {"content-location": url} if url and "://" in url else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parsed = feedparser.parse(
                io.BytesIO(data),
                response_headers=headers,
                sanitize_html=False,
                resolve_relative_uris=False,
            )
        except Exception as exc:  # feedparser on hostile bytes: a refusal, not a crash
            raise RejectedInput(f"feed could not be parsed: {type(exc).__name__}: {exc}") from exc
    notes = [
        f"feed parser: {w.message}"
        for w in caught
        if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)
    ]
    return parsed, notes


# What feedparser reports when its strict XML parser gave up and its lenient one took
# over: an expat error, or an element in a namespace the document never declared.
_XML_ERRORS = (xml.sax.SAXException, feedparser.UndeclaredNamespace)
_XML_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml")


def _xml_error(error: BaseException, text: str) -> str:
    """The parse error with its line in the document as the caller has it."""
    line = _error_line(error, text)
    if isinstance(error, xml.sax.SAXParseException):
        message = error.getMessage()
        return f"{message} at line {line}" if line else message
    return str(error)


def _error_line(error: BaseException, text: str) -> int | None:
    if not isinstance(error, xml.sax.SAXParseException):
        return None
    line = error.getLineNumber()
    if not line:
        return None
    # feedparser prepends an XML declaration line to a document that has none.
    if not _XML_DECLARATION.match(text):
        line -= 1
    return max(line, 1)


def _drop_cut_off_entry(
    error: object, text: str, entries: list[Any], result: ParseResult
) -> list[Any]:
    """Drop the last entry when a broken document ends inside it.

    feedparser's lenient parser keeps an entry that was never closed; in a truncated
    download that entry has a truncated title or abstract, and a wrong title would be
    stored as a paper of its own. It is dropped when the strict parse failed on the
    last line and the document has fewer closing tags than entries.
    """
    if not entries or not isinstance(error, xml.sax.SAXParseException):
        return entries
    line = _error_line(error, text)
    if line is None or line < text.count("\n") + 1:
        return entries
    if len(_ENTRY_END.findall(text)) >= len(entries):
        return entries
    title = collapse_ws(_str(_get(entries[-1], "title")))[:60]
    result.skipped += 1
    result.warnings.append(
        f"the last entry ({title!r}) is cut off by the end of the document; dropped"
    )
    return entries[:-1]


def _decode(data: bytes, encoding: object) -> str:
    try:
        return data.decode(encoding if isinstance(encoding, str) else "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


# -- one entry -----------------------------------------------------------------------------

# feedparser's entries are FeedParserDicts, dict subclasses whose own lookup maps
# ``updated`` to ``published`` with a DeprecationWarning; plain dict access avoids that.
_Entry = dict[str, Any]


def _get(entry: _Entry, key: str) -> Any:
    return dict.get(entry, key)


def _record(entry: _Entry, base: str | None) -> PaperRecord | None:
    """The record for one feedparser entry, or None when it has no title."""
    guid = collapse_ws(_str(_get(entry, "id"))) or None
    summary, summary_type = _summary(entry)
    prefix = _LISTING_PREFIX.match(summary)
    announce = collapse_ws(_str(_get(entry, "arxiv_announce_type"))).lower() or None
    if announce is None and prefix:
        announce = prefix.group(2).lower()
    is_listing = bool(announce or prefix or (guid and guid.lower().startswith("oai:arxiv.org:")))
    links = _links(entry, base)

    title_detail = _get(entry, "title_detail") or {}
    title = _clean(
        _str(_get(entry, "title")),
        None if is_listing else _str(title_detail.get("type")),
    )
    if not title:
        return None

    abstract = summary[prefix.end() :] if prefix else summary
    abstract = _clean(abstract, None if is_listing else summary_type)

    arxiv = _arxiv_id(guid, links, prefix.group(1) if prefix else None)
    published = _published(entry)
    return PaperRecord(
        title=title,
        abstract=abstract,
        authors=_authors(entry, split=is_listing),
        url=f"https://arxiv.org/abs/{arxiv[0]}" if arxiv else _entry_url(entry, links, base),
        arxiv_id=arxiv[0] if arxiv else None,
        version=arxiv[1] if arxiv else None,
        doi=_doi(entry, guid, links),
        categories=_categories(entry),
        published=published,
        listed_on=_listed_on(entry, published) if announce else None,
        announce_type=announce,
        guid=guid,
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _summary(entry: _Entry) -> tuple[str, str | None]:
    """The entry's summary (or, lacking one, its first content) and its media type."""
    contents = [c for c in _get(entry, "content") or [] if _str(c.get("value"))]
    summary = _str(_get(entry, "summary"))
    if summary:
        # feedparser copies a lone <content:encoded> / Atom <content> into ``summary``
        # without a ``summary_detail``; the content's type then describes it.
        detail = _get(entry, "summary_detail") or (contents[0] if contents else {})
        return summary, _str(detail.get("type")) or None
    if contents:
        return _str(contents[0].get("value")), _str(contents[0].get("type")) or None
    return "", None


def _clean(text: str, media_type: str | None) -> str:
    """Plain text: tags stripped and entities decoded if it is HTML, mojibake repaired,
    whitespace collapsed."""
    if media_type in _HTML_TYPES:
        text = html_to_text(text)
    return collapse_ws(repair_mojibake(text))


def _links(entry: _Entry, base: str | None) -> list[str]:
    """The entry's own link targets, absolute, ``link`` (the alternate) first."""
    hrefs = [_str(_get(entry, "link"))]
    hrefs += [_str(link.get("href")) for link in _get(entry, "links") or []]
    seen: list[str] = []
    for href in hrefs:
        href = href.strip()
        if base and href:
            href = urljoin(base, href)
        if href and href not in seen:
            seen.append(href)
    return seen


def _host_path(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
        return (parts.hostname or "").lower(), parts.path
    except ValueError:  # "http://[broken" and friends
        return "", ""


def _arxiv_id(
    guid: str | None, links: list[str], listed: str | None
) -> tuple[str, int | None] | None:
    """The arXiv id and version named explicitly by guid, links or listing prefix.

    The first source that names an id wins; the version comes from the first source
    that gives one for that id (a listing link has none, its guid does).
    """
    candidates: list[str] = []
    if guid and _names_arxiv(guid):
        candidates.append(guid)
    candidates += [link for link in links if _names_arxiv(link)]
    if listed:
        candidates.append(listed)
    found = [f for f in (parse_arxiv_id(c) for c in candidates) if f]
    if not found:
        return None
    arxiv_id = found[0][0]
    version = next((v for i, v in found if i == arxiv_id and v is not None), None)
    return arxiv_id, version


def _names_arxiv(text: str) -> bool:
    lowered = text.lower()
    if lowered.startswith(("oai:arxiv.org:", "arxiv:")):
        return True
    host, path = _host_path(text)
    if host in _ARXIV_HOSTS:
        return path.startswith(_ARXIV_PATHS)
    return host in _HF_HOSTS and path.startswith("/papers/")


def _doi(entry: _Entry, guid: str | None, links: list[str]) -> str | None:
    fields = [_str(_get(entry, key)) for key in ("arxiv_doi", "prism_doi", "dc_identifier")]
    if guid and (
        guid.lower().startswith(("doi:", "info:doi/")) or _host_path(guid)[0] in _DOI_HOSTS
    ):
        fields.append(guid)
    fields += [link for link in links if _host_path(link)[0] in _DOI_HOSTS]
    for text in fields:
        doi = normalise_doi(text) if text else None
        if doi:
            return doi
    return None


def _entry_url(entry: _Entry, links: list[str], base: str | None) -> str | None:
    """The first web link of the entry; a permalink guid when there is no link."""
    candidates = list(links)
    if _get(entry, "guidislink"):
        candidates.append(_str(_get(entry, "id")))
    for href in candidates:
        if _scheme(href) in ("http", "https"):
            return href
    return None


def _scheme(url: str) -> str:
    try:
        return urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return ""


def _authors(entry: _Entry, *, split: bool) -> tuple[str, ...]:
    names: list[str] = []
    for author in _get(entry, "authors") or []:
        name = collapse_ws(repair_mojibake(_str(author.get("name"))))
        if not name:
            continue
        names.extend(split_creators(name) if split else [name])
    return tuple(names)


def _categories(entry: _Entry) -> tuple[str, ...]:
    terms: list[str] = []
    for tag in _get(entry, "tags") or []:
        term = collapse_ws(_str(tag.get("term")))
        if term and term not in terms:
            terms.append(term)
    return tuple(terms)


def _published(entry: _Entry) -> datetime | None:
    """First publication time in UTC (feedparser's parsed dates are UTC struct_times);
    the update time when the feed gives only that."""
    for key in ("published_parsed", "updated_parsed"):
        parsed = _get(entry, key)
        if parsed:
            try:
                return datetime(*parsed[:6]).replace(tzinfo=UTC)
            except (TypeError, ValueError, OverflowError):
                continue
    return None


def _listed_on(entry: _Entry, published: datetime | None) -> date | None:
    """The announcement day: the date of the raw timestamp in its own time zone.

    arXiv stamps a listing at midnight US Eastern; its UTC date is the same day only
    by luck of the offset, so the raw value is read when it parses.
    """
    raw = _str(_get(entry, "published")) or _str(_get(entry, "updated"))
    if raw:
        try:
            return parsedate_to_datetime(raw).date()
        except (TypeError, ValueError, IndexError):
            pass
        try:
            return datetime.fromisoformat(raw.strip()).date()
        except ValueError:
            pass
    return published.date() if published else None


# -- text helpers (public: the dump parser and tests may reuse them) -----------------------


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 that was decoded as Latin-1 (``JosÃ© RaÃºl`` → ``José Raúl``).

    Only exact UTF-8 sequences are touched, one run at a time, so correctly encoded
    text — including text that mixes real accents with mojibake — is left as it is.
    """
    if not _MOJIBAKE.search(text):
        return text

    def fix(match: re.Match[str]) -> str:
        try:
            return match.group().encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:  # e.g. an overlong or surrogate sequence
            return match.group()

    return _MOJIBAKE.sub(fix, text)


def split_creators(creators: str) -> list[str]:
    """Split an arXiv ``dc:creator`` string into author names.

    ``"A, B and C"``, ``"A, B, and C"`` and ``"A and B"`` give ``[A, B, C]`` / ``[A, B]``;
    commas inside parentheses do not split (``"A (MIT, Boston), B"``); a lone suffix
    rejoins its name (``"Guy Steele, Jr., B"`` → ``["Guy Steele Jr.", "B"]``);
    ``et al.`` is dropped.
    """
    pieces = _split_outside_parens(creators, re.compile(","))
    if pieces:
        pieces[-1:] = _split_outside_parens(pieces[-1], _AND)
    names: list[str] = []
    for piece in (collapse_ws(p) for p in pieces):
        if not piece or _ET_AL.match(piece):
            continue
        if names and piece.lower() in _NAME_SUFFIXES:
            names[-1] = f"{names[-1]} {piece}"
        else:
            names.append(piece)
    return names


def _split_outside_parens(text: str, separator: re.Pattern[str]) -> list[str]:
    depth_at: list[int] = []  # parenthesis depth before each character
    depth = 0
    for ch in text:
        depth_at.append(depth)
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth:
            depth -= 1
    pieces: list[str] = []
    start = 0
    for match in separator.finditer(text):
        if depth_at[match.start()] == 0:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return [p for p in (p.strip() for p in pieces) if p]


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment; script and style content is dropped,
    block elements become spaces so words on either side do not run together."""

    _SKIP = frozenset({"script", "style", "template"})
    _BLOCK = frozenset(
        {"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4",
         "h5", "h6", "blockquote", "pre", "hr", "section", "article", "table", "dd", "dt"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """The text of an HTML fragment: tags removed, entities decoded (not collapsed)."""
    if "<" not in fragment and "&" not in fragment:
        return fragment
    extractor = _TextExtractor()
    extractor.feed(fragment)
    extractor.close()
    return "".join(extractor.parts)


def _entries(n: int) -> str:
    return "entry" if n == 1 else "entries"


def _positions(positions: Iterable[int]) -> str:
    listed = list(positions)
    shown = ", ".join(str(p) for p in listed[:MAX_LISTED_POSITIONS])
    more = len(listed) - MAX_LISTED_POSITIONS
    return f"{_entries(len(listed))} {shown}" + (f" and {more} more" if more > 0 else "")
