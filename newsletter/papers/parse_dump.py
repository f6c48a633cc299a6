"""Parse a plain-text copy of the Hugging Face "Daily Papers" page (pure, no IO).

A dump is paragraphs separated by blank lines: a header of page chrome (``new``,
``Subscribe``, ``Daily Papers``, ``by AK and the research community`` ...), an optional
date line (``Jul 30``, no year), then title / abstract pairs. Nothing else: no ids, no
authors, no links. See DESIGN.md, "Inputs".

The contract of :func:`parse_dump`:

* it returns the complete papers it found, each with ``title``, ``abstract`` and
  ``listed_on`` only, plus human-readable ``warnings`` saying what was lost and where;
* it raises :class:`~newsletter.errors.RejectedInput` (with a one-line reason for the
  operator) for input that is not a dump at all, and never raises anything else, on
  any bytes.

Recognising titles and abstracts is a heuristic, tuned on the real samples in
``shared/samples/dumps`` (115 papers): titles there are 9-152 characters, abstracts
1,386-1,918 characters. The thresholds below leave a wide margin on both sides, and
the pairing recovers from the damage seen in the wild (missing abstracts, split
abstracts, stray blank lines, a truncated last record).
"""

from __future__ import annotations

import re
from datetime import MINYEAR, date, datetime

from newsletter.errors import RejectedInput
from newsletter.papers.records import PaperRecord, ParseResult

__all__ = ["parse_dump"]

# A paragraph longer than this is an abstract. Real titles top out at 152 characters in
# the samples and rarely pass 250 on arXiv; the shortest sample abstract is 1,386, and
# shorter abstracts are still caught by the punctuation rules in _is_prose.
TITLE_MAX_CHARS = 300

# A title may hold one sentence break ("Be More Active! Understanding the ..." is a real
# title); two or more breaks make a paragraph prose.
TITLE_MAX_SENTENCE_BREAKS = 1

# Share of control characters (other than tab, newline, carriage return and form feed)
# above which the input is binary. Real dumps have none and a stray escape from a
# terminal copy is a handful in 100 kB; random bytes are 11-24 % controls.
MAX_CONTROL_RATIO = 0.01

# HTML is recognised by its opening (doctype / <html> within this many characters,
# which leaves room for a "saved from url" comment) ...
HTML_HEAD_CHARS = 1024
# ... or by this many well-known tags anywhere: an abstract may mention "<p>" once, a web
# page has hundreds of tags.
HTML_MIN_TAGS = 20

# The date line and chrome lines are short; longer header lines are never looked up.
HEADER_LINE_MAX_CHARS = 60

# How much of a dropped abstract a warning quotes, so the operator can find it.
EXCERPT_CHARS = 60

# Page chrome, compared after keeping only letters and digits (casefolded), so
# "byAK and the research community", "Get trending papers in your email inbox" (no "!")
# and spacing variants all match.
_CHROME = frozenset(
    {
        "new",
        "gettrendingpapersinyouremailinbox",
        "subscribe",
        "dailypapers",
        "byakandtheresearchcommunity",
    }
)

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}

# "Jul 30", "July 30th", "Sep. 3", "Jul 30, 2024" (a year is used when present).
# re.ASCII keeps IGNORECASE from matching look-alikes such as "ſep" that _MONTHS lacks.
_DATE_LINE = re.compile(
    r"(?P<month>[a-z]{3,9})\.?\s+(?P<day>[0-9]{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<year>[0-9]{4}))?",
    re.ASCII | re.IGNORECASE,
)

# A sentence break: terminal punctuation, optional closing quote/bracket, space, capital.
# No nested quantifiers, so no backtracking trap; only ever run on short paragraphs.
_SENTENCE_BREAK = re.compile(r"[.!?][\"'”’)\]]?\s+[A-Z]")

_HTML_TAG = re.compile(
    r"</?(?:html|head|body|div|span|p|a|script|style|meta|link|table|tr|td|li|ul|ol|br|img"
    r"|title|form|input|button|nav|header|footer|section|article|svg|path)\b",
    re.ASCII | re.IGNORECASE,
)

# Control characters that make text binary, as bytes (for counting in C speed) and as a
# pattern (for removing the few a text file may carry). Tab, LF, CR and form feed are
# text. For latin-1 decoded input the C1 range is counted too: there every byte is a
# character, so binary junk shows up as C1 controls.
_ASCII_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])
_C1_CONTROL_BYTES = bytes(range(0x80, 0xA0))
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

# Signatures of binary files someone may drop in the inbox by mistake.
_BINARY_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
    b"PK\x03\x04",  # zip, docx, xlsx
    b"\x1f\x8b",  # gzip
    b"\x7fELF",
)

_BOM_UTF8 = b"\xef\xbb\xbf"
_BOMS_UTF16 = (b"\xff\xfe", b"\xfe\xff")

# Characters that may close a sentence after its terminal punctuation.
_CLOSERS = "\"'”’»)]}"
_TERMINAL = ".!?…"


def parse_dump(data: bytes, *, file_time: datetime) -> ParseResult:
    """Parse a Daily Papers text dump into records.

    ``file_time`` is when the file was written (or received); it dates the papers: a date
    line ``Jul 30`` gets the latest year that does not put it after ``file_time``'s day,
    and a dump without a date line is dated ``file_time.date()``. Every record and the
    result carry that date as ``listed_on``.

    Records carry ``title``, ``abstract`` (one paragraph, whitespace collapsed) and
    ``listed_on``. A title whose abstract is missing is kept with an empty abstract; a
    truncated last record is not kept but counted in ``skipped``; both are reported in
    ``warnings``, as is a decoding fallback.

    Raises RejectedInput for an empty, binary or HTML file, or one with no papers; never
    raises anything else.
    """
    warnings: list[str] = []
    text = _decode_text(data, warnings)
    text = _normalise_newlines(text)
    if not text.strip():
        raise RejectedInput("empty file (whitespace only)")
    if _looks_like_html(text):
        raise RejectedInput("HTML page, not a plain-text dump (save the page as text)")

    lines = text.split("\n")
    body_start, date_text, header_seen = _read_header(lines)
    listed_on = _listed_on(date_text, file_time.date(), warnings)

    result = ParseResult(warnings=warnings, listed_on=listed_on)
    _pair(_units(lines[body_start:]), result)
    if not result.records:
        where = "after the page header" if header_seen or date_text else "in the file"
        if result.skipped:
            raise RejectedInput(f"no complete papers found {where} ({result.skipped} incomplete)")
        raise RejectedInput(f"no papers found {where}")
    if not any(record.abstract for record in result.records):
        # Only title-like lines: a list of headings, not a dump.
        raise RejectedInput("no papers found: no title is followed by an abstract")
    return result


# -- decoding and refusal ------------------------------------------------------------


def _decode_text(data: bytes, warnings: list[str]) -> str:
    """Bytes to text, refusing empty and binary input; warns about any fallback."""
    if data.startswith(_BOM_UTF8):
        data = data[len(_BOM_UTF8) :]
        had_bom = True
    else:
        had_bom = False
    if not data:
        raise RejectedInput("empty file")
    if data.startswith(_BOMS_UTF16):
        # Windows editors save "Unicode" text as UTF-16 with a BOM; that is text, not
        # binary, even though it is full of NUL bytes.
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise RejectedInput("binary data, not a text dump") from None
        return _drop_controls(text, _count_controls(text.encode("utf-8")), warnings)

    if data.startswith(_BINARY_MAGIC) or b"\x00" in data:
        raise RejectedInput("binary data, not a text dump")

    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        text, encoding = _decode_fallback(data, had_bom, warnings)
    controls = _count_controls(data)
    if encoding == "latin-1":
        controls += len(data) - len(data.translate(None, _C1_CONTROL_BYTES))
    return _drop_controls(text, controls, warnings)


def _decode_fallback(data: bytes, had_bom: bool, warnings: list[str]) -> tuple[str, str]:
    """Decode bytes that are not valid UTF-8; return (text, encoding) and add a warning.

    A file that is mostly UTF-8 (it has a BOM or real multi-byte characters) with a few
    corrupt bytes stays UTF-8 with those bytes replaced: reading it as cp1252 would
    garble every accented letter instead of a few bytes.
    """
    replaced = data.decode("utf-8", errors="replace")
    if had_bom or not replaced.replace("\ufffd", "").isascii():
        lost = replaced.count("\ufffd") - data.count("\ufffd".encode())
        warnings.append(f"not valid UTF-8: {lost} undecodable bytes replaced with U+FFFD")
        return replaced, "utf-8"
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        warnings.append("not valid UTF-8 or cp1252; decoded as latin-1")
        return data.decode("latin-1"), "latin-1"
    warnings.append("not valid UTF-8; decoded as cp1252")
    return text, "cp1252"


def _count_controls(raw: bytes) -> int:
    """Number of ASCII control bytes (not tab/LF/CR/FF); bytes.translate runs in C."""
    return len(raw) - len(raw.translate(None, _ASCII_CONTROL_BYTES))


def _drop_controls(text: str, controls: int, warnings: list[str]) -> str:
    """Refuse binary-looking text; remove the few control characters a text may carry."""
    if controls > MAX_CONTROL_RATIO * len(text):
        raise RejectedInput("binary data, not a text dump")
    if controls:
        text, removed = _CONTROL_CHARS.subn("", text)
        if removed:
            warnings.append(f"removed {removed} control character(s) (not text)")
    return text


def _normalise_newlines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _looks_like_html(text: str) -> bool:
    head = text[:HTML_HEAD_CHARS].lower()
    if head.lstrip().startswith(("<!doctype", "<html")) or "<html" in head:
        return True
    # Stop at the threshold: a web page reaches it within its first few hundred bytes.
    return any(count >= HTML_MIN_TAGS for count, _ in enumerate(_HTML_TAG.finditer(text), 1))


# -- header and date -----------------------------------------------------------------


def _read_header(lines: list[str]) -> tuple[int, str | None, bool]:
    """Skip page chrome and the date line, in any order; return where the body starts.

    Returns (index of the first body line, the date line or None, whether any chrome
    line was seen). Chrome is recognised line by line, so a header with its lines run
    together, reordered or partly missing still parses.
    """
    date_text: str | None = None
    header_seen = False
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if len(line) > HEADER_LINE_MAX_CHARS:
            return index, date_text, header_seen
        if _chrome_key(line) in _CHROME:
            header_seen = True
            continue
        if date_text is None and _parse_date_line(line) is not None:
            date_text = line
            continue
        return index, date_text, header_seen
    return len(lines), date_text, header_seen


def _chrome_key(line: str) -> str:
    return "".join(ch for ch in line.casefold() if ch.isalnum())


def _parse_date_line(line: str) -> tuple[int, int, int | None] | None:
    """(month, day, year or None) for a date line, None for anything else."""
    match = _DATE_LINE.fullmatch(line)
    if match is None:
        return None
    month = _MONTHS.get(match["month"].lower())
    if month is None:
        return None
    year = match["year"]
    return month, int(match["day"]), int(year) if year else None


def _listed_on(date_text: str | None, today: date, warnings: list[str]) -> date:
    """The day the dump lists papers for (DESIGN.md: latest year not in the future)."""
    if date_text is None:
        return today
    parsed = _parse_date_line(date_text)
    assert parsed is not None  # _read_header only keeps lines that parse
    month, day, year = parsed
    found = _explicit_date(year, month, day) if year else _infer_year(month, day, today)
    if found is None:
        warnings.append(f'date line "{date_text}" is not a real date; dated {today.isoformat()}')
        return today
    return found


def _explicit_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _infer_year(month: int, day: int, today: date) -> date | None:
    """The latest ``date(year, month, day)`` that is not after ``today``.

    Nine years back always reaches a leap year, so Feb 29 resolves too (2104 → 2096
    is the longest gap, across the non-leap 2100).
    """
    for year in range(today.year, max(MINYEAR, today.year - 8) - 1, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= today:
            return candidate
    return None


# -- paragraphs and pairing ----------------------------------------------------------


def _units(lines: list[str]) -> list[str]:
    """Body lines to units (candidate titles and abstract paragraphs), whitespace collapsed.

    Blank lines separate paragraphs. A multi-line paragraph with a line too long to be a
    title was written one item per line (titles and abstracts without blank lines
    between them), so each line is a unit; otherwise it is hard-wrapped text and its
    lines are joined into one unit.
    """
    units: list[str] = []
    paragraph: list[str] = []
    for raw in [*lines, ""]:
        line = raw.strip()
        if line:
            paragraph.append(line)
            continue
        if not paragraph:
            continue
        if len(paragraph) == 1:
            units.append(_squash(paragraph[0]))
        elif any(len(part) > TITLE_MAX_CHARS for part in paragraph):
            units.extend(_squash(part) for part in paragraph)
        else:
            units.append(_squash(" ".join(paragraph)))
        paragraph = []
    return units


def _squash(text: str) -> str:
    """Same result as newsletter.text.collapse_ws, at a fraction of the cost.

    str.split() splits on exactly the characters re's ``\\s`` matches; the fast path
    skips the split for the common clean ASCII line.
    """
    if text.isascii() and "  " not in text and "\t" not in text and "\f" not in text:
        return text.strip()
    return " ".join(text.split())


def _is_prose(unit: str) -> bool:
    """True for abstract text, False for a title (short, one line, no sentence structure)."""
    if len(unit) > TITLE_MAX_CHARS:
        return True
    # Titles do not end with a full stop; abstracts, even one-sentence ones, do.
    if unit.endswith(".") and not unit.endswith(".."):
        return True
    # A link is the tail of an abstract ("Code: https://..."), never a title.
    if "://" in unit or "www." in unit:
        return True
    return len(_SENTENCE_BREAK.findall(unit)) > TITLE_MAX_SENTENCE_BREAKS


def _pair(units: list[str], result: ParseResult) -> None:
    """Pair titles with the prose that follows them, appending to ``result``.

    Prose after prose is one abstract split into paragraphs, and is joined. A title
    after a title means the first lost its abstract: it is kept with an empty one. The
    last record is kept only if it is complete: a file that ends with a title, or with
    an abstract that stops mid-sentence, was cut while being written.
    """
    title: str | None = None
    abstract: list[str] = []
    previous_had_no_abstract = False
    for unit in units:
        if _is_prose(unit):
            if title is None:
                result.skipped += 1
                result.warnings.append(f'dropped text with no title before it: "{_excerpt(unit)}"')
            else:
                abstract.append(unit)
            continue
        if title is not None:
            previous_had_no_abstract = not abstract
            _keep(result, title, abstract)
        title, abstract = unit, []
    if title is None:
        return
    if not abstract and previous_had_no_abstract:
        # The file ends "Title" / "Some words": by where a cut lands (abstracts are most
        # of the bytes, missing abstracts are rare) the tail is far likelier the start of
        # that title's abstract, cut before its first full stop, than a second title.
        # Undo keeping the previous title and skip it as truncated instead.
        dropped = result.records.pop()
        result.warnings.pop()
        _skip_truncated(result, dropped.title, title)
        return
    if not abstract:
        result.skipped += 1
        result.warnings.append(f'"{title}": the file ends after this title; paper skipped')
        return
    text = " ".join(abstract)
    if not _looks_complete(text):
        _skip_truncated(result, title, text)
        return
    _keep(result, title, abstract)


def _keep(result: ParseResult, title: str, abstract: list[str]) -> None:
    if not abstract:
        result.warnings.append(
            f'"{title}": no abstract (another title follows it); kept with an empty abstract'
        )
    result.records.append(
        PaperRecord(title=title, abstract=" ".join(abstract), listed_on=result.listed_on)
    )


def _skip_truncated(result: ParseResult, title: str, abstract: str) -> None:
    result.skipped += 1
    tail = abstract[-EXCERPT_CHARS:]
    result.warnings.append(
        f'"{title}": the abstract stops mid-sentence ("…{tail}"); '
        "the file looks truncated, paper skipped"
    )


def _looks_complete(abstract: str) -> bool:
    """True when the text ends like a finished abstract.

    That is terminal punctuation (possibly inside quotes or brackets), or a link or
    domain as the last word: several sample abstracts end "Code is available at
    https://github.com/..." or "... at econ.is.tue.mpg.de" with no full stop.
    """
    tail = abstract.rstrip(_CLOSERS)
    if tail.endswith(tuple(_TERMINAL)):
        return True
    last_word = abstract.rsplit(" ", 1)[-1].rstrip(_CLOSERS)
    if "/" in last_word:
        return True
    labels = last_word.split(".")
    # A domain: two or more non-empty labels, the last alphabetic (a TLD), so "e.g" and
    # "Fig.3" do not count.
    return (
        len(labels) >= 2
        and all(labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
        and labels[-1].isascii()
    )


def _excerpt(text: str) -> str:
    if len(text) <= EXCERPT_CHARS:
        return text
    return text[:EXCERPT_CHARS].rstrip() + "…"
