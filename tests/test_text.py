"""The text normaliser shared by paper identity, ingest and the matcher."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.text import Token, collapse_ws, fold, stem, stem_all, tokens, words


def test_fold_and_collapse_keep_their_behaviour() -> None:
    # Paper identity fingerprints depend on these exact results.
    assert fold("Naïve ＦＯＯ ﬁne Straße") == "naive foo fine strasse"
    assert collapse_ws("  a \t b\n\nc  ") == "a b c"


def test_tokens_are_folded_stemmed_and_keep_original_offsets() -> None:
    text = "Self-Supervised Graph Networks"
    assert tokens(text) == [
        Token("self", 0, 4, "self"),
        Token("supervis", 5, 15, "supervised"),
        Token("graph", 16, 21, "graph"),
        Token("network", 22, 30, "networks"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("networks", ["network"]),
        ("network", ["network"]),
        ("Naïve", ["naiv"]),
        ("nai\u0308ve", ["naiv"]),  # decomposed: i + combining diaeresis
        ("naive", ["naiv"]),
        ("self-supervised", ["self", "supervis"]),
        ("self supervised", ["self", "supervis"]),
        ("self_supervised", ["self", "supervis"]),
        ("deep learning's", ["deep", "learn"]),  # the possessive stays with its word
        ("deep learning’s", ["deep", "learn"]),  # typographic apostrophe too
        ("ﬁne-tuning", ["fine", "tune"]),  # ligature
        ("ＬＬＭ", ["llm"]),  # full-width
        ("equi\u00advariant", ["equivari"]),  # soft hyphen inside a word
        ("CIFAR-10, 3D", ["cifar", "10", "3d"]),
        ("", []),
        ("— … !?", []),
    ],
)
def test_terms(text: str, expected: list[str]) -> None:
    assert [t.term for t in tokens(text)] == expected


def test_offsets_point_into_the_original_non_ascii_string() -> None:
    text = "Was ist naïve Straße? nai\u0308ve café\u0301 ﬁne"
    spans = [(t.word, text[t.start : t.end]) for t in tokens(text)]
    assert spans == [
        ("was", "Was"),
        ("ist", "ist"),
        ("naive", "naïve"),
        ("strasse", "Straße"),
        ("naive", "nai\u0308ve"),
        ("cafe", "café\u0301"),  # the trailing combining mark stays with its letter
        ("fine", "ﬁne"),
    ]


def test_stem_and_stem_all_agree() -> None:
    sample = ["networks", "naive", "equivariance", "equivariant", "networks"]
    assert stem_all(sample) == [stem(w) for w in sample]
    assert stem("equivariance") == stem("equivariant") == "equivari"


@given(st.text())
def test_tokens_cover_their_words_in_order(text: str) -> None:
    found = tokens(text)
    last_start = 0
    for tok in found:
        assert 0 <= tok.start < tok.end <= len(text)
        assert tok.start >= last_start
        last_start = tok.start
        assert tok.term == stem(tok.word)
        # The original slice folds back to (at least) this word.
        assert tok.word in [w for w, _, _ in words(text[tok.start : tok.end])]


@given(st.text())
def test_folding_a_word_again_changes_nothing(text: str) -> None:
    # The profile canonical form prints folded words; re-reading them must not drift.
    for word, _, _ in words(text):
        assert words(word) == [(word, 0, len(word))]


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_fold_ascii_fast_path_equals_the_unicode_path(text: str) -> None:
    import unicodedata

    slow = unicodedata.normalize(
        "NFKC",
        "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)),
    ).casefold()
    assert fold(text) == slow
