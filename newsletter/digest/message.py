"""Build the MIME message of a rendered email, and turn it into bytes quickly.

:func:`build_message` returns a standard :class:`email.message.EmailMessage`::

    multipart/alternative
        text/plain; charset="utf-8"
        text/html; charset="utf-8"

(7-bit clean: text as it is when ASCII, else quoted-printable; HTML in base64) and
From, To, Subject, Date, Message-ID, List-Id, Auto-Submitted and — whenever the email
carries an unsubscribe link — ``List-Unsubscribe: <https://…>`` plus
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 2369, RFC 8058).

The stdlib's header machinery parses every value it is given and re-folds it on
output, which costs more than rendering the email. Here the values we produce are
checked and encoded once, by this module, into their final ASCII form (folded at
78 columns; RFC 2047 encoded-words for non-ASCII words of a subject), and
:class:`MessagePolicy` stores such values as they are. Reading a header back
(``msg["Subject"]``) still parses it, lazily, into the usual header object. Bodies are
encoded up front the same way. Anything else set on the message later goes through
the stdlib unchanged.

:func:`message_bytes` serialises such a message without the generator's line-by-line
copying; it returns exactly ``msg.as_bytes()`` (tests check byte equality) and falls
back to it for any message it does not recognise.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import utils as email_utils
from email.errors import HeaderParseError
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any, Final, Literal, cast

import pybase64

from newsletter.digest.render import Rendered

__all__ = ["MESSAGE_POLICY", "MessagePolicy", "build_message", "message_bytes", "preview"]

_LINESEP: Final = re.compile(r"\n|\r\n?")
_CRLF: Final = "\r\n"
# RFC 5322: lines SHOULD stay within 78 characters and MUST within 998.
_FOLD_AT: Final = 78
_HARD_LIMIT: Final = 998
# RFC 2047: an encoded-word is at most 75 characters, 12 of them "=?utf-8?b?" + "?=".
_WORD_MAX: Final = 75
_WORD_OVERHEAD: Final = len("=?utf-8?b??=")
_QP_LINE: Final = 76  # RFC 2045

_PRINTABLE_ASCII: Final = re.compile(r"[\x20-\x7e]*")
# Controls, and the Unicode line separators some parsers also break lines at.
_BREAKS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext
# Message-ID and plain addresses we can write as they are; anything fancier
# (display names, quoted or non-ASCII local parts, IDNs) is left to the stdlib.
_MSG_ID: Final = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
_PLAIN_ADDRESS: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


# An ASCII http(s) URL that can stand in <…> on one header line.
_HEADER_URL: Final = re.compile(r"https?://[\x21-\x3b\x3d\x3f-\x7e]+")
_MAX_HEADER_URL: Final = _HARD_LIMIT - len("List-Unsubscribe: <>")


class _Encoded(str):
    """A header value this module has validated, encoded and folded: ASCII only, no
    line over 998 characters, continuation lines starting with a space."""

    __slots__ = ()


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new header class on every lookup; build each once."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


class _WirePayload(str):
    """A body this module transfer-encoded: ASCII, every line ending in CRLF."""

    __slots__ = ()


class MessagePolicy(EmailPolicy):
    """``email.policy.SMTP`` (CRLF) that stores pre-encoded values unparsed.

    ``refold_source="none"`` writes stored values back exactly as they are, so a long
    ``List-Unsubscribe`` URL stays one token instead of being re-encoded by the
    stdlib folder. Reading a header parses it as usual; the same stored value is
    parsed once (``Content-Type: text/html; charset="utf-8"`` is on every message).
    """

    def __reduce__(self) -> str | tuple[Any, ...]:
        # A message pickles with a reference to the one policy instead of a copy of
        # its header registry (whose header classes are made at run time and cannot
        # be pickled): how the pre-rendering process hands messages over.
        if self is MESSAGE_POLICY:
            return "MESSAGE_POLICY"
        return super().__reduce__()

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if type(value) is _Encoded:
            return name, str(value)
        return super().header_store_parse(name, value)

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if type(value) is str:
            return _parse_header(name, value)
        return super().header_fetch_parse(name, value)


@functools.lru_cache(maxsize=4096)
def _parse_header(name: str, value: str) -> BaseHeader:
    # As EmailPolicy.header_fetch_parse: unfold, then parse. Header objects are
    # immutable, so one may serve every message that has this value.
    header: BaseHeader = MESSAGE_POLICY.header_factory(name, "".join(_LINESEP.split(value)))
    return header


#: The policy of every message built here (and of its parts).
MESSAGE_POLICY: Final = MessagePolicy(
    linesep="\r\n", refold_source="none", header_factory=_CachedHeaderRegistry()
)


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    to: str,
    message_id: str,
    date: datetime,
    list_id: str | None = None,
    unsubscribe_url: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The multipart/alternative message of ``rendered``.

    ``sender`` is a From value (``"Paper Digest <digest@example.org>"``), ``to`` one
    address. ``message_id`` (``<…@…>``) should be derived from the delivery so that a
    retry carries the same id; the MIME boundary is derived from it too, so building
    the same delivery twice gives the same bytes. ``date`` is written as RFC 5322
    Date; a naive datetime is taken as UTC (what SQLite returns). ``list_id`` is a
    List-Id value (``"Paper Digest <digest.example.org>"``).

    The List-Unsubscribe headers are added whenever there is an unsubscribe link:
    ``unsubscribe_url`` or, when that is None, ``rendered.unsubscribe_url``. Raises
    ``ValueError`` if a value would break the header block (CR, LF or other control
    characters), if the two unsubscribe links disagree, or if an address, the
    Message-ID or the unsubscribe URL is malformed.
    """
    unsubscribe = unsubscribe_url if unsubscribe_url is not None else rendered.unsubscribe_url
    if rendered.unsubscribe_url is not None and unsubscribe != rendered.unsubscribe_url:
        raise ValueError("unsubscribe_url differs from the email's own unsubscribe link")
    if not _MSG_ID.fullmatch(message_id):
        raise ValueError(f"Message-ID must look like <local@domain>, got {message_id!r}")

    msg = EmailMessage(policy=MESSAGE_POLICY)
    # Header values this module encoded are stored directly: msg[name] = value
    # would scan the headers already set for a duplicate each time (~2 µs a header).
    # The names below are distinct, so there is none; extra headers still go
    # through msg[name], which rejects a second Subject and the like.
    headers: list[tuple[str, Any]] = []
    _add_address(headers, "From", sender)
    _add_address(headers, "To", to)
    headers += (
        ("Subject", _unstructured("Subject", rendered.subject)),
        ("Date", _formatted_date(_aware(date))),
        ("Message-ID", message_id),
    )
    if list_id is not None:
        headers.append(("List-Id", _structured("List-Id", list_id)))
    if unsubscribe is not None:
        if not _HEADER_URL.fullmatch(unsubscribe) or len(unsubscribe) > _MAX_HEADER_URL:
            raise ValueError(f"unsubscribe URL must be an ASCII http(s) URL, got {unsubscribe!r}")
        headers += (
            ("List-Unsubscribe", f"<{unsubscribe}>"),
            # RFC 8058: the link unsubscribes on a POST of this body, with no page to visit.
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        )
    # RFC 3834: vacation responders and other robots do not answer this message.
    headers.append(("Auto-Submitted", "auto-generated"))
    _store(msg, headers)
    for name, value in (extra_headers or {}).items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"not a header field name: {name!r}")
        msg[name] = _unstructured(name, value)

    # "=_" occurs in no body (_text_part sends text holding it as quoted-printable,
    # where "=" is "=3D"; base64 has no "_"), so no body can contain the boundary —
    # not even a line crafted to end the text part early.
    boundary = _BOUNDARY_MARK + hashlib.sha256(message_id.encode()).hexdigest()[:32]
    _store(
        msg,
        [
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
        ],
    )
    msg.set_payload([_text_part(rendered.text), _html_part(rendered.html_bytes())])
    return msg


def _store(msg: EmailMessage, headers: list[tuple[str, Any]]) -> None:
    """Append ``headers`` to ``msg`` as ``msg[name] = value`` would, without its
    duplicate scan: an :class:`_Encoded` or plain ``str`` value (encoded by this
    module) is stored as it is, a header object as the policy stores it. (A header
    object is a ``str`` too, hence the exact type test: stored as a string, a
    non-ASCII List-Id would lose its encoding.)"""
    store = msg.policy.header_store_parse
    raw: list[tuple[str, Any]] = msg._headers  # type: ignore[attr-defined]
    for name, value in headers:
        plain = type(value) is str or type(value) is _Encoded
        raw.append((name, str(value)) if plain else store(name, value))


def message_bytes(msg: EmailMessage) -> bytes:
    """``msg.as_bytes()`` — the same bytes, several times faster for a message from
    :func:`build_message`. Falls back to the stdlib for any other message shape."""
    out: list[bytes] = []
    if _flatten(msg, msg.policy.linesep, out):
        return b"".join(out)
    return msg.as_bytes()


def preview(msg: EmailMessage, part: Literal["html", "text", "eml"]) -> bytes:
    """What ``newsletter preview --html|--text|--eml`` prints: the decoded HTML or
    text body (UTF-8), or the whole message as it would be sent."""
    if part == "eml":
        return message_bytes(msg)
    body = msg.get_body(preferencelist=(part if part == "html" else "plain",))
    if body is None:
        raise ValueError(f"the message has no {part} part")
    content = body.get_content()
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


# --------------------------------------------------------------------------- headers


def _check(name: str, value: str) -> None:
    if _BREAKS.search(value):
        # CR, LF, NUL or another control: it would end the header or smuggle in another.
        raise ValueError(f"{name} contains control characters: {value!r}")


def _unstructured(name: str, value: str) -> _Encoded:
    """``value`` as an unstructured header (Subject, X-…), folded at 78 columns:
    printable ASCII words as they are, the others as RFC 2047 encoded-words."""
    _check(name, value)
    if _PRINTABLE_ASCII.fullmatch(value) and "=?" not in value:
        folded = _fold_at_spaces(name, value)
        if folded is not None:
            return folded
    if "  " in value or value != value.strip(" "):
        # Whitespace next to an encoded-word is not preserved by decoders: encode all.
        return _encoded_words(name, value)
    # A title is mostly plain words with an accent or an ellipsis here and there:
    # only runs of words that need it are encoded, so the subject stays readable and
    # no filter sees a fully encoded ASCII subject. A literal "=?…?=" in a title is
    # encoded too, or mail clients would decode it as an encoded-word.
    runs: list[tuple[bool, str]] = []
    for word in value.split(" "):
        plain = bool(_PRINTABLE_ASCII.fullmatch(word)) and "=?" not in word
        if not plain and runs and not runs[-1][0]:
            runs[-1] = (False, runs[-1][1] + " " + word)  # one run keeps its spaces
        else:
            runs.append((plain, word))
    atoms: list[str] = []
    for plain, text in runs:
        atoms += [text] if plain else _encoded_words(name, text).split("\r\n ")
    lines = [atoms[0]]
    room = _FOLD_AT - len(name) - 2
    for atom in atoms[1:]:
        if len(lines[-1]) + 1 + len(atom) > room:
            lines.append(atom)
            room = _FOLD_AT - 1
        else:
            lines[-1] += " " + atom
    if any(len(line) > _HARD_LIMIT - len(name) - 2 for line in lines):
        return _encoded_words(name, value)
    return _Encoded("\r\n ".join(lines))


@functools.lru_cache(maxsize=64)
def _structured(name: str, value: str) -> _Encoded | BaseHeader:
    """A structured value (List-Id): as it is when printable ASCII, else the stdlib's
    header object. The same for every message of a site, so computed once."""
    _check(name, value)
    folded = _fold_at_spaces(name, value) if _PRINTABLE_ASCII.fullmatch(value) else None
    if folded is not None:
        return folded
    header: BaseHeader = MESSAGE_POLICY.header_store_parse(name, value)[1]
    return header


def _add_address(headers: list[tuple[str, Any]], name: str, value: str) -> None:
    """One address: a plain ``local@domain`` as it is, anything else (a display name,
    quoting, non-ASCII) as the stdlib writes it — parsed once per distinct value."""
    _check(name, value)
    if _PLAIN_ADDRESS.fullmatch(value) and len(name) + 2 + len(value) <= _FOLD_AT:
        headers.append((name, value))
    else:
        headers.append((name, _address_header(name, value)))


@functools.lru_cache(maxsize=64)
def _formatted_date(date: datetime) -> str:
    """RFC 5322 Date; a run stamps its messages with few distinct times."""
    return email_utils.format_datetime(date)


@functools.lru_cache(maxsize=1024)
def _address_header(name: str, value: str) -> _Encoded | BaseHeader:
    """The stdlib's folded form of an address header, or its header object when that
    form is not ASCII (an internationalised address, for an SMTPUTF8 transport).
    Raises ``ValueError`` unless ``value`` is exactly one address with a domain."""
    try:
        header: Any = MESSAGE_POLICY.header_factory(name, value)
    except (HeaderParseError, IndexError) as exc:  # the stdlib parser trips on "a@"
        raise ValueError(f"{name} is not one valid address: {value!r}") from exc
    addresses: tuple[Any, ...] = tuple(getattr(header, "addresses", ()))
    if header.defects or len(addresses) != 1 or not addresses[0].domain:
        raise ValueError(f"{name} is not one valid address: {value!r}")
    folded: str = header.fold(policy=MESSAGE_POLICY)
    if not folded.isascii():
        return cast(BaseHeader, header)
    return _Encoded(folded[len(name) + 2 :].removesuffix("\r\n"))


def _fold_at_spaces(name: str, value: str) -> _Encoded | None:
    """Printable ASCII folded before spaces to fit 78 columns where it can; a word
    too long for a line stays whole. None if a line would pass 998 characters."""
    room = _FOLD_AT - len(name) - 2  # the first line also holds "Name: "
    if len(value) <= room:
        return _Encoded(value)
    lines: list[str] = []
    line = ""
    for i, word in enumerate(value.split(" ")):
        piece = word if i == 0 else " " + word
        # Fold only before a real word, so no line is whitespace alone (RFC 5322 §3.2.2).
        if word and line.strip() and len(line) + len(piece) > room:
            lines.append(line)
            line, room = piece, _FOLD_AT
        else:
            line += piece
    lines.append(line)
    if len(lines[0]) + len(name) + 2 > _HARD_LIMIT or any(len(x) > _HARD_LIMIT for x in lines):
        return None
    return _Encoded("\r\n".join(lines))


def _encoded_words(name: str, value: str) -> _Encoded:
    """``value`` as base64 encoded-words, one per line, never splitting a UTF-8
    character (RFC 2047 §5: each word must decode on its own). Every word fits on
    the first line too, so callers may place any of them anywhere."""
    data = value.encode("utf-8")
    room = min(_WORD_MAX, _FOLD_AT - len(name) - 2) - _WORD_OVERHEAD
    size = max(room // 4 * 3, 6)  # bytes per word
    words: list[str] = []
    pos = 0
    while pos < len(data) or not words:
        end = min(len(data), pos + size)
        while end < len(data) and end > pos + 1 and (data[end] & 0xC0) == 0x80:
            end -= 1  # back off to the start of a UTF-8 character
        chunk = binascii.b2a_base64(data[pos:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{chunk}?=")
        pos = end
    return _Encoded("\r\n ".join(words))


def _aware(date: datetime) -> datetime:
    return date if date.tzinfo is not None else date.replace(tzinfo=UTC)


# ----------------------------------------------------------------------------- bodies

_BOUNDARY_MARK: Final = "=_"
_CT_PLAIN: Final = _Encoded('text/plain; charset="utf-8"')
_CT_HTML: Final = _Encoded('text/html; charset="utf-8"')
_CTE_7BIT: Final = _Encoded("7bit")
_CTE_QP: Final = _Encoded("quoted-printable")
_CTE_BASE64: Final = _Encoded("base64")


def _text_part(text: str) -> EmailMessage:
    """The text/plain leaf: payload already transfer-encoded, in canonical form
    (CRLF line ends, RFC 2046 §4.1.1), as the stdlib's set_content writes text.

    Every body is 7-bit clean, so neither a server without 8BITMIME nor a relay in
    front of a DKIM check has a reason to re-encode it (send.wire_bytes relies on
    this). Text goes out as it is (7bit) when it is ASCII with lines within SMTP's
    998 octets and without the boundary mark "=_" — the templates' own words are
    ASCII, so that is the usual case — and as quoted-printable otherwise, the
    stdlib's choice for mostly-ASCII text.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and _BOUNDARY_MARK not in text and not _has_long_line(text):
        return _leaf(_CT_PLAIN, _CTE_7BIT, text.replace("\n", "\r\n"))
    return _leaf(_CT_PLAIN, _CTE_QP, _quoted_printable(text))


def _has_long_line(text: str) -> bool:
    """Whether a line of ``text`` (LF line ends) is longer than SMTP's 998 octets.

    Jumps from line break to line break up to 998 characters apart with rfind, in C,
    instead of splitting the text into lines: a few steps for a digest.
    """
    pos, size = 0, len(text)
    while size - pos > _HARD_LIMIT:
        last = text.rfind("\n", pos, pos + _HARD_LIMIT + 1)
        if last < 0:
            return True
        pos = last + 1
    return False


def _html_part(html: bytes) -> EmailMessage:
    """The text/html leaf (``html`` in UTF-8), always base64: its lines can be long,
    nobody reads it raw, and pybase64 encodes it in C (see _base64)."""
    if b"\r" in html:
        html = html.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return _leaf(_CT_HTML, _CTE_BASE64, _base64(html.replace(b"\n", b"\r\n")))


def _leaf(content_type: _Encoded, cte: _Encoded, payload: str) -> EmailMessage:
    part = EmailMessage(policy=MESSAGE_POLICY)
    _store(part, [("Content-Type", content_type), ("Content-Transfer-Encoding", cte)])
    part.set_payload(_WirePayload(payload))
    return part


def _quoted_printable(text: str) -> str:
    """``text`` (LF line ends) as quoted-printable with CRLF line ends.

    A digest is mostly plain ASCII lines with an accented name here and there, so
    lines that need no encoding are kept as they are and binascii encodes the rest,
    one line at a time (soft breaks come out as LF, hence the replace).
    """
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not (
            len(line) <= _QP_LINE
            and line.isascii()
            and line.isprintable()
            and "=" not in line
            and not line.endswith(" ")
        ):
            encoded = binascii.b2a_qp(line.encode("utf-8"), istext=True)
            lines[i] = encoded.decode("ascii").replace("\n", "\r\n")
    return "\r\n".join(lines)


def _base64(data: bytes) -> str:
    """``data`` in base64 lines of 76 characters (RFC 2045), each ending in CRLF.

    pybase64 encodes with SIMD: ~2 µs for a 28 KB digest against ~37 µs for
    binascii, whose table loop was the largest single cost of a message. Its
    ``encodebytes`` writes the 76-column lines (ending in LF) in the same pass.
    """
    return pybase64.encodebytes(data).replace(b"\n", b"\r\n").decode("ascii")


# ------------------------------------------------------------------------ serialising


def _flatten(part: EmailMessage, linesep: str, out: list[bytes]) -> bool:
    """Append what ``BytesGenerator`` would write for ``part``; False if ``part`` is
    outside the shapes this reproduces exactly (then ``out`` must be discarded)."""
    if linesep != "\r\n":
        return False
    fold = part.policy.fold_binary
    ours = part.policy is MESSAGE_POLICY
    raw = list(part.raw_items())
    for name, value in raw:
        # What our policy's fold_binary returns for a value stored as a string
        # (refold_source "none"): its lines rejoined with CRLF.
        if ours and type(value) is str and value.isascii() and not value.endswith("\n"):
            out.append(f"{name}: {_CRLF.join(value.splitlines())}\r\n".encode("ascii"))
        else:
            out.append(fold(name, value))
    out.append(b"\r\n")
    # The stored payload, as BytesGenerator reads it: get_payload() would decode an
    # 8-bit body instead of returning it.
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):
        boundary = _our_boundary(raw) or part.get_boundary()
        if not payload or not boundary or part.preamble is not None or part.epilogue is not None:
            return False
        for i, sub in enumerate(payload):
            out.append(f"--{boundary}\r\n".encode() if i == 0 else f"\r\n--{boundary}\r\n".encode())
            if not isinstance(sub, EmailMessage) or not _flatten(sub, linesep, out):
                return False
        out.append(f"\r\n--{boundary}--\r\n".encode())
        return True
    if type(payload) is _WirePayload:  # ours: ASCII with CRLF line ends by construction
        out.append(payload.encode("ascii"))
        return True
    if not isinstance(payload, str) or not payload.isascii():
        return False
    # The generator rewrites every line ending as CRLF; a payload with only CRLF
    # endings comes out unchanged.
    n = payload.count("\r\n")
    if payload.count("\r") != n or payload.count("\n") != n:
        return False
    out.append(payload.encode("ascii"))
    return True


_OUR_CONTENT_TYPE: Final = re.compile(r'multipart/alternative;\r\n boundary="(=_[0-9a-f]{32})"')


def _our_boundary(raw: list[tuple[str, Any]]) -> str | None:
    """The boundary of a Content-Type written by :func:`build_message`, read without
    parsing the header (get_boundary would); None for any other Content-Type."""
    values = [value for name, value in raw if name.lower() == "content-type"]
    if len(values) == 1 and type(values[0]) is str:
        match = _OUR_CONTENT_TYPE.fullmatch(values[0])
        if match:
            return match.group(1)
    return None
