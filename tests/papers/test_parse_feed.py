"""The feed parser: golden files, arXiv specifics, damaged feeds, refusals, fuzzing.

Golden outputs live in tests/data/feeds/ as ``<name>.expected.json`` beside the
sample feeds written for these tests; the two real arXiv API samples are read from
newsletter/samples/ (shipped with the package) and their goldens sit here too. After
an intended change to the parser, regenerate with
``UPDATE_GOLDEN=1 pytest tests/papers/test_parse_feed.py`` and read the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import RejectedInput
from newsletter.papers.parse_feed import (
    KNOWN_ANNOUNCE_TYPES,
    html_to_text,
    parse_feed,
    repair_mojibake,
    split_creators,
)
from newsletter.papers.records import PaperRecord, ParseResult
from newsletter.text import collapse_ws

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
SAMPLES = Path(__file__).resolve().parents[2] / "newsletter" / "samples"
API_100 = SAMPLES / "arxiv-api-search-testing-100.xml"
API_ONE = SAMPLES / "arxiv-api-id-1707.08567.xml"
LISTING_RSS = FEEDS / "arxiv-rss-cs.LG.xml"
LISTING_ATOM = FEEDS / "arxiv-atom-math.DG.xml"
JOURNAL = FEEDS / "journal-rss1-nmeth.xml"
BLOG = FEEDS / "blog-atom.xml"
GOLDEN = [API_100, API_ONE, LISTING_RSS, LISTING_ATOM, JOURNAL, BLOG]

NEW_ID = re.compile(r"^\d{4}\.\d{4,5}$")
OLD_ID = re.compile(r"^[a-z-]+(\.[A-Z]{2})?/\d{7}$")


def _parse(path: Path, url: str | None = None) -> ParseResult:
    return parse_feed(path.read_bytes(), url=url)


def _as_json(result: ParseResult) -> dict[str, Any]:
    def value(v: object) -> object:
        if isinstance(v, datetime | date):
            return v.isoformat()
        if isinstance(v, tuple):
            return list(v)
        return v

    return {
        "listed_on": value(result.listed_on),
        "skipped": result.skipped,
        "warnings": result.warnings,
        "records": [
            {f.name: value(getattr(r, f.name)) for f in dataclasses.fields(r)}
            for r in result.records
        ],
    }


# -- golden files ----------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden(path: Path) -> None:
    actual = _as_json(_parse(path))
    expected_path = FEEDS / f"{path.stem}.expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        text = json.dumps(actual, ensure_ascii=False, indent=2) + "\n"
        expected_path.write_text(text, encoding="utf-8")
    assert actual == json.loads(expected_path.read_text(encoding="utf-8"))


def test_every_record_is_clean() -> None:
    for path in GOLDEN:
        for r in _parse(path).records:
            assert r.title == collapse_ws(r.title) != "", path.name
            assert r.abstract == collapse_ws(r.abstract), path.name
            assert "Announce Type" not in r.abstract and not r.abstract.startswith("arXiv:")
            assert all(a == collapse_ws(a) != "" for a in r.authors), path.name
            assert r.published is None or r.published.tzinfo is UTC
            assert r.url is None or r.url.startswith(("https://", "http://"))
            assert r.doi is None or r.doi == r.doi.lower()


# -- the arXiv API ---------------------------------------------------------------------


def test_api_sample_gives_100_records_with_versionless_ids_and_authors() -> None:
    result = _parse(API_100)
    assert len(result.records) == 100
    assert result.warnings == [] and result.skipped == 0
    ids = [r.arxiv_id or "" for r in result.records]
    assert all(NEW_ID.match(i) or OLD_ID.match(i) for i in ids)
    assert [i for i in ids if "/" in i] == ["cs/0503050", "hep-ph/0301050", "gr-qc/0103067"]
    assert len(set(ids)) == 100
    for r in result.records:
        assert r.authors and r.abstract and r.categories
        assert isinstance(r.version, int) and r.version >= 1
        assert r.guid == f"http://arxiv.org/abs/{r.arxiv_id}v{r.version}"
        assert r.url == f"https://arxiv.org/abs/{r.arxiv_id}"  # version-less on purpose
        assert r.announce_type is None and r.listed_on is None
    first = result.records[0]
    assert first.arxiv_id == "2202.12139" and first.version == 1
    assert first.doi == "10.1109/icstw55395.2022.00035"
    assert first.authors == ("Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker")
    assert first.categories == ("cs.SE", "cs.LG")
    assert first.published == datetime(2022, 2, 24, 15, 5, 19, tzinfo=UTC)
    # Papers with <arxiv:doi> keep it; the others have none (no DOI is invented).
    assert sum(1 for r in result.records if r.doi) == 32


def test_api_sample_mojibake_is_repaired() -> None:
    records = _parse(API_100).records
    text = " ".join(" ".join((r.title, r.abstract, *r.authors)) for r in records)
    assert not re.search("[\u00c2-\u00f4][\u0080-\u00bf]", text)
    authors = {a for r in records for a in r.authors}
    assert {"José Raúl Romero", "Oliver Weißl", "Lasse Møldrup", "Clément L. Canonne"} <= authors
    assert "$ω$Test: WebView-Oriented Testing for Android Applications" in {
        r.title for r in records
    }
    assert any("at most $α$" in r.abstract for r in records)


def test_single_id_sample() -> None:
    (record,) = _parse(API_ONE).records
    assert record.arxiv_id == "1707.08567" and record.version == 1
    assert record.title.startswith("Proceedings of Workshop AEW10")
    assert len(record.authors) == 34
    assert "Dirk Wübben" in record.authors  # recorded as "Dirk WÃ¼bben"
    assert record.categories == ("cs.IT",)


# -- the arXiv listing feeds -----------------------------------------------------------


def test_listing_announce_types() -> None:
    rss = [r.announce_type for r in _parse(LISTING_RSS).records]
    assert rss == [
        "new",
        "new",
        "new",
        "cross",
        "replace",
        "replace-cross",
        "absonly",
        "replace-cross",
        "new",
    ]
    atom = [r.announce_type for r in _parse(LISTING_ATOM).records]
    assert set(rss) == set(atom) == KNOWN_ANNOUNCE_TYPES


@pytest.mark.parametrize("path", [LISTING_RSS, LISTING_ATOM], ids=["rss", "atom"])
def test_listing_ids_versions_and_day(path: Path) -> None:
    result = _parse(path)
    for r in result.records:
        assert r.arxiv_id and (NEW_ID.match(r.arxiv_id) or OLD_ID.match(r.arxiv_id))
        assert r.guid == f"oai:arXiv.org:{r.arxiv_id}v{r.version}"
        assert r.url == f"https://arxiv.org/abs/{r.arxiv_id}"
        assert r.listed_on == result.listed_on
    old = [r for r in result.records if r.arxiv_id and "/" in r.arxiv_id]
    assert len(old) == 1
    # The announcement day in arXiv's own time zone (midnight Eastern).
    assert result.listed_on in (date(2024, 1, 16), date(2024, 3, 5))


def test_listing_rss_details() -> None:
    records = {r.arxiv_id: r for r in _parse(LISTING_RSS).records}
    moe = records["2401.07123"]
    assert moe.authors == ("Zoë Müller", "Łukasz Kaiser", "李明", "José Ramírez")
    assert moe.abstract.startswith("Human visual perception")
    assert moe.abstract.endswith(
        "route tokens by visual attributes & improve domain generalization."
    )
    parities = records["2401.07188"]
    # Entities decoded; TeX with < and > kept whole (no "tag" stripped out of it).
    assert parities.title == (
        "Learning $k$-Sparse Parities with Fewer than $n^{<2}$ Samples: Q&A for the “Hard” Regime"
    )
    assert parities.abstract.endswith("tight for $a<b$ and $c>d$.")
    assert parities.version == 2
    ddpm = records["2006.11239"]
    assert ddpm.doi == "10.48550/arxiv.2006.11239" and ddpm.version == 3
    tracking = records["2312.11002"]
    assert tracking.authors == (
        "The ATLAS Collaboration",
        "Guy L. Steele Jr.",
        "Daniel Murnane (LBNL, Berkeley)",
        "Xiangyang Ju",
    )
    assert tracking.categories == ("hep-ex", "cs.LG", "physics.ins-det")
    old = records["cond-mat/0309136"]
    assert old.version == 4 and old.url == "https://arxiv.org/abs/cond-mat/0309136"
    assert records["2401.07345"].authors[-1] == "Ægir Þórsson"  # ", and" before the last


def test_listing_prefix_gives_id_and_type_when_elements_are_missing() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><item>
      <title>Only a description</title>
      <description>arXiv:2401.09999v3 Announce Type: replace-cross
Abstract: Text.</description></item></channel></rss>"""
    (record,) = parse_feed(feed).records
    assert (record.arxiv_id, record.version, record.announce_type) == (
        "2401.09999",
        3,
        "replace-cross",
    )
    assert record.abstract == "Text."


def test_unknown_announce_type_is_kept_and_reported() -> None:
    feed = LISTING_RSS.read_bytes().replace(b">absonly<", b">Withdrawn<")
    result = parse_feed(feed)
    assert "withdrawn" in [r.announce_type for r in result.records]
    assert result.warnings == ["unknown arXiv announce type 'withdrawn' in 1 entry"]


@pytest.mark.parametrize(
    ("creators", "names"),
    [
        ("Alice Smith", ["Alice Smith"]),
        ("Alice Smith, Bob Jones", ["Alice Smith", "Bob Jones"]),
        ("Alice Smith and Bob Jones", ["Alice Smith", "Bob Jones"]),
        ("A. Smith, B. Jones and C. Brown", ["A. Smith", "B. Jones", "C. Brown"]),
        ("A. Smith, B. Jones, and C. Brown", ["A. Smith", "B. Jones", "C. Brown"]),
        ("A. Smith,B. Jones ,  C. Brown", ["A. Smith", "B. Jones", "C. Brown"]),
        ("Guy L. Steele, Jr., Richard P. Gabriel", ["Guy L. Steele Jr.", "Richard P. Gabriel"]),
        ("John Smith, III and Jane Doe", ["John Smith III", "Jane Doe"]),
        ("A. Author (MIT, Boston), B. Author", ["A. Author (MIT, Boston)", "B. Author"]),
        ("A. Author, B. Author (Harvard and MIT)", ["A. Author", "B. Author (Harvard and MIT)"]),
        ("A. Author, B. Author, et al.", ["A. Author", "B. Author"]),
        ("Alexander Anderson", ["Alexander Anderson"]),  # "and" inside a word
        ("Brandon Sanderson and Andy Weir", ["Brandon Sanderson", "Andy Weir"]),
        (
            "LIGO Scientific Collaboration, Virgo Collaboration",
            ["LIGO Scientific Collaboration", "Virgo Collaboration"],
        ),
        ("  ,  , ", []),
    ],
)
def test_split_creators(creators: str, names: list[str]) -> None:
    assert split_creators(creators) == names


def test_generic_feed_author_names_are_not_split() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
    <channel><item><title>T</title><dc:creator>Smith, J.</dc:creator>
    <dc:creator>Doe, Jane and Roe, R.</dc:creator></item></channel></rss>"""
    (record,) = parse_feed(feed).records
    assert record.authors == ("Smith, J.", "Doe, Jane and Roe, R.")


# -- generic feeds ---------------------------------------------------------------------


def test_journal_dois_from_prism_dc_identifier_and_links() -> None:
    records = _parse(JOURNAL).records
    assert [r.doi for r in records] == [
        "10.1038/s41592-024-02201-0",  # prism:doi and dc:identifier
        "10.1038/s41592-024-02190-0",  # dc:identifier "doi:..." only, upper case
        "10.1038/s41592-024-02188-8",  # only a doi.org link
        None,  # an editorial without a DOI
    ]
    assert records[0].authors == ("Carsen Stringer", "Marius Pachitariu")
    assert all(r.arxiv_id is None for r in records)
    assert (
        records[1].title
        == "Spatial transcriptomics at subcellular resolution with CO2-fixed tissue"
    )
    # HTML stripped, entities decoded, <script> dropped with its content.
    assert records[1].abstract == "We fix tissue in CO2 & map 5,000 genes at 0.5 µm resolution."
    assert records[1].published == datetime(2024, 3, 4, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("entry_xml", "doi"),
    [
        ("<arxiv:doi>10.1103/PhysRevD.1.1</arxiv:doi>", "10.1103/physrevd.1.1"),
        ("<prism:doi>10.1000/ABC</prism:doi>", "10.1000/abc"),
        ("<dc:identifier>info:doi/10.1000/xyz.1</dc:identifier>", "10.1000/xyz.1"),
        ("<dc:identifier>https://example.org/article/7</dc:identifier>", None),
        ('<link rel="related" href="https://dx.doi.org/10.5555/12345678"/>', "10.5555/12345678"),
        ("<id>doi:10.1000/guid.9</id>", "10.1000/guid.9"),
        ("<id>https://doi.org/10.1000/guid.10</id>", "10.1000/guid.10"),
        # A DOI cited in the content is another paper's, not this entry's.
        ('<content type="html">see https://doi.org/10.1000/other</content>', None),
        ('<link rel="alternate" href="https://example.org/10.1000/x"/>', None),
    ],
)
def test_doi_sources(entry_xml: str, doi: str | None) -> None:
    feed = f"""<?xml version="1.0"?>
    <feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom"
          xmlns:prism="http://prismstandard.org/namespaces/basic/2.0/"
          xmlns:dc="http://purl.org/dc/elements/1.1/">
      <title>t</title><entry><title>A paper</title>{entry_xml}</entry></feed>"""
    (record,) = parse_feed(feed.encode()).records
    assert record.doi == doi


def test_blog_feed() -> None:
    result = _parse(BLOG)
    assert result.skipped == 1
    assert result.warnings == ["1 entry without a title skipped (entry 3)"]
    warmup, reading, sharpness = result.records
    assert warmup.title == "Why Adam needs warm-up"
    assert warmup.url == "https://blog.example.org/posts/adam-warmup/"  # xml:base resolved
    assert warmup.abstract.endswith("from exploding in the first steps. A short note with plots.")
    # A post whose own link is an arXiv abstract page is that paper; a number in
    # the text is not an id.
    assert (reading.arxiv_id, reading.version) == ("1706.03762", 7)
    assert reading.authors == ("Ada Example", "Ben Sample")
    assert reading.published == datetime(2024, 2, 13, 12, 0, tzinfo=UTC)
    assert sharpness.title == "Sharpness and generalisation"  # xhtml title
    assert sharpness.url is None  # a javascript: link never reaches an email
    assert sharpness.doi is None  # the doi.org link is in the content
    assert sharpness.categories == ("optimisation", "generalisation")
    assert sharpness.abstract == (
        "Flat minima, sharp minima and what the Keskar et al. paper really measured."
    )


def test_relative_links_resolve_against_an_http_url_only() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
    <item><title>T</title><link>/papers/1</link></item></channel></rss>"""
    (record,) = parse_feed(feed, url="https://journal.example/feed.rss").records
    assert record.url == "https://journal.example/papers/1"
    # A file path is not a base URL; a relative link stays unusable.
    (record,) = parse_feed(feed, url="/var/inbox/feed.rss").records
    assert record.url is None


def test_hugging_face_paper_links_name_the_arxiv_paper() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Daily Papers</title>
    <item><title>Some paper</title><link>https://huggingface.co/papers/2401.04088</link>
    <guid>https://huggingface.co/papers/2401.04088</guid></item></channel></rss>"""
    (record,) = parse_feed(feed).records
    assert record.arxiv_id == "2401.04088" and record.url == "https://arxiv.org/abs/2401.04088"


def test_rss_author_email_form() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
    <item><title>T</title><author>ada@example.org (Ada Lovelace)</author></item>
    </channel></rss>"""
    (record,) = parse_feed(feed).records
    assert record.authors == ("Ada Lovelace",)


def test_html_to_text() -> None:
    assert html_to_text("<p>a</p><p>b</p>") == " a  b "
    assert html_to_text("x &amp; y &lt; z &nbsp;&eacute;") == "x & y < z \xa0é"
    assert html_to_text("<style>p{}</style>keep<script>drop()</script>") == "keep"
    assert html_to_text("f<i>o</i>o") == "foo"
    assert html_to_text("no markup") == "no markup"


def test_repair_mojibake_touches_only_exact_sequences() -> None:
    assert repair_mojibake("JosÃ© RaÃºl") == "José Raúl"
    assert repair_mojibake("Oliver WeiÃ\x9fl") == "Oliver Weißl"
    assert repair_mojibake("$Ï\x89$Test and café") == "$ω$Test and café"  # mixed
    for fine in ("café", "Ærø", "Müller", "日本語", "naïve", "Ã alone", "x²"):
        assert repair_mojibake(fine) == fine


# -- damaged feeds ---------------------------------------------------------------------


def test_truncated_feed_keeps_the_entries_before_the_break() -> None:
    data = API_100.read_bytes()
    baseline = _parse(API_100).records
    for cut in (len(data) // 3, len(data) // 2, len(data) - 10):
        result = parse_feed(data[:cut])
        n = len(result.records)
        assert 0 < n < 100
        assert result.records == baseline[:n], cut
        assert result.warnings[0].startswith("feed is not well-formed XML: ")
        assert "entries recovered" in result.warnings[0]
        # The entry the break cut in two is dropped, not stored with half a title.
        assert result.skipped == 1
        assert "is cut off by the end of the document; dropped" in result.warnings[1]


def test_truncated_after_a_whole_entry_drops_nothing() -> None:
    data = LISTING_RSS.read_bytes()
    cut = data.index(b"</item>") + len(b"</item>")
    result = parse_feed(data[:cut])
    assert len(result.records) == 1 and result.skipped == 0
    assert result.warnings == [
        "feed is not well-formed XML: no element found at line 29; 1 entry recovered"
    ]


def test_error_in_the_middle_still_recovers_everything() -> None:
    # A bare "&" is the commonest real-world breakage.
    data = LISTING_RSS.read_bytes().replace(b"&amp; improve", b"& improve")
    result = parse_feed(data)
    assert result.records == _parse(LISTING_RSS).records
    assert result.warnings == [
        "feed is not well-formed XML: not well-formed (invalid token) at line 21; "
        "9 entries recovered"
    ]


def test_undeclared_namespace_is_reported_and_read() -> None:
    feed = b"""<rss version="2.0"><channel><title>x</title><item><title>T</title>
    <arxiv:announce_type>cross</arxiv:announce_type></item></channel></rss>"""
    result = parse_feed(feed)
    assert [r.announce_type for r in result.records] == ["cross"]
    assert result.warnings[0].startswith("feed is not well-formed XML: unbound prefix")


def _one_item(title: str) -> str:
    return f'<rss version="2.0"><channel><item><title>{title}</title></item></channel></rss>'


def test_fallback_encoding_is_reported() -> None:
    result = parse_feed(_one_item("caf\xe9").encode("latin-1"))  # undeclared Latin-1
    assert [r.title for r in result.records] == ["café"]
    assert result.warnings == [
        "feed encoding: document declared as utf-8, but parsed as Windows-1252"
    ]


def test_declared_encodings_and_utf16() -> None:
    for encoding in ("iso-8859-1", "utf-16"):
        feed = f'<?xml version="1.0" encoding="{encoding}"?>' + _one_item("café")
        result = parse_feed(feed.encode(encoding))
        assert [r.title for r in result.records] == ["café"], encoding
        assert result.warnings == [], encoding


@pytest.mark.parametrize(
    "feed",
    [
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>cs.LG</title></channel></rss>',
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>cs.LG updates</title></feed>',
    ],
)
def test_a_feed_without_entries_is_empty_not_an_error(feed: bytes) -> None:
    # arXiv's listings are empty every weekend: not worth a warning.
    assert parse_feed(feed) == ParseResult()


def test_untitled_entries_are_counted_and_listed() -> None:
    items = "".join(
        "<item><title>T</title></item>" if i % 3 else "<item><link>https://x/</link></item>"
        for i in range(40)
    )
    result = parse_feed(f'<rss version="2.0"><channel>{items}</channel></rss>'.encode())
    assert len(result.records) == 26 and result.skipped == 14
    assert result.warnings == [
        "14 entries without a title skipped "
        "(entries 1, 4, 7, 10, 13, 16, 19, 22, 25, 28 and 4 more)"
    ]


# -- not feeds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty document"),
        (b" \r\n\t", "empty document (only whitespace)"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "JSON"),
        (b"\xef\xbb\xbf[1, 2]", "JSON"),
        (
            b"<!DOCTYPE html>\n<html><head><title>Feed</title></head><body></body></html>",
            "HTML page",
        ),
        (b"<html><body><item><title>x</title></item></body></html>", "HTML page"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (bytes(range(1, 256)) * 4, "binary data"),
        (
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
            "not an RSS or Atom feed",
        ),
        (b'<?xml version="1.0"?><urlset><url><loc>https://x/</loc></url></urlset>', "XML, but not"),
        (b"Dynamic Point Fields\n\nRecent years have witnessed...", "not well-formed XML"),
        (b"<?xml version='1.0'?>\n<rss", "not well-formed XML (unclosed token at line 2)"),
    ],
)
def test_not_a_feed_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RejectedInput) as info:
        parse_feed(data)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_bytes_are_never_taken_for_a_url_or_a_file_name(tmp_path: Path) -> None:
    # feedparser.parse(b"...") would open a file or a URL of that name.
    path = tmp_path / "feed.xml"
    path.write_bytes(LISTING_RSS.read_bytes())
    for data in (str(path).encode(), path.as_uri().encode(), b"http://127.0.0.1:9/feed"):
        with pytest.raises(RejectedInput):
            parse_feed(data)


def test_warning_filters_are_left_as_they_were() -> None:
    before = list(warnings.filters)
    parse_feed(LISTING_RSS.read_bytes())
    assert warnings.filters == before


# -- fuzzing ---------------------------------------------------------------------------

_SEED = LISTING_RSS.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_parse_or_are_rejected(data: bytes) -> None:
    _parse_or_reject(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(_SEED)),
    st.integers(0, 200),
    st.binary(max_size=40) | st.sampled_from([b"<", b"&", b"]]>", b"<item>", b"</item>", b"\x00"]),
)
def test_damaged_feeds_parse_or_are_rejected(at: int, drop: int, insert: bytes) -> None:
    _parse_or_reject(_SEED[:at] + insert + _SEED[at + drop :])


def _parse_or_reject(data: bytes) -> None:
    try:
        result = parse_feed(data)
    except RejectedInput as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    for record in result.records:
        assert isinstance(record, PaperRecord) and record.title
        assert record.published is None or record.published.tzinfo is UTC
