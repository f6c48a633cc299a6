"""The profile query language: parsing, checking, the canonical form (DESIGN.md,
"Subscriber profiles"). What a parsed profile *matches* is tested in
tests/matching/test_match.py; here, what it parses to and why it is refused."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.errors import QueryError
from newsletter.subscribers import query
from newsletter.subscribers.query import (
    MAX_NESTING,
    MAX_PROFILE_CHARS,
    And,
    CompiledProfile,
    FieldName,
    Not,
    Or,
    Profile,
    Term,
    canonical,
    compile_many,
    compile_profile,
    parse,
    parse_whole,
)


def w(*words: str, prefix: bool = False, field: FieldName | None = None) -> Term:
    return Term(tuple(words), prefix, field)


# --- One row per line of DESIGN.md's table, plus the precedence rules -------------------

DESIGN_ROWS = [
    # commas = OR of clauses
    (
        'diffusion, "graph neural network", equivariance',
        Profile((w("diffusion"), w("graph", "neural", "network"), w("equivariance"))),
        'diffusion, "graph neural network", equivariance',
    ),
    # space = AND inside a clause
    ("equivariant graph", Profile((And((w("equivariant"), w("graph"))),)), "equivariant graph"),
    # "phrase": adjacent words
    ('"state space model"', Profile((w("state", "space", "model"),)), '"state space model"'),
    # -word / NOT word: exclusion
    (
        "diffusion -survey",
        Profile((And((w("diffusion"), Not(w("survey")))),)),
        "diffusion -survey",
    ),
    (
        "diffusion NOT survey",
        Profile((And((w("diffusion"), Not(w("survey")))),)),
        "diffusion -survey",
    ),
    # a clause of exclusions alone applies to the whole profile
    (
        "diffusion, gnn, -survey",
        Profile((w("diffusion"), w("gnn")), (w("survey"),)),
        "diffusion, gnn, -survey",
    ),
    ("diffusion, -survey -review", Profile((w("diffusion"),), (w("survey"), w("review"))), None),
    # a OR b, ( ... ) grouping
    ("a OR b", Profile((Or((w("a"), w("b"))),)), "a OR b"),
    ("(a b) OR c", Profile((Or((And((w("a"), w("b"))), w("c"))),)), "(a b) OR c"),
    ("(a, b) c", Profile((And((Or((w("a"), w("b"))), w("c"))),)), "a OR b c"),
    # fields
    ("ti:transformer", Profile((w("transformer", field="ti"),)), "ti:transformer"),
    (
        'abs:"optimal transport"',
        Profile((w("optimal", "transport", field="abs"),)),
        'abs:"optimal transport"',
    ),
    ("au:hinton", Profile((w("hinton", field="au"),)), "au:hinton"),
    ("TI:Transformer", Profile((w("transformer", field="ti"),)), "ti:transformer"),
    (
        "ti:(graph OR mesh)",
        Profile((Or((w("graph", field="ti"), w("mesh", field="ti"))),)),
        "ti:graph OR ti:mesh",
    ),
    # prefix
    ("equivari*", Profile((w("equivari", prefix=True),)), "equivari*"),
    ('"graph neur"*', Profile((w("graph", "neur", prefix=True),)), '"graph neur"*'),
    ("self-sup*", Profile((w("self", "sup", prefix=True),)), '"self sup"*'),
]


@pytest.mark.parametrize(("text", "tree", "printed"), DESIGN_ROWS)
def test_design_table(text: str, tree: Profile, printed: str | None) -> None:
    assert parse(text) == tree
    if printed is not None:
        assert canonical(tree) == printed
    assert parse(canonical(tree)) == tree


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        # OR binds tighter than AND (as in Google and Scholar alerts)
        ("a b OR c", "a (b OR c)"),
        ("-a OR b c", "(-a OR b) c"),
        ("x -a OR b", "x (-a OR b)"),
        ("ti:a b", "(ti:a) b"),
        ("a AND b", "a b"),
        ("a AND b OR c", "a (b OR c)"),
        # normalisation: case, accents, inflection kept apart, hyphens as phrases
        ("Naïve", "naive"),
        ("self-supervised", '"self supervised"'),
        ('"Self-Supervised"', '"self supervised"'),
        ('"diffusion"', "diffusion"),
        ("“graph neural”", '"graph neural"'),  # typographic quotes
        ("NOT NOT a", "a"),
        ("((a))", "a"),
        ("a (b c)", "a b c"),
        ("a OR (b OR c)", "a OR b OR c"),
        ("  a ,b  ", "a, b"),
        # colons that are not fields
        ("Re: attention", "re attention"),
        ("arXiv:2401.01234", '"arxiv 2401 01234"'),
        ('"re: attention"', '"re attention"'),
        ("foo:", "foo"),
    ],
)
def test_equivalent_spellings(text: str, same_as: str) -> None:
    assert parse(text) == parse(same_as)


def test_words_keep_their_inflection_in_the_tree() -> None:
    # The tree keeps the user's folded word; stemming happens in Term.stems.
    assert parse("networks") != parse("network")
    assert w("networks").stems == w("network").stems == ("network",)
    assert w("equivari", prefix=True).stems == ("equivari",)  # a prefix is not stemmed


# --- Errors: every problem, with its position ------------------------------------------

ERRORS = [
    ("", "the profile is empty", 0),
    ("   ", "the profile is empty", 0),
    ('"graph neural', "unclosed quote", 0),
    ('diffusion, "graph', "unclosed quote", 11),
    ("(a b", "unclosed '('", 0),
    ("a (b (c)", "unclosed '('", 2),
    ("a b)", "unmatched ')'", 3),
    ("a, b)", "unmatched ')'", 4),
    ("a,,b", "empty clause before ','", 2),
    (", a", "empty clause before ','", 0),
    ("a,", "empty clause after ','", 1),
    ("(a,)", "empty clause after ','", 2),
    ("a ()", "empty group '()'", 2),
    ('""', "empty phrase", 0),
    ('a "!?"', "empty phrase", 2),
    ("foo:bar", "unknown field 'foo'", 0),
    ('diffusion foo:"x"', "unknown field 'foo'", 10),
    ("title:x", "unknown field 'title'", 0),
    ("ti:", "nothing after 'ti:'", 0),
    ("a ti:, b", "nothing after 'ti:'", 2),
    ("ti:(abs:x)", "field 'abs:' inside 'ti:'", 4),
    ("NOT", "lone NOT", 0),
    ("diffusion NOT", "lone NOT", 10),
    ("a NOT, b", "lone NOT", 2),
    ("diffusion -", "lone NOT", 10),
    ("a - b", "lone NOT", 2),
    ("(a -)", "lone NOT", 3),
    ("a OR", "'OR' needs a term on both sides", 2),
    ("OR a", "'OR' needs a term on both sides", 0),
    ("a OR OR b", "'OR' needs a term on both sides", 2),
    ("a AND", "'AND' needs a term on both sides", 2),
    ("equi*ant", "'*' can only end a word", 4),
    ("ab*", "prefix 'ab*' is too short", 0),
    ('"graph n"*', "prefix", 0),
    ("&&", "nothing to match in '&&'", 0),
    ("a OR -b", "this clause matches every paper that lacks", 0),
    ("x, (-a, b)", "this clause matches every paper that lacks", 3),
    ("-survey", "the profile only excludes", 0),
    ("NOT survey", "the profile only excludes", 0),
    ("-a, -b", "the profile only excludes", 0),
    ("network -networks", "'-networks' excludes every paper that 'network' matches", 8),
    ('"graph neural network" -neural', "'-neural' excludes every paper", 23),
    ("ti:network -network", "'-network' excludes every paper", 11),
    ("diffusion, -diffusion", "'-diffusion' excludes every paper", 11),
    ("(" * (MAX_NESTING + 5) + "a" + ")" * (MAX_NESTING + 5), "nested more than", MAX_NESTING),
    ("a" * (MAX_PROFILE_CHARS + 1), "longer than", 0),
]


@pytest.mark.parametrize(("text", "problem", "position"), ERRORS)
def test_errors_name_the_problem_and_its_position(text: str, problem: str, position: int) -> None:
    with pytest.raises(QueryError) as caught:
        parse(text)
    assert problem in caught.value.problem
    assert caught.value.position == position
    assert f"(at position {position})" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "abs:network -ti:network",  # a narrower exclusion leaves papers to match
        "network -ti:network",
        "ti:network -abs:network",
        'neural -"graph neural"',
        "equivari* -equivariant",  # the prefix also matches other words
    ],
)
def test_exclusions_that_leave_something_to_match_are_fine(text: str) -> None:
    parse(text)


# --- The canonical form ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'Diffusion, "Graph Neural Networks" ti:GNN*, -survey',
        "(a OR b) (c OR d) -(e f)",
        "x (a b OR c d) -ti:(e OR f)",
        "x -(-a OR -b)",
        'au:"Geoffrey Hinton" OR au:lecun, abs:(optimal transport*)',
        "naïve self-supervised CIFAR-10",
    ],
)
def test_canonical_round_trips(text: str) -> None:
    tree = parse(text)
    printed = canonical(tree)
    assert parse(printed) == tree
    assert canonical(parse(printed)) == printed


# Random profiles: mostly well-formed pieces, so that many of them parse.
_PIECES = st.sampled_from(
    [
        "graph",
        "Graphs",
        "neural",
        "naïve",
        "self-supervised",
        "equivari*",
        "diffusion",
        "CIFAR-10",
        '"graph neural"',
        '"neural net"*',
        "x",
    ]
)


@st.composite
def profile_texts(draw: st.DrawFn) -> str:
    """A syntactically plausible profile: terms, fields, NOT, OR, groups, commas."""

    def expr(level: int) -> str:
        kind = draw(st.integers(0, 6 if level < 3 else 0))
        if kind <= 1:
            return draw(_PIECES)
        if kind == 2:
            return draw(st.sampled_from(["ti:", "abs:", "au:"])) + expr(level + 1)
        if kind == 3:
            return draw(st.sampled_from(["-", "NOT "])) + expr(level + 1)
        if kind == 4:
            return f"{expr(level + 1)} OR {expr(level + 1)}"
        if kind == 5:
            return f"({expr(level + 1)})"
        return f"{expr(level + 1)} {expr(level + 1)}"

    return ", ".join(expr(0) for _ in range(draw(st.integers(1, 3))))


_NOISE = st.lists(
    st.sampled_from(
        [
            "a",
            "graph",
            "Naïve",
            '"',
            "(",
            ")",
            ",",
            "-",
            "NOT",
            "OR",
            "AND",
            "ti:",
            "au:",
            "foo:",
            "*",
            "equi*",
            " ",
            "  ",
            ":",
            "“",
            "”",
            "self-sup",
            "\u0301",
            "5:",
        ]
    ),
    max_size=14,
).map("".join)


def _outcome(fn: Callable[[str], Profile], text: str) -> Profile | tuple[str, int]:
    try:
        return fn(text)
    except QueryError as exc:
        return (exc.problem, exc.position)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=60), _NOISE, profile_texts()))
@example("a, (b")
@example('a "b, c" d')
def test_parser_only_ever_raises_query_error(text: str) -> None:
    # Whatever the text: a tree or a QueryError, never anything else; the clause
    # cache path agrees with parsing the whole text, errors and positions included.
    result = _outcome(parse, text)
    assert result == _outcome(parse_whole, text)
    if isinstance(result, tuple):
        assert 0 <= result[1] <= len(text)
        return
    assert isinstance(result, Profile)
    printed = canonical(result)
    assert parse(printed) == result
    assert canonical(parse(printed)) == printed


# The fast clause parsers (``_parse_plain``, ``_parse_simple``) against the lexer and
# parser: the same tree, written spellings included (``repr`` shows them), the same
# emptiness, or both refusing. A fast path may also decline (None) and leave the
# clause to the parser.
_CLAUSE_PIECES = st.sampled_from(
    [
        "graph",
        "Graphs",
        "networks",
        "network",
        "naïve",
        "self-supervised",
        "equivari*",
        "Equi*",
        "AND*",
        "x*",
        "or",
        "not",
        "x",
        "CIFAR-10",
        '"graph neural"',
        '"Graph  Networks"',
        '"neural net"*',
        '""',
        '"x"*',
        "arXiv:2401.01",
        "Re:",
    ]
)


@st.composite
def clause_texts(draw: st.DrawFn) -> str:
    """One clause (no comma) of the shapes the fast paths take, and their near misses."""

    def expr(level: int) -> str:
        kind = draw(st.integers(0, 7 if level < 3 else 0))
        if kind <= 1:
            return draw(_CLAUSE_PIECES)
        if kind == 2:
            return draw(st.sampled_from(["ti:", "abs:", "au:", "Ti:", "ABS:", "ti: ", "foo:"])) + (
                expr(level + 1)
            )
        if kind == 3:
            return draw(st.sampled_from(["-", "NOT ", "- ", "--"])) + expr(level + 1)
        if kind == 4:
            return f"{expr(level + 1)} OR {expr(level + 1)}"
        if kind == 5:
            return draw(st.sampled_from(["({})", "( {} )", "({}", "{})"])).format(expr(level + 1))
        if kind == 6:
            return f"{expr(level + 1)} AND {expr(level + 1)}"
        return f"{expr(level + 1)}{draw(st.sampled_from([' ', '  ', '', chr(9)]))}{expr(level + 1)}"

    return expr(0).strip()


def _clause_outcome(fn: Callable[[str], object], clause: str) -> object:
    """repr of what ``fn`` returns; "refused" for a QueryError; None when it declines
    (returns None, or raises ``_Unsplittable``: the caller parses the whole profile)."""
    try:
        found = fn(clause)
    except QueryError:
        return "refused"
    except query._Unsplittable:
        return None
    return found if found is None else repr(found)


@settings(max_examples=500)
@given(st.one_of(clause_texts(), _NOISE.map(lambda t: t.replace(",", " ").strip())))
@example('"graph neural" NOT survey')
@example("(gnn OR Graph) ti:molecul* -abs:x")
@example("a OR NOT b AND -c")
@example("network -networks")
@example("(x OR -y)")
@example("-NOT a")
@example("ti:-a b")
@example("ab\u017f:x")  # long s: "ſ" is not a field letter, though it casefolds to "s"
def test_fast_clause_parsers_agree_with_the_parser(clause: str) -> None:
    if not clause:
        return
    expected = _clause_outcome(query._parse_clause_full, clause)
    fast_paths: list[Callable[[str], object]] = [query._parse_simple, query._parse_clause]
    if query._is_plain(clause):
        fast_paths.append(query._parse_plain)
    for fast in fast_paths:
        found = _clause_outcome(fast, clause)
        if expected is None:  # not a clause on its own: no tree
            assert found in (None, "refused"), fast
        else:
            assert found in (None, expected), fast


def test_node_builders_make_what_the_constructors_make() -> None:
    # The fast paths set the slots of these frozen dataclasses directly.
    a, b = w("a"), w("b", field="ti")
    pairs = [
        (query._not(a), Not(a)),
        (query._and((a, b)), And((a, b))),
        (query._or((a, b)), Or((a, b))),
        (query._profile((a,)), Profile((a,))),
        (query._profile((a,), (b,)), Profile((a,), (b,))),
    ]
    for built, constructed in pairs:
        assert type(built) is type(constructed)
        assert built == constructed
        assert hash(built) == hash(constructed)
        assert repr(built) == repr(constructed)


@pytest.mark.parametrize(
    "clause",
    [
        "diffusion",
        '"graph neural networks"',
        "ti:Graph",
        'abs:"graph neural"*',
        "equivari*",
        "-ti:survey",
        "(gnn OR gcn) molecules",
        '(gnn OR "graph net"*) ti:molecul* NOT survey',
        "a OR NOT b",
        "a AND b",
        "(a) b",
    ],
)
def test_common_clauses_take_the_fast_path(clause: str) -> None:
    found = query._parse_simple(clause)
    assert found is not None
    assert repr(found) == repr(query._parse_clause_full(clause))


@settings(max_examples=300)
@given(st.one_of(_NOISE, profile_texts()))
@example("Graph, -Survey, graph -survey")
def test_the_clause_cache_keeps_the_spelling(text: str) -> None:
    # Terms compare without ``written``; the repr shows it.
    result = _outcome(parse, text)
    assert repr(result) == repr(_outcome(parse_whole, text))


# --- Compiled profiles -----------------------------------------------------------------


def test_compiled_profile_is_hashable_cached_and_describes_itself() -> None:
    compiled = compile_profile('Diffusion, "Graph Neural Networks", -Survey')
    assert compiled is compile_profile('Diffusion, "Graph Neural Networks", -Survey')
    assert compiled == CompiledProfile(compiled.source, parse(compiled.source))
    assert {compiled: 1}[compile_profile(compiled.source)] == 1
    assert compiled.canonical == 'diffusion, "graph neural networks", -survey'
    assert compiled.terms == ("Diffusion", "Graph Neural Networks")
    assert compiled.excluded_terms == ("Survey",)


def test_compile_profile_raises_like_parse() -> None:
    with pytest.raises(QueryError, match="unclosed quote"):
        compile_profile('"graph')


def test_compile_many_reports_each_text_once() -> None:
    found = compile_many(["diffusion", '"graph', "diffusion"])
    assert list(found) == ["diffusion", '"graph']
    assert found["diffusion"] is compile_profile("diffusion")
    assert isinstance(found['"graph'], QueryError)
    assert gc.isenabled()  # paused only while compiling


def test_clause_cache_overflow_keeps_profiles_right(monkeypatch: pytest.MonkeyPatch) -> None:
    # The caches are cleared when full; a profile must never see half of a clear.
    monkeypatch.setattr(query, "_CLAUSE_CACHE_MAX", 3)
    for i in range(20):
        assert parse(f"w{i}, x{i}, -survey") == Profile((w(f"w{i}"), w(f"x{i}")), (w("survey"),))
