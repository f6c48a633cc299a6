"""The digest and confirmation emails: contexts, golden renders, inlining, safety.

Golden files live in ``tests/data/emails/``: for each case ``<case>.context.json`` is
what the context builder must produce (and the renderer's input), ``<case>.txt`` /
``<case>.html`` what the renderer must make of it, ``<case>.mime.txt`` the message
structure (tests/digest/test_message.py). Regenerate after an intended change with
``UPDATE_GOLDEN=1 pytest tests/digest`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from newsletter.digest import render
from newsletter.digest.context import EXCERPT_CHARS, clean_text, safe_url
from newsletter.digest.render import (
    MAX_HTML_BYTES,
    DigestPaper,
    Recipient,
    build_confirm_context,
    build_digest_context,
    render_email,
    render_email_premailer,
    wrap,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "emails"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

RECIPIENT = Recipient(
    email="mira.okafor@example.org",
    profile='equivari*, "optimal transport", diffusion, "state space model", gaussian splatting',
    unsubscribe_url="https://papers.example.org/u/TOKEN",
    preferences_url="https://papers.example.org/p/TOKEN",
)
WEB_URL = "https://papers.example.org/d/2024-07-30-TOKEN"


def sample_papers() -> list[DigestPaper]:
    """The ranked sample papers (real titles/abstracts, synthetic authors and ids)."""
    data = json.loads((DATA / "sample_papers.json").read_text(encoding="utf-8"))
    return [
        DigestPaper(
            title=p["title"],
            abstract=p["abstract"],
            authors=tuple(p["authors"]),
            arxiv_id=p["arxiv_id"],
            url=p["url"],
            score=p["score"],
            matched=tuple(p["matched"]),
            title_spans=tuple((a, b) for a, b in p["title_spans"]),
            abstract_spans=tuple((a, b) for a, b in p["abstract_spans"]),
        )
        for p in data["papers"]
    ]


def _paper(
    *,
    title: str = "A Paper",
    abstract: str = "An abstract.",
    authors: tuple[str, ...] = ("A. Author",),
    arxiv_id: str | None = "2401.01234",
    url: str | None = None,
    matched: tuple[str, ...] = ("paper",),
    title_spans: tuple[tuple[int, int], ...] = (),
    abstract_spans: tuple[tuple[int, int], ...] = (),
) -> DigestPaper:
    return DigestPaper(
        title=title,
        abstract=abstract,
        authors=authors,
        arxiv_id=arxiv_id,
        url=url,
        score=1.0,
        matched=matched,
        title_spans=title_spans,
        abstract_spans=abstract_spans,
    )


HOSTILE_TITLE = (
    '<script>alert("t")</script> Diffusion </style><img src=x onerror=alert(1)>'
    "\r\nBcc: x@evil.example"
)
HOSTILE_ABSTRACT = (
    'We study \x00diffusion\x1b[31m in <b>bold</b> and <a href="javascript:alert(1)">links</a>; '
    "{{ 7 * 7 }} {% raw %} =?utf-8?b?SGk=?= \u202egnirts desrever\u202c. "
    "</p></td></tr></table><style>*{display:none}</style> The end."
)


def _digest(papers: list[DigestPaper], **kwargs: Any) -> dict[str, Any]:
    return build_digest_context(
        RECIPIENT,
        papers,
        period_label="Tuesday 30 July 2024",
        web_url=WEB_URL,
        site_name="Paper Digest",
        **kwargs,
    )


def _hostile_digest() -> dict[str, Any]:
    start = HOSTILE_ABSTRACT.index("diffusion")
    paper = DigestPaper(
        title=HOSTILE_TITLE,
        abstract=HOSTILE_ABSTRACT,
        authors=("Eve <eve@evil.example>", "Mallory\r\nX-Injected: yes", '"><svg onload=alert(1)>'),
        arxiv_id="../../etc/passwd",
        url="javascript:alert(document.cookie)",
        score=float("nan"),
        matched=("diffusion", "<script>"),
        title_spans=((HOSTILE_TITLE.index("Diffusion"), HOSTILE_TITLE.index("Diffusion") + 9),),
        abstract_spans=((start, start + 9), (5000, 5010), (3, 1)),
    )
    return _digest([paper])


#: Golden cases: name → (email name, context factory).
CASES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "digest": ("digest", lambda: _digest(sample_papers()[:3])),
    "digest_more": ("digest", lambda: _digest(sample_papers()[3:8], max_papers=2, more_count=4)),
    "digest_hostile": ("digest", _hostile_digest),
    "confirm": (
        "confirm",
        lambda: build_confirm_context(
            email=RECIPIENT.email,
            profile=RECIPIENT.profile,
            confirm_url="https://papers.example.org/c/TOKEN",
            site_name="Paper Digest",
        ),
    ),
}


def golden(path: Path, actual: str) -> str:
    """The golden content of ``path``; with UPDATE_GOLDEN=1, ``actual`` is written first."""
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path.name} is missing; run with UPDATE_GOLDEN=1 to create it")
        path.write_text(actual, encoding="utf-8")
    return path.read_text(encoding="utf-8")


def load_context(case: str) -> dict[str, Any]:
    context: dict[str, Any] = json.loads((DATA / f"{case}.context.json").read_text("utf-8"))
    return context


# ----------------------------------------------------------------------- golden files


@pytest.mark.parametrize("case", sorted(CASES))
def test_context_matches_golden(case: str) -> None:
    _, factory = CASES[case]
    context = factory()
    text = json.dumps(context, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    assert json.loads(golden(DATA / f"{case}.context.json", text)) == context


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden(case: str) -> None:
    name, _ = CASES[case]
    rendered = render_email(name, load_context(case))
    assert golden(DATA / f"{case}.txt", f"Subject: {rendered.subject}\n\n{rendered.text}") == (
        f"Subject: {rendered.subject}\n\n{rendered.text}"
    )
    assert golden(DATA / f"{case}.html", rendered.html) == rendered.html


# ----------------------------------------------------------------------- the context


def test_context_is_json_safe_and_complete() -> None:
    context = _digest(sample_papers()[:3])
    assert json.loads(json.dumps(context, allow_nan=False)) == context
    assert context["recipient"] == {"email": RECIPIENT.email, "profile": RECIPIENT.profile}
    assert context["links"] == {
        "web": WEB_URL,
        "preferences": RECIPIENT.preferences_url,
        "unsubscribe": RECIPIENT.unsubscribe_url,
    }
    first = context["papers"][0]
    assert first["rank"] == 1
    assert first["matched"] == ["gaussian splatting"]
    assert [link["label"] for link in first["links"]] == ["Abstract", "PDF"]
    assert first["url"] == f"https://arxiv.org/abs/{first['arxiv_id']}"
    assert first["links"][1]["url"] == f"https://arxiv.org/pdf/{first['arxiv_id']}"


def test_every_hit_is_a_span_of_the_source() -> None:
    paper = sample_papers()[0]
    context = _digest([paper])["papers"][0]
    hits = [s["text"] for s in context["title"] if s["hit"]]
    assert hits == [paper.title[a:b] for a, b in paper.title_spans]
    assert "".join(s["text"] for s in context["title"]) == context["title_text"] == paper.title
    excerpt_hits = [s["text"] for s in context["excerpt"] if s["hit"]]
    assert (
        excerpt_hits == [paper.abstract[a:b] for a, b in paper.abstract_spans][: len(excerpt_hits)]
    )


def test_excerpt_is_centred_on_the_first_match_in_whole_words() -> None:
    words = [f"w{i:03d}" for i in range(200)]
    abstract = " ".join(words)
    start = abstract.index("w150")
    paper = _paper(abstract=abstract, abstract_spans=((start, start + 4),))
    context = _digest([paper])["papers"][0]
    excerpt = context["excerpt"]
    assert context["excerpt_cut_start"] and context["excerpt_cut_end"]
    inner = "".join(s["text"] for s in excerpt)
    assert inner.split() == [w for w in inner.split() if w in words]  # whole words only
    assert len(inner) <= EXCERPT_CHARS
    # the match sits near the middle
    middle = inner.index("w150") + 2
    assert abs(middle - len(inner) / 2) < 20
    assert [s["text"] for s in excerpt if s["hit"]] == ["w150"]


def test_short_abstract_is_whole_and_no_match_starts_at_the_top() -> None:
    short = _digest([_paper(abstract="Short abstract.")])["papers"][0]
    assert short["excerpt"] == [{"text": "Short abstract.", "hit": False}]
    assert not short["excerpt_cut_start"] and not short["excerpt_cut_end"]
    long_text = " ".join(["word"] * 200)
    top = _digest([_paper(abstract=long_text)])["papers"][0]
    assert top["excerpt"][0]["text"].startswith("word word")
    assert not top["excerpt_cut_start"] and top["excerpt_cut_end"]
    empty = _digest([_paper(abstract="")])["papers"][0]
    assert empty["excerpt"] == [] and not empty["excerpt_cut_end"]


def test_overlong_title_is_cut_at_a_word() -> None:
    title = " ".join(["Word"] * 100)
    paper = _digest([_paper(title=title)])["papers"][0]
    assert paper["title_text"].endswith("Word …") and len(paper["title_text"]) <= 302


@pytest.mark.parametrize(
    ("arxiv_id", "url", "expected"),
    [
        (
            "2401.01234",
            None,
            ["https://arxiv.org/abs/2401.01234", "https://arxiv.org/pdf/2401.01234"],
        ),
        (
            "hep-th/9901001",
            None,
            ["https://arxiv.org/abs/hep-th/9901001", "https://arxiv.org/pdf/hep-th/9901001"],
        ),
        (None, "https://openreview.net/forum?id=x", ["https://openreview.net/forum?id=x"]),
        ("not an id", "https://example.org/p", ["https://example.org/p"]),
        (None, "javascript:alert(1)", []),
        (None, "JaVaScRiPt:alert(1)", []),
        (None, "data:text/html,<script>", []),
        (None, "//evil.example/x", []),
        (None, "https://exa mple.org/", []),
        (None, None, []),
    ],
)
def test_links(arxiv_id: str | None, url: str | None, expected: list[str]) -> None:
    paper = _digest([_paper(arxiv_id=arxiv_id, url=url)])["papers"][0]
    assert [link["url"] for link in paper["links"]] == expected
    assert paper["url"] == (expected[0] if expected else None)


def test_cap_and_more_count() -> None:
    papers = sample_papers()
    context = _digest(papers, max_papers=20, more_count=2)
    assert len(context["papers"]) == 20
    assert context["more"] == len(papers) - 20 + 2
    assert context["total"] == len(papers) + 2
    assert [p["rank"] for p in context["papers"]] == list(range(1, 21))


def test_authors_are_shortened() -> None:
    many = tuple(f"Author {i}" for i in range(9))
    authors = _digest([_paper(authors=many)])["papers"][0]["authors"]
    assert authors == "Author 0, Author 1, Author 2 et al."
    assert _digest([_paper(authors=many[:5])])["papers"][0]["authors"] == ", ".join(many[:5])


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "/u/TOKEN", "", "https://x.org/a b"])
def test_recipient_links_must_be_absolute_http(bad: str) -> None:
    recipient = Recipient("a@example.org", "x", bad, RECIPIENT.preferences_url)
    with pytest.raises(ValueError, match="unsubscribe_url"):
        build_digest_context(recipient, [], period_label="p", web_url=WEB_URL, site_name="s")


@given(
    text=st.text(max_size=400),
    spans=st.lists(st.tuples(st.integers(-5, 450), st.integers(-5, 450)), max_size=8),
)
def test_any_spans_are_survivable(text: str, spans: list[tuple[int, int]]) -> None:
    paper = _paper(
        title=text[:120], abstract=text, title_spans=tuple(spans), abstract_spans=tuple(spans)
    )
    context = _digest([paper])
    assert json.loads(json.dumps(context)) == context
    for segment in context["papers"][0]["excerpt"] + context["papers"][0]["title"]:
        assert segment["text"] and "  " not in segment["text"]
        assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", segment["text"])


# --------------------------------------------------------------- rendering: inlining


def _tree(html: str) -> list[tuple[Any, ...]]:
    """Every element and comment in document order: tag, attributes, text, tail
    (whitespace runs collapsed, as a browser would)."""
    root = etree.fromstring(html, etree.HTMLParser())
    out: list[tuple[Any, ...]] = []
    for node in root.iter():
        text, tail = (" ".join((t or "").split()) for t in (node.text, node.tail))
        if not isinstance(node.tag, str):
            out.append(("#comment", text, tail))
        else:
            out.append((node.tag, dict(node.attrib), text, tail))
    return out


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    papers = sample_papers()
    contexts = [(name, factory()) for name, factory in CASES.values()]
    contexts += [
        ("digest", _digest(papers)),
        ("digest", _digest([])),
        ("digest", _digest(papers[5:6])),
        ("digest", _digest([_paper(arxiv_id=None, url=None, authors=(), matched=())])),
    ]
    return contexts


@pytest.mark.parametrize(("name", "context"), _corpus())
def test_cached_inlining_equals_premailer_on_every_email(
    name: str, context: dict[str, Any]
) -> None:
    fast = render_email(name, context)
    naive = render_email_premailer(name, context)
    assert (fast.subject, fast.text) == (naive.subject, naive.text)
    assert _tree(fast.html) == _tree(naive.html)


_HOSTILE_PIECES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</style>",
    "<style>",
    '"><a href="javascript:alert(1)">x</a>',
    "javascript:alert(1)",
    "\r\n",
    "\r",
    "\n",
    "\x00",
    "\x1b[2J",
    "\u2028",
    "\u202e",
    "{{ config }}",
    "{% include 'x' %}",
    "=?utf-8?b?SGk=?=",
    "Bcc: evil@example.org",
    "&amp;",
    "<!--",
    "-->",
    "<![CDATA[",
    "é",
    "数学",
]
hostile_text = st.lists(
    st.one_of(st.sampled_from(_HOSTILE_PIECES), st.text(max_size=12)), max_size=12
).map("".join)


@st.composite
def hostile_papers(draw: st.DrawFn) -> DigestPaper:
    title = draw(hostile_text)
    abstract = draw(hostile_text)
    spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=4)
    return DigestPaper(
        title=title,
        abstract=abstract,
        authors=tuple(draw(st.lists(hostile_text, max_size=3))),
        arxiv_id=draw(st.one_of(st.none(), hostile_text, st.just("2401.01234"))),
        url=draw(st.one_of(st.none(), hostile_text, st.just("https://example.org/?a=1&b=<2>"))),
        score=draw(st.floats(allow_nan=True, allow_infinity=True)),
        matched=tuple(draw(st.lists(hostile_text, max_size=3))),
        title_spans=tuple(draw(spans)),
        abstract_spans=tuple(draw(spans)),
    )


#: Every tag the templates can produce, and every href they may hold.
TEMPLATE_TAGS = {
    "html", "head", "meta", "title", "body", "div", "table", "tr", "td",
    "p", "span", "h1", "h2", "a",
}  # fmt: skip


def _assert_inert(html: str) -> None:
    root = etree.fromstring(html, etree.HTMLParser())
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # comments: only the template's Outlook conditionals
        assert element.tag in TEMPLATE_TAGS, element.tag
        for name in element.attrib:
            assert not name.lower().startswith("on"), name
            assert name != "class"
        href = element.get("href")
        if href is not None:
            assert safe_url(href) == href and href.lower().startswith(("https://", "http://"))
    comments = [c.text for c in root.iter(etree.Comment)]
    assert all(c.startswith("[if mso]") for c in comments), comments


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(papers=st.lists(hostile_papers(), max_size=3), profile=hostile_text)
def test_hostile_content_renders_inert(papers: list[DigestPaper], profile: str) -> None:
    recipient = Recipient(
        "a@example.org", profile, RECIPIENT.unsubscribe_url, RECIPIENT.preferences_url
    )
    context = build_digest_context(
        recipient, papers, period_label="Tuesday", web_url=WEB_URL, site_name="Paper Digest"
    )
    rendered = render_email("digest", context)
    _assert_inert(rendered.html)
    assert "\n" not in rendered.subject and rendered.subject.isprintable()
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", rendered.text)
    for paper in context["papers"]:  # the title text shows up escaped, never as markup
        if "<script>" in paper["title_text"]:
            # Shown as text (highlight marks may split it, so compare the text content).
            shown = "".join(lxml.html.document_fromstring(rendered.html).itertext())
            assert "<script>" in shown


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(papers=st.lists(hostile_papers(), min_size=1, max_size=3))
def test_cached_inlining_equals_premailer_on_hostile_emails(papers: list[DigestPaper]) -> None:
    context = _digest(papers)
    assert _tree(render_email("digest", context).html) == _tree(
        render_email_premailer("digest", context).html
    )


def test_styles_are_inline_and_nothing_needs_a_style_block() -> None:
    html = render_email("digest", _digest(sample_papers()[:3])).html
    root = etree.fromstring(html, etree.HTMLParser())
    assert not root.findall(".//style") and "<style" not in html
    assert not [e for e in root.iter() if isinstance(e.tag, str) and e.get("class")]
    styled = {e.tag for e in root.iter() if isinstance(e.tag, str) and e.get("style")}
    assert {"body", "table", "td", "p", "span", "h1", "h2", "a"} <= styled
    hits = [e for e in root.iter("span") if "background-color:#fdeb95" in (e.get("style") or "")]
    assert [h.text for h in hits][:2] == ["Gaussian", "Splatting"]
    for link in root.iter("a"):
        assert link.get("style"), etree.tostring(link)
    unsubscribe = [a for a in root.iter("a") if a.get("href") == RECIPIENT.unsubscribe_url]
    assert unsubscribe and unsubscribe[0].text == "Unsubscribe"


def test_premailer_never_runs_per_email(monkeypatch: pytest.MonkeyPatch) -> None:
    context = _digest(sample_papers()[:3])
    render_email("digest", context)  # templates loaded (and inlined) once

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("premailer ran while rendering an email")

    monkeypatch.setattr(render.premailer, "transform", refuse)
    monkeypatch.setattr(render.premailer.Premailer, "transform", refuse)
    for _ in range(3):
        render_email("digest", context)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('<td class="{{ kind }}">', "must be static"),
        ('<td style="color: {{ c }}">', "must be static"),
        ("<td class='x'>", "cannot inline"),
        ("<td nowrap>", "cannot inline"),
        ('<a href="{{ u }}" class="x" {% if y %}title="t"{% endif %}>', "cannot inline"),
    ],
)
def test_inliner_refuses_markup_it_cannot_inline(source: str, problem: str) -> None:
    inliner = render._StyleInliner(".x { color: red; }")
    with pytest.raises(render.TemplateError, match=problem):
        inliner.inline(source, "t.html")


def test_inliner_keeps_jinja_and_comments_and_inlines_the_rest() -> None:
    inliner = render._StyleInliner(".x { color: red; width: 10px; } td { padding: 0; }")
    source = (
        '{# <td class="x"> #}<style>.x{}</style><!--[if mso]><td class="x"><![endif]-->'
        '<td class="x" title="a &amp; b">{{ "<td>" }}<a class="x" href="{{ u }}">'
        "{% if a < b %}</a>{% endif %}"
    )
    out = inliner.inline(source, "t.html")
    assert out == (
        '{# <td class="x"> #}<!--[if mso]><td class="x"><![endif]-->'
        '<td title="a &amp; b" style="padding:0; color:red; width:10px" width="10">{{ "<td>" }}'
        '<a style="color:red; width:10px" width="10" href="{{ u }}">{% if a < b %}</a>{% endif %}'
    )


@pytest.mark.parametrize(
    ("css", "problem"),
    [
        (".card .title { color: red }", "not a tag or class"),
        (".a > .b { color: red }", "not a tag or class"),
        ("a:hover { color: red }", "not a tag or class"),
        ("#id { color: red }", "not a tag or class"),
        ("[href] { color: red }", "not a tag or class"),
        ("@media (max-width: 600px) { .a { color: red } }", "cannot be inlined"),
        (".a { colr: red }", "invalid colr"),
        (".a { color: 12px }", "invalid color"),
    ],
)
def test_stylesheet_is_checked(css: str, problem: str) -> None:
    with pytest.raises(render.TemplateError, match=problem):
        render._check_stylesheet(css)


# -------------------------------------------------------------- rendering: the parts


def test_text_part_reads_well_in_a_terminal() -> None:
    rendered = render_email("digest", _digest(sample_papers(), max_papers=20))
    lines = rendered.text.split("\n")
    assert rendered.text.endswith("\n") and not rendered.text.endswith("\n\n")
    for line in lines:
        assert line == line.rstrip(), repr(line)
        if len(line) > 72:  # only a URL or another unbreakable word may overflow
            assert len(line.split()[-1]) > 40 or "http" in line, line
    assert "*Gaussian* *Splatting*" in rendered.text  # hits are starred
    assert "    Abstract  https://arxiv.org/abs/" in rendered.text
    assert f"Unsubscribe      {RECIPIENT.unsubscribe_url}" in lines
    assert "3 more papers matched your profile. See all 23 on the web:" in rendered.text
    assert "\n\n\n\n" not in rendered.text


def test_subject_names_the_top_paper_and_the_count() -> None:
    rendered = render_email("digest", _digest(sample_papers()[:3]))
    assert rendered.subject == (
        "3 new papers: SuGaR: Surface-Aligned Gaussian Splatting for Efficient 3D Mesh"
        " Reconstruction and High-Quality…"
    )
    one = render_email("digest", _digest(sample_papers()[1:2])).subject
    assert one == "New paper: 3D Convex Splatting: Radiance Field Rendering with 3D Smooth Convexes"
    assert render_email("digest", _digest([])).subject == "No new papers this time"


@given(title=st.text(), site=st.text(max_size=40))
def test_subject_is_one_safe_line_whatever_the_titles(title: str, site: str) -> None:
    context = build_digest_context(
        RECIPIENT, [_paper(title=title)], period_label="p", web_url=WEB_URL, site_name=site
    )
    subject = render_email("digest", context).subject
    assert subject == clean_text(subject)
    assert len(subject) <= render.SUBJECT_CHARS + 1
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", subject)


def test_unsubscribe_link_travels_with_the_rendered_email() -> None:
    assert render_email("digest", _digest([])).unsubscribe_url == RECIPIENT.unsubscribe_url
    assert render_email("confirm", load_context("confirm")).unsubscribe_url is None


# ---------------------------------------------------------------- the size budget


def _heavy_paper(i: int) -> DigestPaper:
    """A paper as large as the context allows: long title, markup-heavy text, a hit
    on every word of the excerpt."""
    words = ["&<>\"'"] * 80
    abstract = " ".join(words)
    spans, pos = [], 0
    for word in words:
        spans.append((pos, pos + len(word)))
        pos += len(word) + 1
    return DigestPaper(
        title=" ".join([str(i)] + ["&<>&<"] * 70),
        abstract=abstract,
        authors=tuple("&" * 100 for _ in range(5)),
        arxiv_id=None,
        url="https://example.org/" + "a" * 2000,
        score=1.0,
        matched=tuple("&" * 80 for _ in range(20)),
        title_spans=(),
        abstract_spans=tuple(spans),
    )


def test_html_stays_under_the_budget_and_says_how_many_more() -> None:
    context = _digest([_heavy_paper(i) for i in range(20)])
    rendered = render_email("digest", context)
    size = len(rendered.html.encode())
    assert size <= MAX_HTML_BYTES
    shown = rendered.html.count("https://example.org/aaaa") // 2  # title link + button
    assert 0 < shown < 20
    more = 20 - shown
    assert f"{more} more papers matched your profile" in rendered.html
    assert f"{more} more papers matched your profile" in rendered.text
    assert WEB_URL in rendered.html and RECIPIENT.unsubscribe_url in rendered.html


def test_a_smaller_budget_trims_more() -> None:
    context = _digest(sample_papers(), max_papers=20)
    full = render_email("digest", context)
    small = render_email("digest", context, max_html_bytes=20_000)
    assert len(full.html.encode()) > 20_000 >= len(small.html.encode())
    assert "See all 23 on the web" in small.html


def test_a_budget_too_small_for_any_paper_still_links_to_all() -> None:
    rendered = render_email("digest", _digest(sample_papers()[:3]), max_html_bytes=1_000)
    assert "arxiv.org/abs" not in rendered.html
    assert "3 more papers matched your profile" in rendered.html
    assert "Nothing new matched" not in rendered.html + rendered.text
    assert rendered.subject == "3 new papers"
    assert WEB_URL in rendered.text


def test_typical_full_digest_is_well_under_the_budget() -> None:
    rendered = render_email("digest", _digest(sample_papers(), max_papers=20))
    assert rendered.html.count("arxiv.org/abs/") + rendered.html.count("openreview") >= 19
    assert len(rendered.html.encode()) < 80_000


# ----------------------------------------------------------------------- the filters


@given(
    text=st.text(alphabet=st.characters(codec="utf-8"), max_size=300), width=st.integers(10, 100)
)
def test_wrap_keeps_every_word_and_the_width(text: str, width: int) -> None:
    out = wrap(text, width, "  ", "- ")
    if not text.split():
        assert out == "-"
        return
    assert out.split() == ("- " + " ".join(text.split())).split()
    for i, line in enumerate(out.split("\n")):
        assert line.startswith("- " if i == 0 else "  ")
        if len(line) > width:
            assert len(line.split()) == (2 if i == 0 and line.startswith("- ") else 1)


# ----------------------------------------------------------------------- card cache


def _cards() -> Any:
    return render._environment(True).filters["card"]


def test_a_cached_card_is_the_card_rendered_afresh() -> None:
    # The same papers at other ranks, in other digests, from JSON copies (no shared
    # objects) and from warm caches: every email equals a render with empty caches.
    papers = sample_papers()
    contexts = [_digest(papers), _digest(papers[::-1]), _digest(papers[3:7])]
    contexts += [json.loads(json.dumps(c)) for c in contexts]
    _cards().clear()
    cold = []
    for context in contexts:
        _cards().clear()
        cold.append(render_email("digest", context))
    warm = [render_email("digest", c) for c in contexts] + [
        render_email("digest", c) for c in reversed(contexts)
    ][::-1]
    assert warm == cold + cold


def test_papers_differing_in_anything_shown_never_share_a_card() -> None:
    title = "Diffusion models for protein design"
    base = _paper(title=title, title_spans=((0, 9),), matched=("diffusion",))
    variants = [
        base,
        _paper(title=title, title_spans=((21, 28),), matched=("diffusion",)),  # other hit
        _paper(title=title, title_spans=((0, 9),), matched=("Diffusion",)),  # term as written
        _paper(title=title, title_spans=((0, 9),), matched=("diffusion",), arxiv_id=None),
        _paper(title=title, title_spans=((0, 9),), matched=("diffusion",), authors=("B",)),
    ]
    _cards().clear()
    htmls = [render_email("digest", _digest([p])).html for p in variants]
    texts = [render_email("digest", _digest([p])).text for p in variants]
    assert len(set(htmls)) == len(variants)
    # The text part shows no highlight in titles: only the other-hit variant matches.
    assert len(set(texts)) == len(variants) - 1 and texts[0] == texts[1]
    # The rank is drawn outside the card: the same card serves any rank.
    ranked = render_email("digest", _digest([variants[1], base])).text
    assert "1.  Diffusion" in ranked and "2.  Diffusion" in ranked


def test_a_card_cannot_use_the_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    # The rank differs per digest; a card that used it would be cached wrongly.
    cards = _cards()
    monkeypatch.setattr(cards, "_templates", {})
    template = render._environment(True).from_string("{{ paper['rank'] }}")
    cards._templates["probe"] = template
    with pytest.raises(Exception, match="rank"):
        cards({"rank": 1, "title": []}, "probe")
