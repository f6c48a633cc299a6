"""The matcher: what a profile matches, how matches rank, which spans they highlight;
the indexed matcher against the direct reference evaluator; the sample dumps."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import QueryError
from newsletter.matching.match import (
    _MATCH_FIELDS,
    ABSTRACT_REPEAT_WEIGHT,
    ABSTRACT_WEIGHT,
    PHRASE_WEIGHT_PER_WORD,
    PREFIX_WEIGHT,
    TITLE_WEIGHT,
    WORD_WEIGHT,
    Match,
    MatchPaper,
    PaperIndex,
    _merge,
    _merge_merged,
    match_many,
    match_profile,
    reference_match,
)
from newsletter.papers.parse_dump import parse_dump
from newsletter.subscribers.query import Term, compile_profile
from tests.subscribers.test_query import profile_texts

PAPERS = [
    MatchPaper(
        1,
        "Equivariant Graph Neural Networks for Molecules",
        "We study equivariance in graph networks. A survey of methods is not included.",
    ),
    MatchPaper(2, "A Survey of Diffusion Models", "Diffusion models are surveyed."),
    MatchPaper(
        3,
        "State Space Models for Long Sequences",
        "A state-space model beats transformers on long inputs.",
    ),
    MatchPaper(
        4,
        "Self-Supervised Learning of Naïve Representations",
        "Self supervised pretraining without labels.",
        ("Geoffrey Hinton", "Ada Lovelace"),
    ),
    MatchPaper(5, "Optimal Transport in Practice", "We use optimal transport for diffusion."),
    MatchPaper(6, "Transformer Circuits", "Attention heads in a transformer.", ("Chris Olah",)),
]
INDEX = PaperIndex.build(PAPERS)


def keys(profile: str, index: PaperIndex = INDEX) -> list[int]:
    """Matched paper keys, best first, after checking the reference agrees."""
    compiled = compile_profile(profile)
    found = [m.paper_key for m in match_profile(compiled, index)]
    expected = sorted(p.key for p in index.papers if reference_match(compiled, p))
    assert sorted(found) == expected
    return found


# --- One row per line of DESIGN.md's table ---------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        # commas = OR of clauses
        ('diffusion, "graph neural network", equivariance', {1, 2, 5}),
        # space = AND inside a clause
        ("equivariant graph", {1}),
        ("diffusion transport", {5}),
        # "phrase": the words adjacent, in order
        ('"state space model"', {3}),
        ('"space state model"', set()),
        ('"optimal transport"', {5}),
        ('"transport optimal"', set()),
        # -word / NOT word
        ("diffusion -survey", {5}),
        ("diffusion NOT survey", {5}),
        ("diffusion, -survey", {5}),
        # a OR b, ( ... )
        ("survey OR transformer", {1, 2, 3, 6}),
        ("(diffusion OR transformer) model", {2, 3}),
        # fields
        ("ti:transformer", {6}),
        ("transformer", {3, 6}),
        ('abs:"optimal transport"', {5}),
        ("au:hinton", {4}),
        # prefix
        ("equivari*", {1}),
        ("trans*", {3, 5, 6}),
        ("transf*", {3, 6}),
    ],
)
def test_design_table(profile: str, expected: set[int]) -> None:
    assert set(keys(profile)) == expected


# --- Normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        # stemming both ways
        ("networks", {1}),
        ("network", {1}),
        ("molecule", {1}),
        ("survey", {1, 2}),  # "surveyed" too
        # accents and case
        ("naive", {4}),
        ("naïve", {4}),
        ("NAÏVE", {4}),
        ("Nai\u0308ve", {4}),
        # hyphens
        ("self-supervised", {4}),
        ("self supervised", {4}),
        ('"self supervised"', {4}),
        ('"state space"', {3}),  # "state-space" in the abstract, "State Space" in the title
        # prefixes compare with the folded, unstemmed word
        ("surveyed*", {2}),
        ("equivariant*", {1}),  # not "equivariance"
        ("equivariance*", {1}),  # the abstract
        ("moleculesx*", set()),
    ],
)
def test_normalisation(profile: str, expected: set[int]) -> None:
    assert set(keys(profile)) == expected


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("ti:survey", {2}),
        ("abs:survey", {1, 2}),
        ("ti:equivari*", {1}),
        ("abs:equivariant*", set()),
        ("hinton", set()),  # authors only with au:
        ('au:"geoffrey hinton"', {4}),
        ('au:"hinton ada"', set()),  # a phrase never spans two authors
        ("au:olah OR au:lovelace", {4, 6}),
        ("au:(olah OR lovelace)", {4, 6}),
        ("ti:(graph molecules)", {1}),
        ("ti:(graph state)", set()),
    ],
)
def test_fields(profile: str, expected: set[int]) -> None:
    assert set(keys(profile)) == expected


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("(graph (neural OR diffusion)) OR (state -transformer)", {1}),
        ("(graph (neural OR diffusion)) OR (state -diffusion)", {1, 3}),
        ("models ((state -(long OR short)) OR survey)", {2}),
        ("x -(-a OR -b)", set()),
        ("transformer -(attention heads)", {3}),
        ("transformer -(attention lovelace)", {3, 6}),
    ],
)
def test_nested_groups(profile: str, expected: set[int]) -> None:
    assert set(keys(profile)) == expected


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("graph -survey", set()),  # "survey" in paper 1's abstract
        ("graph -ti:survey", {1}),  # but not in its title
        ("graph -abs:survey", set()),
        ("diffusion, transformer, -survey -attention", {3, 5}),
        ("diffusion, -models", {5}),  # the exclusion clause applies to every clause
        ("au:hinton -self", set()),
        ("au:hinton -au:lovelace", set()),
    ],
)
def test_exclusion_beats_inclusion(profile: str, expected: set[int]) -> None:
    assert set(keys(profile)) == expected


# --- Ranking ---------------------------------------------------------------------------


def ranked(profile: str, *papers: MatchPaper) -> list[Match]:
    return match_profile(compile_profile(profile), PaperIndex.build(papers))


def test_title_above_abstract() -> None:
    found = ranked("diffusion", MatchPaper(1, "Other", "diffusion"), MatchPaper(2, "Diffusion", ""))
    assert [m.paper_key for m in found] == [2, 1]
    assert found[0].score == TITLE_WEIGHT * WORD_WEIGHT
    assert found[1].score == ABSTRACT_WEIGHT * WORD_WEIGHT


def test_repeats_in_the_abstract_count_logarithmically() -> None:
    found = ranked("diffusion", MatchPaper(1, "x", "diffusion diffusion"))
    assert found[0].score == pytest.approx(
        ABSTRACT_WEIGHT * (1 + ABSTRACT_REPEAT_WEIGHT * math.log(2))
    )


def test_phrase_above_word() -> None:
    found = ranked(
        '"graph network", tree',
        MatchPaper(1, "x", "tree"),
        MatchPaper(2, "x", "graph network"),
    )
    assert [m.paper_key for m in found] == [2, 1]
    assert found[0].score == PHRASE_WEIGHT_PER_WORD * 2 * ABSTRACT_WEIGHT
    # and above the same words merely both present
    found = ranked(
        '"graph network", graph network',
        MatchPaper(1, "x", "network of a graph"),
        MatchPaper(2, "x", "graph network"),
    )
    assert [m.paper_key for m in found] == [2, 1]


def test_more_terms_above_fewer() -> None:
    found = ranked(
        "graph, tree, equivari*",
        MatchPaper(1, "x", "graph"),
        MatchPaper(2, "x", "graph tree"),
        MatchPaper(3, "x", "graph tree equivariant"),
    )
    assert [m.paper_key for m in found] == [3, 2, 1]
    assert found[0].score == pytest.approx(2 * WORD_WEIGHT + PREFIX_WEIGHT)


def test_ties_in_paper_key_order() -> None:
    papers = [MatchPaper(k, "x", "graph") for k in (7, 3, 9, 1)]
    assert [m.paper_key for m in ranked("graph", *papers)] == [1, 3, 7, 9]


# --- What a match says -----------------------------------------------------------------


def test_spans_and_matched_terms_as_written() -> None:
    (found,) = ranked(
        "Self-Supervised, naive, transformer",
        MatchPaper(
            4, "Self-Supervised Learning of Naïve Representations", "naive self-supervision"
        ),
    )
    assert found.matched == ("Self-Supervised", "naive")
    assert found.title_spans == ((0, 15), (28, 33))
    assert found.abstract_spans == ((0, 5), (6, 22))  # "self-supervision" stems alike


def test_spans_are_merged_and_sorted() -> None:
    (found,) = ranked('neural networks "graph neural"', MatchPaper(1, "Graph Neural Networks", ""))
    assert found.title_spans == ((0, 12), (13, 21))
    assert found.matched == ("neural", "networks", "graph neural")


def test_only_terms_that_made_the_paper_match_are_reported() -> None:
    (found,) = ranked(
        "graph, diffusion transformer, state -survey",
        MatchPaper(1, "Graph diffusion", "nothing else"),
    )
    # "diffusion" is present, but its clause needed "transformer" too.
    assert found.matched == ("graph",)
    assert found.title_spans == ((0, 5),)


def test_the_same_term_twice_counts_once() -> None:
    (found,) = ranked("Diffusion, diffusion models", MatchPaper(1, "Diffusion", "models"))
    assert found.matched == ("Diffusion", "models")
    assert found.score == TITLE_WEIGHT + ABSTRACT_WEIGHT  # not 2 × TITLE_WEIGHT + ...
    (found,) = ranked("Diffusion, diffusion models", MatchPaper(1, "Diffusion", "x"))
    assert found.matched == ("Diffusion",)


def test_spans_point_into_the_original_strings() -> None:
    title = "Ｆｕｌｌ-width and nai\u0308ve ﬁne Straße"
    (found,) = ranked("full, naive, fine, strasse", MatchPaper(1, title, ""))
    assert [title[s:e] for s, e in found.title_spans] == [
        "Ｆｕｌｌ",
        "nai\u0308ve",
        "ﬁne",
        "Straße",
    ]


# --- Batches ---------------------------------------------------------------------------


def test_match_many_returns_only_profiles_with_matches() -> None:
    profiles = {
        "a": compile_profile("diffusion"),
        "b": compile_profile("nothing-here"),
        "c": compile_profile("diffusion"),
    }
    found = match_many(profiles, INDEX)
    assert set(found) == {"a", "c"}
    assert found["a"] == found["c"] == match_profile(profiles["a"], INDEX)
    found["a"].clear()  # every subscriber gets a list of his own
    assert found["c"]


def test_the_index_gives_the_same_answers_every_time() -> None:
    index = PaperIndex.build(PAPERS)
    profile = compile_profile('diffusion, "graph neural", survey -transformer')
    first = match_profile(profile, index)
    first.clear()
    assert match_profile(profile, index) == match_profile(profile, PaperIndex.build(PAPERS))


def test_empty_batch_and_duplicate_keys() -> None:
    assert match_profile(compile_profile("graph"), PaperIndex.build([])) == []
    with pytest.raises(ValueError, match="unique"):
        PaperIndex.build([MatchPaper(1, "a", ""), MatchPaper(1, "b", "")])


# --- The indexed matcher agrees with the direct evaluator --------------------------------

_WORDS = st.sampled_from(
    ["graph", "Graphs", "GRAPH", "neural", "net", "networks", "naive", "Naïve", "self",
     "supervised", "equivariant", "equivariance", "diffusion", "cifar", "10", "x", "X"]
)  # fmt: skip
_SEPARATORS = st.sampled_from([" ", " ", " ", "-", ", ", ". ", "_", " (", ") "])


@st.composite
def texts(draw: st.DrawFn, max_words: int = 12) -> str:
    parts = draw(st.lists(st.tuples(_WORDS, _SEPARATORS), max_size=max_words))
    return "".join(word + sep for word, sep in parts)


@st.composite
def batches(draw: st.DrawFn) -> list[MatchPaper]:
    count = draw(st.integers(0, 8))
    return [
        MatchPaper(
            draw(st.integers(-5, 5)) * 100 + i,  # unique, in no particular order
            draw(texts(6)),
            draw(texts()),
            tuple(draw(st.lists(texts(3), max_size=3))),
        )
        for i in range(count)
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(profile_texts(), min_size=1, max_size=4), batches())
def test_indexed_matcher_equals_reference(texts_: list[str], papers: list[MatchPaper]) -> None:
    profiles = {}
    for i, text in enumerate(texts_):
        try:
            profiles[i] = compile_profile(text)
        except QueryError:
            continue
    index = PaperIndex.build(papers)
    many = match_many(profiles, index)
    for key, profile in profiles.items():
        found = match_profile(profile, index)
        expected = [p.key for p in papers if reference_match(profile, p)]
        assert sorted(m.paper_key for m in found) == sorted(expected)
        assert many.get(key, []) == found
        order = [(-m.score, m.paper_key) for m in found]
        assert order == sorted(order)
        by_key = {p.key: p for p in papers}
        for m in found:
            assert m.score > 0
            assert m.matched and set(m.matched) <= set(profile.terms)
            for spans, text in (
                (m.title_spans, by_key[m.paper_key].title),
                (m.abstract_spans, by_key[m.paper_key].abstract),
            ):
                flat = [x for span in spans for x in span]
                assert flat == sorted(flat)  # sorted and non-overlapping
                assert all(0 <= s < e <= len(text) for s, e in spans)
                assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


_PREFIXES = st.sampled_from(
    ["gra", "graph", "net", "networ", "equ", "equivarian", "sup", "cif", "xyz"]
)


@settings(max_examples=200, deadline=None)
@given(batches(), _PREFIXES)
def test_prefix_positions_are_the_tokens_starting_with_the_prefix(
    papers: list[MatchPaper], prefix: str
) -> None:
    # Found through the batch vocabulary and each paper's word positions; by
    # definition, every token of the field that starts with the prefix.
    index = PaperIndex.build(papers)
    term = compile_profile(f"{prefix}*").tree.clauses[0]
    assert isinstance(term, Term)
    for field in ("ti", "abs", "au"):
        for paper in range(len(papers)):
            stream = index._words[field][paper]
            expected = [p for p, (word, _, _) in enumerate(stream) if word.startswith(prefix)]
            assert index._positions(term, 0, field, paper) == expected


def test_make_match_builds_what_the_constructor_builds() -> None:
    # make_match sets Match's slots directly, bypassing the dataclass __init__.
    assert tuple(f.name for f in dataclasses.fields(Match)) == _MATCH_FIELDS
    index = PaperIndex.build(PAPERS)
    made = index.make_match(2, 1.23456789, ("a", "b"), ((0, 1),), ((2, 4), (5, 6)))
    rank = -round(1.234568 * 10**6) * len(PAPERS) + 2
    expected = Match(3, 1.234568, ("a", "b"), ((0, 1),), ((2, 4), (5, 6)), rank)
    assert [getattr(made, f) for f in _MATCH_FIELDS] == [
        getattr(expected, f) for f in _MATCH_FIELDS
    ]


_SPANS = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 8)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=6,
)


@given(st.lists(_SPANS, max_size=4))
def test_merging_spans_merged_already(parts: list[list[tuple[int, int]]]) -> None:
    merged = [m for m in (_merge(list(part)) for part in parts) if m]
    assert _merge_merged(merged) == _merge([span for part in parts for span in part])


# --- The sample dumps, checked by hand -----------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "newsletter" / "samples"


@pytest.fixture(scope="module")
def sample_index() -> PaperIndex:
    records = []
    for path in sorted(SAMPLES.glob("*.txt")):
        records += parse_dump(
            path.read_bytes(), file_time=datetime(2026, 7, 30, tzinfo=UTC)
        ).records
    assert len(records) == 115
    return PaperIndex.build([MatchPaper(i, r.title, r.abstract) for i, r in enumerate(records)])


def titles(profile: str, index: PaperIndex) -> list[str]:
    by_key = {p.key: p.title for p in index.papers}
    return [by_key[k] for k in keys(profile, index)]


# Each expected list was checked against the dump text with grep: every paper that
# mentions the thing is here, and nothing else.
SAMPLE_CASES = [
    (
        "equivari*",
        [
            "Enabling Efficient Equivariant Operations in the Fourier Basis via Gaunt Tensor"
            " Products",
            "Regularizing Towards Soft Equivariance Under Mixed Symmetries",
            "Lie Group Decompositions for Equivariant Neural Networks",
            "The Price of Freedom: Exploring Expressivity and Runtime Tradeoffs in Equivariant"
            " Tensor Products",
        ],
    ),
    (
        # The same paper is in both dumps. A third paper says "intrinsic dimensionality",
        # which Snowball stems to "dimension" while "dimension" itself becomes "dimens":
        # not a match.
        '"intrinsic dimension"',
        [
            "Measuring the Intrinsic Dimension of Objective Landscapes",
            "Measuring the Intrinsic Dimension of Objective Landscapes",
            "Diffusion Models Learn Low-Dimensional Distributions via Subspace Clustering",
        ],
    ),
    (
        # "neural operators" too; the title hit ranks first.
        '"neural operator"',
        [
            "Accelerating Data Generation for Neural Operators via Krylov Subspace Recycling",
            "Principled Approaches for Extending Neural Architectures to Function Spaces for"
            " Operator Learning",
            "MgNO: Efficient Parameterization of Linear Operators via Multigrid",
            "Solving High-Dimensional PDEs with Latent Spectral Models",
        ],
    ),
    (
        # "point clouds", "point-cloud"; "Dynamic Point Fields" mentions point clouds
        # but is excluded by its title.
        '"point cloud" -ti:dynamic',
        [
            "CoherentGS: Sparse Novel View Synthesis with Coherent 3D Gaussians",
            "Pushing Auto-regressive Models for 3D Shape Generation at Capacity and Scalability",
            "Implicit Neural Spatial Representations for Time-dependent PDEs",
        ],
    ),
    (
        "JEPA",
        [
            "How JEPA Avoids Noisy Features: The Implicit Bias of Deep Linear Self Distillation"
            " Networks"
        ],
    ),
    (
        "naive",
        [
            "Memorize, Factorize, or be Naïve: Learning Optimal Feature Interaction Methods"
            " for CTR Prediction"
        ],
    ),
    (
        "ti:(transformer OR attention)",
        [
            "Can Transformers Do Enumerative Geometry?",
            "Understanding Self-attention Mechanism via Dynamical System Perspective",
            "Autoregressive Transformer Neural Network for Simulating Open Quantum Systems via"
            " a Probabilistic Formulation",
        ],
    ),
]


@pytest.mark.parametrize(("profile", "expected"), SAMPLE_CASES)
def test_sample_dumps(sample_index: PaperIndex, profile: str, expected: list[str]) -> None:
    assert titles(profile, sample_index) == expected
