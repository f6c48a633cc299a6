"""The MIME message: structure (golden), headers, encodings, injection, fast bytes."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.digest import render
from newsletter.digest.message import build_message, message_bytes, preview
from newsletter.digest.render import Rendered, build_digest_context, render_email
from tests.digest.test_render import (
    CASES,
    DATA,
    RECIPIENT,
    WEB_URL,
    golden,
    hostile_papers,
    load_context,
)

SENDER = "Paper Digest <digest@papers.example.org>"
LIST_ID = "Paper Digest <digest.papers.example.org>"
DATE = datetime(2024, 7, 30, 7, 0, tzinfo=UTC)
MESSAGE_ID = "<digest.42.D2024-07-30@papers.example.org>"
DIGEST_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
    "List-Unsubscribe-Post", "Auto-Submitted", "MIME-Version", "Content-Type",
]  # fmt: skip


def _build(rendered: Rendered, **overrides: Any) -> EmailMessage:
    kwargs: dict[str, Any] = {
        "sender": SENDER,
        "to": RECIPIENT.email,
        "message_id": MESSAGE_ID,
        "date": DATE,
        "list_id": LIST_ID,
    }
    kwargs.update(overrides)
    return build_message(rendered, **kwargs)


def _case(case: str) -> tuple[Rendered, EmailMessage]:
    name, _ = CASES[case]
    rendered = render_email(name, load_context(case))
    return rendered, _build(rendered, list_id=LIST_ID if name == "digest" else None)


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def mime_structure(data: bytes) -> str:
    """The message as a mail reader sees its skeleton: every header as written
    (folding kept), every part's type and encoding, bodies summarised. Date,
    Message-ID and the boundary are normalised: they are the volatile fields."""
    lines: list[str] = []

    def walk(part: EmailMessage, pad: str) -> None:
        for name, value in part.raw_items():
            value = str(value).replace("\r\n", "\n")
            if name == "Date":
                value = "<DATE>"
            elif name == "Message-ID":
                value = "<MESSAGE-ID>"
            lines.append(pad + f"{name}: {value}".replace("\n", "\n" + pad))
        if part.is_multipart():
            for i, sub in enumerate(part.iter_parts(), 1):
                lines.append(f"{pad}--- part {i}")
                assert isinstance(sub, EmailMessage)
                walk(sub, pad + "    ")
        else:
            body = part.get_content()
            lines.append(f"{pad}[{len(body.encode())} bytes of {part.get_content_type()}]")

    walk(_parse(data), "")
    return re.sub(r"=_[0-9a-f]{32}", "BOUNDARY", "\n".join(lines)) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_mime_structure_matches_golden(case: str) -> None:
    _, msg = _case(case)
    structure = mime_structure(message_bytes(msg))
    assert golden(DATA / f"{case}.mime.txt", structure) == structure


@pytest.mark.parametrize("case", sorted(CASES))
def test_bodies_and_subject_survive_the_wire(case: str) -> None:
    rendered, msg = _case(case)
    parsed = _parse(message_bytes(msg))
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html
    assert parsed["Subject"] == rendered.subject
    assert not parsed.defects and not text.defects and not html.defects


def test_digest_headers() -> None:
    rendered, msg = _case("digest")
    parsed = _parse(message_bytes(msg))
    assert [name for name, _ in parsed.raw_items()] == DIGEST_HEADERS
    assert parsed["List-Unsubscribe"] == f"<{RECIPIENT.unsubscribe_url}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == LIST_ID
    assert parsed["Message-ID"] == MESSAGE_ID
    assert parsed["Date"].datetime == DATE
    assert parsed["From"].addresses[0].addr_spec == "digest@papers.example.org"
    assert parsed["To"].addresses[0].addr_spec == RECIPIENT.email
    assert parsed["Auto-Submitted"] == "auto-generated"
    # the message object itself reads like any EmailMessage
    assert msg["Subject"] == rendered.subject and msg["Message-ID"] == MESSAGE_ID
    assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None


def test_no_unsubscribe_link_no_list_unsubscribe_headers() -> None:
    _, msg = _case("confirm")
    names = {name for name, _ in msg.raw_items()}
    assert "List-Unsubscribe" not in names and "List-Unsubscribe-Post" not in names
    assert "List-Id" not in names


def test_explicit_unsubscribe_url_must_agree_with_the_email() -> None:
    rendered, _ = _case("digest")
    assert _build(rendered, unsubscribe_url=RECIPIENT.unsubscribe_url)["List-Unsubscribe"]
    with pytest.raises(ValueError, match="differs"):
        _build(rendered, unsubscribe_url="https://other.example.org/u/x")
    bare = Rendered("s", "t\n", "<p>h</p>")
    assert (
        _build(bare, unsubscribe_url="https://x.org/u/1")["List-Unsubscribe"]
        == "<https://x.org/u/1>"
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_message_bytes_is_exactly_as_bytes(case: str) -> None:
    _, msg = _case(case)
    assert message_bytes(msg) == msg.as_bytes()


def test_message_bytes_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [_case(case)[1] for case in sorted(CASES)]
    expected = [msg.as_bytes() for msg in messages]

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("message_bytes fell back to the stdlib generator")

    monkeypatch.setattr(EmailMessage, "as_bytes", refuse)
    assert [message_bytes(msg) for msg in messages] == expected


def test_same_delivery_same_bytes() -> None:
    _, first = _case("digest")
    _, again = _case("digest")
    assert message_bytes(first) == message_bytes(again)
    other = _build(render_email("digest", load_context("digest")), message_id="<other@x.org>")
    assert message_bytes(other) != message_bytes(first)


def test_fallback_for_messages_it_did_not_build() -> None:
    msg = EmailMessage()
    msg["Subject"] = "hand made"
    msg.set_content("body\n")
    msg.add_alternative("<p>body</p>", subtype="html")
    assert message_bytes(msg) == msg.as_bytes()
    _, ours = _case("digest")
    ours.preamble = "This is a multi-part message."
    assert message_bytes(ours) == ours.as_bytes()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sender", "Paper Digest <digest@example.org>\r\nBcc: victim@example.org"),
        ("to", "a@example.org\nBcc: victim@example.org"),
        ("to", "a@example.org\x00"),
        ("list_id", "x <a.b>\rBcc: y"),
        ("message_id", "<a@b>\r\nX: y"),
        ("unsubscribe_url", "https://x.org/u/1>\r\nBcc: y@z"),
        ("unsubscribe_url", "javascript:alert(1)"),
        ("unsubscribe_url", "mailto:u@x.org"),
    ],
)
def test_header_injection_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        _build(Rendered("s", "t\n", "<p>h</p>"), **{field: value})


@pytest.mark.parametrize(
    "extra",
    [{"X-Digest\r\nBcc": "x"}, {"X-Digest": "a\r\nBcc: b"}, {"X Digest": "x"}, {"": "x"}],
)
def test_extra_headers_are_checked(extra: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _build(Rendered("s", "t\n", "<p>h</p>"), extra_headers=extra)


def test_extra_headers_are_added() -> None:
    msg = _build(Rendered("s", "t\n", "<p>h</p>"), extra_headers={"X-Digest-Period": "D2024-07-30"})
    assert _parse(message_bytes(msg))["X-Digest-Period"] == "D2024-07-30"


@pytest.mark.parametrize(
    "to", ["not an address", "a@example.org, b@example.org", "@example.org", "a@"]
)
def test_recipient_must_be_one_address(to: str) -> None:
    with pytest.raises(ValueError):
        _build(Rendered("s", "t\n", "<p>h</p>"), to=to)


@pytest.mark.parametrize(
    ("to", "addr_spec"),
    [
        ("Zoë Müller <zoe@example.org>", "zoe@example.org"),
        ('"Doe, Jane" <jane@example.org>', "jane@example.org"),
        ("a.very.long.local.part.that.goes.on.and.on@a.long.subdomain.example.org", None),
    ],
)
def test_other_addresses_go_through_the_stdlib(to: str, addr_spec: str | None) -> None:
    msg = _build(Rendered("s", "t\n", "<p>h</p>"), to=to)
    data = message_bytes(msg)
    assert data == msg.as_bytes() and data.isascii()
    parsed = _parse(data)["To"].addresses[0]
    assert parsed.addr_spec == (addr_spec or to)


def test_non_ascii_list_id_is_encoded() -> None:
    msg = _build(Rendered("s", "t\n", "<p>h</p>"), list_id="Zoë digest <digest.example.org>")
    data = message_bytes(msg)
    assert data == msg.as_bytes() and data.isascii()
    assert _parse(data)["List-Id"] == "Zoë digest <digest.example.org>"


def test_naive_date_is_taken_as_utc() -> None:
    msg = _build(Rendered("s", "t\n", "<p>h</p>"), date=datetime(2024, 7, 30, 7, 0))
    assert msg["Date"] == "Tue, 30 Jul 2024 07:00:00 +0000"


def test_long_unsubscribe_url_stays_one_token() -> None:
    url = "https://papers.example.org/u/" + "T" * 200
    data = message_bytes(_build(Rendered("s", "t\n", "<p>h</p>", unsubscribe_url=url)))
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in data


@pytest.mark.parametrize(
    ("text", "html", "encodings"),
    [
        ("plain words\n", "<p>h</p>", ("7bit", "base64")),
        ("Schrödinger\n", "<p>Schrödinger…</p>", ("quoted-printable", "base64")),
        ("x" * 999 + "\n", "<p>" + "y" * 999 + "</p>", ("quoted-printable", "base64")),
        ("x" * 998, "", ("7bit", "base64")),
        ("a line\n--=_0123 could end a part\n", "<p>--=_0123</p>", ("quoted-printable", "base64")),
    ],
)
def test_transfer_encodings(text: str, html: str, encodings: tuple[str, str]) -> None:
    msg = _build(Rendered("s", text, html))
    data = message_bytes(msg)
    assert data == msg.as_bytes()
    plain, markup = _parse(data).iter_parts()
    assert (plain["Content-Transfer-Encoding"], markup["Content-Transfer-Encoding"]) == encodings
    assert plain.get_content().replace("\r\n", "\n") == text
    assert markup.get_content().replace("\r\n", "\n") == html
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


@settings(max_examples=300)
@given(
    lengths=st.lists(
        st.sampled_from([0, 1, 997, 998, 999, 1000, 2500]) | st.integers(0, 1200), max_size=6
    )
)
def test_text_is_7bit_exactly_when_every_line_fits_smtp(lengths: list[int]) -> None:
    # The line check jumps from break to break; this pins it to the plain definition.
    text = "\n".join("x" * n for n in lengths)
    plain, _ = _parse(message_bytes(_build(Rendered("s", text, "<p>h</p>")))).iter_parts()
    fits = all(n <= 998 for n in lengths)
    assert plain["Content-Transfer-Encoding"] == ("7bit" if fits else "quoted-printable")


one_line = st.text().map(render._one_line)


@settings(max_examples=300)
@given(subject=one_line)
def test_any_subject_round_trips_and_folds(subject: str) -> None:
    msg = _build(Rendered(subject, "t\n", "<p>h</p>"))
    data = message_bytes(msg)
    assert data == msg.as_bytes()
    assert _parse(data)["Subject"] == subject
    header_block = data.split(b"\r\n\r\n", 1)[0]
    for line in header_block.split(b"\r\n"):
        assert len(line) <= 78 or b" " not in line.strip(), line


@settings(max_examples=300)
@given(text=st.one_of(st.text(), st.text(alphabet="ab=é \t\r\n.", max_size=300)), html=st.text())
def test_any_bodies_round_trip(text: str, html: str) -> None:
    msg = _build(Rendered("s", text, html))
    data = message_bytes(msg)
    assert data == msg.as_bytes()
    assert data.isascii()  # 7-bit clean: nothing downstream needs to re-encode it
    assert b"\r" not in data.replace(b"\r\n", b"")  # the Maildir transport relies on it
    body = data.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 998 for line in body.split(b"\r\n"))
    if b"quoted-printable" in data:
        qp = data.split(b"quoted-printable\r\n\r\n", 1)[1].split(b"\r\n--=_", 1)[0]
        assert all(len(line) <= 76 for line in qp.split(b"\r\n"))
    plain, markup = _parse(data).iter_parts()
    canonical = "\r\n".join(re.split(r"\r\n|\r|\n", text))
    assert plain.get_content().replace("\r\n", "\n") == canonical.replace("\r\n", "\n")
    assert markup.get_content().replace("\r\n", "\n") == re.sub(r"\r\n|\r", "\n", html)


def test_a_subscriber_address_cannot_forge_the_boundary() -> None:
    rendered, _ = _case("digest")
    boundary = "=_" + hashlib.sha256(MESSAGE_ID.encode()).hexdigest()[:32]
    forged = Rendered(rendered.subject, f"x\n--{boundary}\nContent-Type: text/html\n\nhi\n", "h")
    parsed = _parse(message_bytes(_build(forged)))
    assert len(list(parsed.iter_parts())) == 2
    assert f"--{boundary}" in next(parsed.iter_parts()).get_content()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(papers=st.lists(hostile_papers(), min_size=1, max_size=3))
def test_hostile_content_adds_no_header(papers: list[Any]) -> None:
    context = build_digest_context(
        RECIPIENT, papers, period_label="Tuesday", web_url=WEB_URL, site_name="Paper Digest"
    )
    rendered = render_email("digest", context)
    data = message_bytes(_build(rendered))
    parsed = _parse(data)
    assert [name for name, _ in parsed.raw_items()] == DIGEST_HEADERS
    assert parsed["Subject"] == rendered.subject
    assert not parsed.defects


def test_preview_parts() -> None:
    rendered, msg = _case("digest")
    assert preview(msg, "html").decode().replace("\r\n", "\n") == rendered.html
    assert preview(msg, "text").decode().replace("\r\n", "\n") == rendered.text
    assert preview(msg, "eml") == message_bytes(msg)


def test_transport_writes_the_same_bytes() -> None:
    send = pytest.importorskip("newsletter.digest.send")
    rendered, msg = _case("digest")
    assert send.wire_bytes(msg) == message_bytes(msg)
    # a server without 8BITMIME gets the 8-bit bodies re-encoded, content intact
    seven = _parse(send.wire_bytes(msg, seven_bit=True))
    assert seven.as_bytes().isascii()
    assert seven.get_body(("html",)).get_content().replace("\r\n", "\n") == rendered.html
