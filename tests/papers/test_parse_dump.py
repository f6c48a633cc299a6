"""The Daily Papers dump parser: golden files, damaged variants, refusals, fuzzing.

Golden outputs live beside their inputs in tests/data/dumps/. After an intended change
to the parser, regenerate them with ``UPDATE_GOLDEN=1 pytest tests/papers/test_parse_dump.py``
and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
import random
import re
import textwrap
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import RejectedInput
from newsletter.papers.parse_dump import parse_dump
from newsletter.papers.records import PaperRecord, ParseResult
from newsletter.text import collapse_ws

DUMPS = Path(__file__).resolve().parents[1] / "data" / "dumps"
DUMP_000 = DUMPS / "000_9c40651dd6d15728.txt"  # no date line, 56 papers
DUMP_001 = DUMPS / "001_b52638599966a208.txt"  # "Jul 30", 59 papers
T0 = datetime(2026, 7, 30, 8, 0, tzinfo=UTC)

# Each golden input with the file time it is parsed at. 001 is parsed the day before
# "Jul 30" comes round in 2026, so its year must be inferred as 2025.
GOLDEN = {
    DUMP_000.name: (T0, 56, date(2026, 7, 30)),
    DUMP_001.name: (T0 - timedelta(days=1), 59, date(2025, 7, 30)),
}


def _parse(data: bytes | str, file_time: datetime = T0) -> ParseResult:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return parse_dump(raw, file_time=file_time)


def _text(path: Path = DUMP_000) -> str:
    return path.read_text(encoding="utf-8")


def _paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


def _as_json(result: ParseResult, file_time: datetime) -> dict[str, Any]:
    return {
        "file_time": file_time.isoformat(),
        "listed_on": result.listed_on.isoformat() if result.listed_on else None,
        "skipped": result.skipped,
        "warnings": result.warnings,
        "records": [
            {
                "title": r.title,
                "abstract": r.abstract,
                "listed_on": r.listed_on.isoformat() if r.listed_on else None,
            }
            for r in result.records
        ],
    }


BASELINE = _parse(_text())
BASELINE_001 = _parse(_text(DUMP_001))


# -- golden files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden(name: str) -> None:
    file_time, count, listed_on = GOLDEN[name]
    result = parse_dump((DUMPS / name).read_bytes(), file_time=file_time)
    actual = _as_json(result, file_time)
    expected_path = DUMPS / f"{Path(name).stem}.expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        text = json.dumps(actual, ensure_ascii=False, indent=2) + "\n"
        expected_path.write_text(text, encoding="utf-8")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert actual == expected
    # The golden was checked by eye once; these pin what that check established, so a
    # careless regeneration cannot bless a regression.
    assert len(result.records) == count
    assert result.listed_on == listed_on
    assert {r.listed_on for r in result.records} == {listed_on}
    assert result.warnings == [] and result.skipped == 0


def test_golden_pairs_titles_with_their_own_abstracts() -> None:
    first, last = BASELINE.records[0], BASELINE.records[-1]
    assert first.title == "Dynamic Point Fields"
    assert first.abstract.startswith("Recent years have witnessed significant progress")
    assert last.title.startswith("AdamP: Slowing Down the Slowdown")
    assert last.abstract.endswith("https://github.com/clovaai/AdamP.")
    titles = [r.title for r in BASELINE_001.records]
    # Real titles ending in "?" and holding a sentence break are still titles.
    assert "Can Transformers Do Enumerative Geometry?" in titles
    assert any(t.startswith("Be More Active! Understanding") for t in titles)
    assert "Light Schrödinger Bridge" in titles


def test_abstracts_ending_in_a_link_or_domain_are_complete() -> None:
    # In the samples several abstracts end with a URL or a bare domain and no full stop.
    ends = [r.abstract for r in BASELINE.records + BASELINE_001.records]
    assert any(a.endswith("econ.is.tue.mpg.de") for a in ends)
    assert any(a.endswith("TangleNAS-527C{here}") for a in ends)
    for tail in ("https://github.com/x/y", "econ.is.tue.mpg.de", "see (Fig. 2).", "it is “done.”"):
        abstract = f"We study a thing. It works well. Code: {tail}"
        result = _parse("\n\n".join([_text(), "A Last Title", abstract]))
        assert result.records[-1].title == "A Last Title", tail
        assert result.skipped == 0
    for tail in ("e.g", "Fig.3", "the tran"):
        abstract = f"We study a thing. It works well. As in {tail}"
        result = _parse("\n\n".join([_text(), "A Last Title", abstract]))
        assert result.records == BASELINE.records, tail
        assert result.skipped == 1


def test_records_carry_only_title_abstract_and_date() -> None:
    for record in BASELINE.records + BASELINE_001.records:
        bare = PaperRecord(title=record.title, abstract=record.abstract, listed_on=record.listed_on)
        assert record == bare
        assert record.title == collapse_ws(record.title) != ""
        assert record.abstract == collapse_ws(record.abstract) != ""


# -- damaged but readable variants -------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: "\ufeff" + t.replace("\n", "\r\n"), id="bom-crlf"),
        pytest.param(lambda t: t.replace("\n", "\r"), id="cr"),
        pytest.param(
            lambda t: t.replace("\n\n", "\n\n\n\n").replace("\n", "  \t\n") + " \t",
            id="trailing-spaces-and-extra-blank-lines",
        ),
        pytest.param(lambda t: "\n\n\n" + t + "\n\n\n", id="blank-ends"),
        pytest.param(lambda t: t.replace("\n\n", "\n \n\t\n"), id="blank-lines-with-spaces"),
        pytest.param(lambda t: t.replace("\n\n", "\n"), id="one-item-per-line"),
        pytest.param(
            lambda t: "\n\n".join(
                textwrap.fill(p, 79, break_on_hyphens=False, break_long_words=False)
                for p in _paragraphs(t)
            ),
            id="hard-wrapped",
        ),
    ],
)
def test_layout_variants_give_identical_records(mangle: Any) -> None:
    for path, baseline in ((DUMP_000, BASELINE), (DUMP_001, BASELINE_001)):
        result = _parse(mangle(_text(path)))
        assert result.records == baseline.records
        assert result.warnings == [] and result.skipped == 0


def test_internal_whitespace_in_titles_and_abstracts_is_collapsed() -> None:
    text = _text().replace("Dynamic Point Fields", "Dynamic \t Point\u00a0 Fields", 1)
    text = text.replace("Recent years have", "Recent   years\thave", 1)
    first = _parse(text).records[0]
    assert first == BASELINE.records[0]


def test_utf16_with_bom_is_text() -> None:
    result = _parse(_text(DUMP_001).encode("utf-16"))
    assert result.records == BASELINE_001.records
    assert result.warnings == []


def test_truncated_last_abstract_is_skipped_and_reported() -> None:
    text = _text()
    last = BASELINE.records[-1]
    cut = text[: text.rindex("\n\n") + 200]  # mid-word, a little into the last abstract
    result = _parse(cut)
    assert result.records == BASELINE.records[:-1]
    assert result.skipped == 1
    assert len(result.warnings) == 1
    assert last.title in result.warnings[0] and "truncated" in result.warnings[0]


def test_truncated_after_last_title_is_skipped_and_reported() -> None:
    text = _text()
    result = _parse(text[: text.rindex("\n\n")] + "\n")
    assert result.records == BASELINE.records[:-1]
    assert result.skipped == 1
    assert len(result.warnings) == 1 and BASELINE.records[-1].title in result.warnings[0]


@pytest.mark.parametrize("keep", [3, 6, 30])
def test_truncated_in_the_first_words_of_the_last_abstract(keep: int) -> None:
    # "Title" then "Randomized Smoo": a short title-like tail at the end of the file is
    # the start of the last abstract, so the last paper is skipped, not its tail.
    text = _text()
    result = _parse(text[: text.rindex("\n\n") + 2 + keep])
    assert result.records == BASELINE.records[:-1]
    assert result.skipped == 1
    assert len(result.warnings) == 1 and BASELINE.records[-1].title in result.warnings[0]


def test_missing_abstract_in_the_middle_is_recovered() -> None:
    paragraphs = _paragraphs(_text())
    orphan = paragraphs.index("Perturbation Analysis of Neural Collapse")
    del paragraphs[orphan + 1]
    result = _parse("\n\n".join(paragraphs))
    index = [r.title for r in BASELINE.records].index("Perturbation Analysis of Neural Collapse")
    expected = list(BASELINE.records)
    expected[index] = replace(expected[index], abstract="")
    assert result.records == expected
    assert result.skipped == 0
    assert len(result.warnings) == 1
    assert "Perturbation Analysis of Neural Collapse" in result.warnings[0]


def test_abstract_split_into_paragraphs_is_joined() -> None:
    abstract = BASELINE.records[3].abstract
    split = re.sub(r"\. (?=[A-Z])", ".\n\n", abstract)
    assert split.count("\n\n") >= 3
    result = _parse(_text().replace(abstract, split))
    assert result.records == BASELINE.records
    assert result.warnings == []


def test_short_one_sentence_abstract_pairs() -> None:
    text = "\n\n".join(
        ["Daily Papers", "A Tiny Paper", "We show one thing.", "Another Paper", "It works."]
    )
    result = _parse(text)
    assert [(r.title, r.abstract) for r in result.records] == [
        ("A Tiny Paper", "We show one thing."),
        ("Another Paper", "It works."),
    ]


def test_prose_before_the_first_title_is_dropped_and_reported() -> None:
    paragraphs = _paragraphs(_text())
    paragraphs.insert(5, "Some stray sentence. Another one follows it. And a third one.")
    result = _parse("\n\n".join(paragraphs))
    assert result.records == BASELINE.records
    assert result.skipped == 1
    assert len(result.warnings) == 1 and "Some stray sentence" in result.warnings[0]


def test_cp1252_file_decodes_with_a_warning() -> None:
    text = _text().replace("Dynamic Point Fields", "A naïve Point Field – revisited", 1)
    result = _parse(text.encode("cp1252"))
    assert result.records[0].title == "A naïve Point Field – revisited"
    assert result.records[1:] == BASELINE.records[1:]
    assert len(result.warnings) == 1 and "cp1252" in result.warnings[0]


def test_latin1_fallback_when_cp1252_fails() -> None:
    # 0x81 is undefined in cp1252; latin-1 reads every byte (0x81 is a control, dropped).
    data = _text().replace("Dynamic Point Fields", "Dynamic Point Fields\x81", 1)
    result = _parse(data.encode("latin-1"))
    assert result.records == BASELINE.records
    assert any("latin-1" in w for w in result.warnings)


def test_mostly_utf8_with_a_bad_byte_keeps_utf8() -> None:
    data = _text(DUMP_001).encode("utf-8").replace(b"Unsupervised Manifold", b"Unsupervised\xff", 1)
    result = _parse(data)
    titles = [r.title for r in result.records]
    assert "Light Schrödinger Bridge" in titles  # not garbled as cp1252 "SchrÃ¶dinger"
    assert "Unsupervised\ufffd Linearizing and Clustering" in titles
    assert len(result.warnings) == 1 and "UTF-8" in result.warnings[0]


def test_stray_control_character_is_removed_with_a_warning() -> None:
    result = _parse(_text().replace("Dynamic Point", "Dynamic\x1b Point", 1))
    assert result.records[0].title == "Dynamic Point Fields"
    assert len(result.warnings) == 1 and "control" in result.warnings[0]


# -- header and date line ----------------------------------------------------------------

BODY_000 = "\n\n".join(_paragraphs(_text())[5:])


@pytest.mark.parametrize(
    "header",
    [
        [
            "new",
            "Get trending papers in your email inbox!",
            "Subscribe",
            "Daily Papers",
            "byAK and the research community",
        ],
        ["Daily Papers", "by  AK and the research community", "new", "Subscribe"],
        ["Subscribe", "Daily Papers"],
        ["DAILY PAPERS", "Get trending papers in your email inbox"],
        [],
    ],
    ids=["byAK", "reordered", "partial", "case-and-punctuation", "none"],
)
def test_header_variants(header: list[str]) -> None:
    for separator in ("\n\n", "\n"):
        result = _parse(separator.join(header) + "\n\n" + BODY_000)
        assert result.records == BASELINE.records, separator


@pytest.mark.parametrize(
    ("line", "file_time", "expected"),
    [
        ("Jul 30", datetime(2026, 7, 29, 23, 59), date(2025, 7, 30)),
        ("Jul 30", datetime(2026, 7, 30, 0, 1), date(2026, 7, 30)),
        ("July 30th", datetime(2026, 12, 1), date(2026, 7, 30)),
        ("Dec 31", datetime(2026, 1, 1), date(2025, 12, 31)),
        ("Jan 1", datetime(2026, 1, 1), date(2026, 1, 1)),
        ("Feb 29", datetime(2026, 7, 30), date(2024, 2, 29)),
        ("Feb 29", datetime(2024, 2, 28), date(2020, 2, 29)),
        ("Feb 29", datetime(2024, 2, 29), date(2024, 2, 29)),
        ("February 29", datetime(2104, 2, 28), date(2096, 2, 29)),  # 2100 is not leap
        ("Sept 3", datetime(2026, 7, 30), date(2025, 9, 3)),
        ("Jul 30, 2024", datetime(2026, 7, 30), date(2024, 7, 30)),
    ],
)
def test_date_line_year_inference(line: str, file_time: datetime, expected: date) -> None:
    result = _parse(f"Daily Papers\n\n{line}\n\n{BODY_000}", file_time)
    assert result.listed_on == expected
    assert {r.listed_on for r in result.records} == {expected}
    assert [r.title for r in result.records] == [r.title for r in BASELINE.records]
    assert result.warnings == []


def test_date_comes_from_the_file_times_own_day() -> None:
    # 01:00 on Jul 30 at UTC+2 is still Jul 29 in UTC: the file's own day counts.
    file_time = datetime(2026, 7, 30, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert _parse(f"Jul 30\n\n{BODY_000}", file_time).listed_on == date(2026, 7, 30)
    assert _parse(BODY_000, file_time).listed_on == date(2026, 7, 30)


def test_impossible_date_line_falls_back_to_the_file_day_with_a_warning() -> None:
    result = _parse(f"Daily Papers\n\nFeb 30\n\n{BODY_000}")
    assert result.listed_on == T0.date()
    assert result.records == BASELINE.records
    assert len(result.warnings) == 1 and "Feb 30" in result.warnings[0]


def test_month_lookalike_is_not_a_date_line() -> None:
    # "ſ" casefolds to "s"; an ASCII-only month pattern must not trip over it.
    result = _parse(f"ſep 3\n\n{BODY_000}")
    assert result.listed_on == T0.date()
    assert result.records[0].title == "ſep 3" and result.records[0].abstract == ""


# -- refusals ----------------------------------------------------------------------------


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(4096)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"\xef\xbb\xbf", "empty file"),
        (b" \r\n\t\n\n  ", "empty file (whitespace only)"),
        (_png(), "binary data, not a text dump"),
        (
            random.Random(2).randbytes(4096).replace(b"\x00", b"\x01"),
            "binary data, not a text dump",
        ),
        (b"Daily Papers\n\nA Title\x00\n\nText.", "binary data, not a text dump"),
        (bytes(range(1, 9)) * 50 + b" some text", "binary data, not a text dump"),
        (
            b"<!DOCTYPE html>\n<html><head><title>Daily Papers</title></head><body></body></html>",
            "HTML page, not a plain-text dump (save the page as text)",
        ),
        (
            b"\n<!-- saved from url -->\n<HTML><body>Daily Papers</body></HTML>",
            "HTML page, not a plain-text dump (save the page as text)",
        ),
        (
            ("<div><p>Paper</p><a href='x'>link</a></div>\n" * 10).encode(),
            "HTML page, not a plain-text dump (save the page as text)",
        ),
        (
            b"new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
            b"byAK and the research community\n\nJul 30\n",
            "no papers found after the page header",
        ),
        (
            b"Daily Papers\n\nOnly A Title",
            "no complete papers found after the page header (1 incomplete)",
        ),
        (
            b"One\n\nTwo Titles\n\nThree Titles",
            "no papers found: no title is followed by an abstract",
        ),
    ],
    ids=[
        "empty",
        "bom-only",
        "whitespace",
        "png",
        "random",
        "nul",
        "controls",
        "html-doctype",
        "html-comment-first",
        "html-tags",
        "header-only",
        "title-only",
        "titles-only",
    ],
)
def test_rejections(data: bytes, reason: str) -> None:
    with pytest.raises(RejectedInput) as excinfo:
        parse_dump(data, file_time=T0)
    assert excinfo.value.reason == reason
    assert "\n" not in excinfo.value.reason


def test_an_abstract_mentioning_a_tag_is_not_html() -> None:
    text = _text().replace("Recent years", "Using <p> and <div> tags, recent years", 1)
    assert len(_parse(text).records) == 56


# -- never anything but RejectedInput ----------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_result(result: ParseResult) -> None:
    assert result.records
    assert isinstance(result.skipped, int) and result.skipped >= 0
    for record in result.records:
        assert record.title and "\n" not in record.title
        assert record.listed_on == result.listed_on
    assert all(isinstance(w, str) and w for w in result.warnings)


def _parse_or_reject(data: bytes) -> None:
    try:
        result = parse_dump(data, file_time=T0)
    except RejectedInput as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        _check_result(result)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    _parse_or_reject(data)


@FUZZ
@given(st.text(max_size=2048))
def test_arbitrary_text_never_crashes(text: str) -> None:
    for encoding in ("utf-8", "utf-16", "utf-8-sig"):
        _parse_or_reject(text.encode(encoding, errors="surrogatepass"))


SAMPLE_PARAGRAPHS = _paragraphs(_text()) + _paragraphs(_text(DUMP_001))[:20]
JUNK = st.one_of(
    st.sampled_from(SAMPLE_PARAGRAPHS),
    st.sampled_from(["", " ", "\r", "\t", "\ufeff", "Jul 30", "Feb 29", "Feb 30", "<p>", "…"]),
    st.text(max_size=80),
)


@FUZZ
@given(
    st.lists(JUNK, max_size=40),
    st.sampled_from(["\n\n", "\n", "\r\n\r\n", "\n\n\n"]),
    st.sampled_from(["utf-8", "cp1252", "latin-1", "utf-16"]),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
)
def test_mixtures_of_sample_paragraphs_and_junk_never_crash(
    parts: list[str], separator: str, encoding: str, file_time: datetime
) -> None:
    data = separator.join(parts).encode(encoding, errors="replace")
    try:
        result = parse_dump(data, file_time=file_time)
    except RejectedInput as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        _check_result(result)


@FUZZ
@given(st.integers(min_value=0, max_value=len(_text())))
def test_any_truncation_keeps_a_prefix_of_the_records(cut: int) -> None:
    # Wherever the file is cut, what comes back is the papers before the cut (the last
    # one possibly shortened if the cut fell just after a full stop), never garbage.
    data = _text()[:cut].encode()
    try:
        result = parse_dump(data, file_time=T0)
    except RejectedInput:
        return
    complete = result.records[:-1]
    assert complete == BASELINE.records[: len(complete)]
    assert result.records[-1].title == BASELINE.records[len(complete)].title
    assert result.skipped <= 1 and len(result.warnings) == result.skipped


# -- size ------------------------------------------------------------------------------
# Speed is measured in benchmarks/bench_ingest.py, not asserted here (timed tests fail
# on a busy machine and prove little).


def test_large_file_parses_every_record() -> None:
    big = _text() + "\n\n" + "\n\n".join([BODY_000] * 40)
    result = _parse(big)
    assert len(result.records) == 56 * 41
