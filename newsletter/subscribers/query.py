"""The profile query language: parse a subscriber's profile, check it, compile it (pure).

A profile is one line a Google Scholar alert user already knows how to write
(DESIGN.md, "Subscriber profiles"). The grammar, loosest binding first::

    profile := clause ("," clause)*             commas: OR of clauses
    clause  := conj
    conj    := disj (["AND"] disj)*             juxtaposition: AND
    disj    := unary ("OR" unary)*              OR binds tighter than AND
    unary   := ("-" | "NOT") unary              exclusion
             | FIELD ":" unary                  ti: / abs: / au: scope what follows
             | primary
    primary := WORD | WORD* | "PHRASE" | "PHRASE"* | "(" profile ")"

Precedence follows Google (and so Scholar alerts): ``a b OR c`` means
``a (b OR c)``; ``-a OR b`` means ``(-a) OR b``; ``ti:a b`` means ``(ti:a) b``.
Inside parentheses a comma is the same as OR. ``OR``, ``AND`` and ``NOT`` are
operators only in capitals; ``or``/``not`` are ordinary words.

Words and phrases go through the same tokeniser as paper text (``newsletter.text``):
an unquoted word that splits into several words (``self-supervised``, ``CIFAR-10``)
is the phrase of those words, so ``self-supervised`` ≡ ``"self supervised"``.
Punctuation inside a word or phrase is ignored (``Re:`` is the word ``re``).

Semantics decided here (documented because they are choices):

* Unfielded terms look in the title and the abstract, never in the authors: author
  names collide with topic words (Bell, Church, Wang), and dump papers have no
  authors, so ``au:`` is always explicit. An unfielded exclusion likewise excludes a
  paper that has the term in its title *or* abstract.
* A top-level clause made only of exclusions (``diffusion, gnn, -survey``) applies to
  the whole profile: (diffusion OR gnn) AND NOT survey. Read literally it would match
  almost every paper, which no one means; this is what people mean.
* ``name:`` is a field only where ``name`` is letters; ``ti``/``abs``/``au`` (any case)
  always are, even with a space after the colon. Any other ``name:`` is an error
  ("unknown field") when something other than a space or a digit follows, and an
  ordinary word otherwise, so ``Re: attention`` and ``arXiv:2401.01234`` still parse.
  A colon inside a quoted phrase is punctuation.
* ``-`` is NOT only at the start of a word and only when something follows it
  directly: ``a - b`` is a lone NOT, ``a-b`` the phrase "a b". ``NOT NOT a`` is ``a``.
* ``*`` may only end a word (or a phrase: ``"graph neur"*``), and a prefix needs
  ``MIN_PREFIX_CHARS`` letters. Prefixes compare with the folded, *unstemmed* word.

Every problem raises ``QueryError(problem, position)`` with the 0-based character
offset of the culprit: unbalanced quote or parenthesis, empty clause / group /
phrase, unknown or conflicting field, lone NOT, dangling OR/AND, a stray ``*``, a
prefix too short, a word with nothing to match, a clause that is true for papers
merely lacking a term, a profile that only excludes, and a clause whose own exclusion
rules out everything it includes (``network -networks``).

The tree compares by the folded words, not the spelling, so ``canonical()`` can print
a normal form and ``parse(canonical(parse(t))) == parse(t)``. Each term also keeps the
spelling the user wrote (``Term.written``, not compared) so a match can say "matched
*Graph Neural Networks*" in the user's own words.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Final, Literal, TypeAlias

from newsletter.errors import QueryError
from newsletter.gc_tuning import paused_gc
from newsletter.text import stem, words

FieldName: TypeAlias = Literal["ti", "abs", "au"]

#: The fields a user may name, and what each restricts a term to.
FIELDS: Final[tuple[FieldName, ...]] = ("ti", "abs", "au")

#: Shorter prefixes match a large share of all English words ("co*", "in*"): almost
#: certainly a typo, and a needless cost for every digest.
MIN_PREFIX_CHARS: Final = 3

#: A profile is one line in a web form; this bound keeps a pasted document from
#: becoming a huge tree that every digest run has to evaluate.
MAX_PROFILE_CHARS: Final = 4000

#: Nesting (parentheses, chained NOT / fields) beyond this is never written by a
#: person; the bound keeps the recursive parser and printers far from Python's
#: recursion limit on hostile input.
MAX_NESTING: Final = 64

#: Compiled profiles are cached by their text: a digest run compiles every
#: subscriber's profile, and most are unchanged since the last run. Sized for a
#: large self-hosted list; each entry is a few KiB at most.
COMPILE_CACHE_SIZE: Final = 16_384

#: Terms are cached by their spelling and field while parsing, so the same word in
#: thousands of profiles is folded and stemmed once. Cleared when it reaches this
#: size, since profile text is user input.
_TERM_CACHE_MAX: Final = 100_000


# --- The tree ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word, a prefix or a phrase, optionally restricted to one field.

    ``words`` are folded, unstemmed words; more than one means the words must be
    adjacent in that order. ``prefix`` makes the last word a prefix of a folded
    word. ``field`` None means title or abstract. ``written`` is the user's
    spelling (not compared); ``stems`` (the stemmed words, the prefix last word
    kept as is) and ``key`` (a string naming exactly what the term matches, for
    memoising across profiles) are derived.
    """

    words: tuple[str, ...]
    prefix: bool = False
    field: FieldName | None = None
    written: str = dataclasses.field(default="", compare=False)
    stems: tuple[str, ...] = dataclasses.field(init=False, compare=False, repr=False)
    key: str = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        stems = tuple(stem(w) for w in self.words)
        if self.prefix:
            stems = (*stems[:-1], self.words[-1])
        object.__setattr__(self, "stems", stems)
        key = f"{self.field or ''}:{' '.join(stems)}{'*' if self.prefix else ''}"
        object.__setattr__(self, "key", key)


@dataclass(frozen=True, slots=True)
class Not:
    """Papers that do not satisfy ``child``."""

    child: Expr


@dataclass(frozen=True, slots=True)
class And:
    """Papers that satisfy every child (at least two, none of them an And)."""

    children: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Papers that satisfy any child (at least two, none of them an Or)."""

    children: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    """The root: papers satisfying any of ``clauses`` and none of ``excluded``.

    ``excluded`` holds the top-level exclusion clauses, hoisted (``-survey`` as a
    clause contributes ``survey`` here). ``clauses`` is never empty, and no clause
    is true of a paper that contains none of the profile's terms.
    """

    clauses: tuple[Expr, ...]
    excluded: tuple[Expr, ...] = ()


Expr: TypeAlias = Term | Not | And | Or
Node: TypeAlias = Expr | Profile

# A frozen dataclass's __init__ sets each field with object.__setattr__, which costs
# more than the rest of making a node. The hot paths (the clause cache and the fast
# clause parsers, run for every profile and clause of a bulk compile) set the slots
# through their descriptors instead: the same objects, at half the cost.
_new_object = object.__new__
_SET_CHILD: Final = vars(Not)["child"].__set__
_SET_AND: Final = vars(And)["children"].__set__
_SET_OR: Final = vars(Or)["children"].__set__
_SET_CLAUSES: Final = vars(Profile)["clauses"].__set__
_SET_EXCLUDED: Final = vars(Profile)["excluded"].__set__


def _not(child: Expr) -> Not:
    node = _new_object(Not)
    _SET_CHILD(node, child)
    return node


def _and(children: tuple[Expr, ...]) -> And:
    node = _new_object(And)
    _SET_AND(node, children)
    return node


def _or(children: tuple[Expr, ...]) -> Or:
    node = _new_object(Or)
    _SET_OR(node, children)
    return node


def _profile(clauses: tuple[Expr, ...], excluded: tuple[Expr, ...] = ()) -> Profile:
    node = _new_object(Profile)
    _SET_CLAUSES(node, clauses)
    _SET_EXCLUDED(node, excluded)
    return node


def matches_empty(node: Node) -> bool:
    """Whether ``node`` is true for a paper containing none of its terms.

    Such a subtree selects papers by what they lack; as a whole clause it would
    match nearly every paper.
    """
    if isinstance(node, Term):
        return False
    if isinstance(node, Not):
        return not matches_empty(node.child)
    if isinstance(node, And):
        return all(map(matches_empty, node.children))
    if isinstance(node, Or):
        return any(map(matches_empty, node.children))
    return any(map(matches_empty, node.clauses))


def iter_terms(node: Node, *, positive: bool = True) -> Iterator[tuple[Term, bool]]:
    """Every term under ``node`` with whether it is included (True) or excluded."""
    if isinstance(node, Term):
        yield node, positive
    elif isinstance(node, Not):
        yield from iter_terms(node.child, positive=not positive)
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from iter_terms(child, positive=positive)
    else:
        for clause in node.clauses:
            yield from iter_terms(clause, positive=positive)
        for excluded in node.excluded:
            yield from iter_terms(excluded, positive=not positive)


# --- Printing ------------------------------------------------------------------------


def _term_text(term: Term) -> str:
    body = " ".join(term.words)
    if len(term.words) > 1:
        body = f'"{body}"'
    if term.prefix:
        body += "*"
    return f"{term.field}:{body}" if term.field else body


def _expr_text(node: Expr, parent: str) -> str:
    """Print ``node`` as a child of ``parent`` ("and", "or", "not", "top")."""
    if isinstance(node, Term):
        return _term_text(node)
    if isinstance(node, Not):
        return "-" + _expr_text(node.child, "not")
    if isinstance(node, And):
        text = " ".join(_expr_text(c, "and") for c in node.children)
        # AND is the loosest operator inside a clause: only OR and NOT need it grouped.
        return f"({text})" if parent in ("or", "not") else text
    text = " OR ".join(_expr_text(c, "or") for c in node.children)
    return f"({text})" if parent == "not" else text


def canonical(node: Node) -> str:
    """The normal form of ``node``: folded words, ``-`` for NOT, ``OR``, minimal
    parentheses, exclusion clauses last. Parsing it gives back an equal tree.
    """
    if isinstance(node, Profile):
        parts = [_expr_text(c, "top") for c in node.clauses]
        parts += ["-" + _expr_text(x, "not") for x in node.excluded]
        return ", ".join(parts)
    return _expr_text(node, "top")


# --- Lexing --------------------------------------------------------------------------

# One match per lexeme, leading whitespace included (halves the matches per profile).
# Every non-space character starts some alternative, so nothing is skipped.
_LEX = re.compile(
    r"""
    \s*(?:
      (?P<quote>"(?P<body>[^"]*)(?P<close>"\*?)?)
    | (?P<lp>\() | (?P<rp>\)) | (?P<comma>,)
    | (?P<field>[A-Za-z]+):
    | (?P<not>-)(?=[^\s,)])
    | (?P<lone>-)
    | (?P<word>[^\s"(),]+)
    )
    """,
    re.VERBOSE,
)
_WORD_ONLY = re.compile(r'[^\s"(),]+')
_KEYWORDS: Final = {"OR": "or", "AND": "and", "NOT": "not"}
# Typographic quotes, as a phone or word processor types them, mean a phrase too;
# each maps to one character, so positions stay those of the user's text.
_SMART_QUOTES: Final = ("\u201c", "\u201d", "\u201e")


def _straight_quotes(text: str) -> str:
    if text.isascii():  # O(1): nothing to replace
        return text
    for quote in _SMART_QUOTES:
        if quote in text:
            text = text.replace(quote, '"')
    return text


# A lexeme: (kind, position, text, prefix). kind is one of word, phrase, field, or,
# and, not, lp, rp, comma, end; text is the raw word / phrase body / field name.
_Lexeme: TypeAlias = tuple[str, int, str, bool]


def _ends_operand(text: str, at: int) -> bool:
    """Whether nothing an operator could apply to starts at ``text[at]``.

    A comma and ")" count like the end of the text, so that the lexing of a clause
    does not depend on whether it is lexed alone or inside its profile.
    """
    return at >= len(text) or text[at].isspace() or text[at] in ",)"


def _lex(text: str) -> list[_Lexeme]:
    """The lexemes of ``text``, ending with an ``end`` sentinel."""
    out: list[_Lexeme] = []
    append = out.append
    pos, size = 0, len(text)
    match = _LEX.match
    while pos < size:
        m = match(text, pos)
        if m is None:  # only whitespace is left
            break
        kind = m.lastgroup or ""
        pos = m.start(kind)
        if kind == "word":
            word = m.group(kind)
            if word in _KEYWORDS:
                append((_KEYWORDS[word], pos, word, False))
            elif "*" in word:
                star = word.find("*")
                if star != len(word) - 1:
                    raise QueryError("'*' can only end a word (prefix search)", pos + star)
                append(("word", pos, word[:-1], True))
            else:
                append(("word", pos, word, False))
        elif kind == "quote":
            if m.group("close") is None:
                raise QueryError("unclosed quote", pos)
            append(("phrase", pos, m.group("body"), m.group("close") == '"*'))
        elif kind == "field":
            name = m.group(kind)
            if name.lower() in FIELDS:
                append(("field", pos, name.lower(), False))
            elif not _ends_operand(text, m.end()) and not text[m.end()].isdigit():
                raise QueryError(f"unknown field '{name}' (fields are ti:, abs:, au:)", pos)
            else:  # "Re: x", "arXiv:2401.01234": a word with a colon in it
                w = _WORD_ONLY.match(text, pos)
                assert w is not None
                append(("word", pos, w.group(), False))
                pos = w.end()
                continue
        elif kind == "lone":
            # "-" negates only what touches it: "a - b" is a mistake, not "a -b".
            raise QueryError("lone NOT: '-' must touch what it excludes (-word)", pos)
        else:  # not, lp, rp, comma
            append((kind, pos, m.group(kind), False))
        pos = m.end()
    append(("end", size, "", False))
    return out


# --- Parsing -------------------------------------------------------------------------

_STARTS_UNARY: Final = frozenset({"word", "phrase", "not", "field", "lp"})
_ENDS_CLAUSE: Final = frozenset({"comma", "rp", "end"})
_term_cache: dict[tuple[str, str, bool, FieldName | None], Term] = {}


def _make_term(kind: str, raw: str, prefix: bool, field: FieldName | None, pos: int) -> Term:
    """The Term for one word or phrase lexeme, cached by spelling and field."""
    cache_key = (kind, raw, prefix, field)
    found = _term_cache.get(cache_key)
    if found is not None:
        return found
    folded = tuple(w for w, _, _ in words(raw))
    shown = f"{raw}*" if prefix else raw
    if not folded:
        if kind == "phrase":
            raise QueryError("empty phrase", pos)
        raise QueryError(f"nothing to match in '{shown}' (no letters or digits)", pos)
    if prefix and len(folded[-1]) < MIN_PREFIX_CHARS:
        raise QueryError(
            f"prefix '{shown}' is too short (at least {MIN_PREFIX_CHARS} letters before '*')",
            pos,
        )
    term = Term(folded, prefix, field, " ".join(shown.split()))
    if len(_term_cache) >= _TERM_CACHE_MAX:
        _term_cache.clear()
    _term_cache[cache_key] = term
    return term


_SCOPE: Final[dict[FieldName | None, frozenset[str]]] = {
    None: frozenset({"ti", "abs"}),
    "ti": frozenset({"ti"}),
    "abs": frozenset({"abs"}),
    "au": frozenset({"au"}),
}


def _covers(excluded: Term, required: Term) -> bool:
    """Whether every paper matching ``required`` necessarily matches ``excluded``.

    Only the certain cases: the excluded word or phrase (no prefix) appears, stem
    for stem, inside the required term, in a field scope at least as wide.
    """
    need, have = excluded.stems, required.stems
    if excluded.prefix or need[0] not in have:  # the usual answer, found cheaply
        return False
    if not _SCOPE[required.field] <= _SCOPE[excluded.field]:
        return False
    if required.prefix:
        have = have[:-1]
    return any(have[i : i + len(need)] == need for i in range(len(have) - len(need) + 1))


def _check_contradiction(
    required: Sequence[tuple[Expr, int]], excluded: Sequence[tuple[Expr, int]]
) -> None:
    """Raise if an excluded term rules out a required term of the same conjunction."""
    for ex, ex_pos in excluded:
        if not isinstance(ex, Term):
            continue
        for req, _ in required:
            if isinstance(req, Term) and _covers(ex, req):
                raise QueryError(
                    f"'-{ex.written}' excludes every paper that '{req.written}' matches, "
                    "so this can never match",
                    ex_pos,
                )


def _flatten(kind: type[And] | type[Or], children: list[Expr]) -> Expr:
    if len(children) == 1:
        return children[0]
    flat: list[Expr] = []
    for child in children:
        if isinstance(child, kind):
            flat.extend(child.children)
        else:
            flat.append(child)
    return _and(tuple(flat)) if kind is And else _or(tuple(flat))


class _Parser:
    """Recursive descent over the lexemes; each method consumes one grammar rule."""

    def __init__(self, text: str, lexemes: list[_Lexeme]) -> None:
        self.text = text
        self.lex = lexemes  # ends with the "end" sentinel, so peeking never overruns
        self.i = 0
        self.nesting = 0
        self.not_positions: dict[int, int] = {}

    def starts_unary(self) -> bool:
        return self.lex[self.i][0] in _STARTS_UNARY

    def deeper(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise QueryError(f"nested more than {MAX_NESTING} levels deep", pos)

    def parse_profile(self) -> Profile:
        clauses = self.parse_list(None, None)
        leftover = self.lex[self.i]
        if leftover[0] != "end":  # only a ")" can stop parse_list early
            raise QueryError("unmatched ')'", leftover[1])
        return _assemble([(node, matches_empty(node), pos) for node, pos in clauses])

    def parse_list(self, field: FieldName | None, open_pos: int | None) -> list[tuple[Expr, int]]:
        """Comma-separated clauses up to ")" or the end."""
        clauses: list[tuple[Expr, int]] = []
        comma_pos = -1
        while True:
            kind, pos = self.lex[self.i][:2]
            if kind in _ENDS_CLAUSE:
                if kind == "comma":
                    raise QueryError("empty clause before ','", pos)
                if clauses:
                    raise QueryError("empty clause after ','", comma_pos)
                if open_pos is not None:
                    raise QueryError("empty group '()'", open_pos)
                raise QueryError("the profile is empty", 0)
            clauses.append((self.parse_conj(field), pos))
            kind, comma_pos = self.lex[self.i][:2]
            if kind != "comma":
                return clauses
            self.i += 1

    def parse_conj(self, field: FieldName | None) -> Expr:
        children: list[tuple[Expr, int]] = []
        while True:
            kind, pos, raw, _ = self.lex[self.i]
            if kind in _ENDS_CLAUSE:
                break
            if kind == "or" or kind == "and":
                self.i += 1
                if kind == "or" or not children or not self.starts_unary():
                    raise QueryError(f"'{raw}' needs a term on both sides", pos)
                continue
            children.append((self.parse_disj(field), pos))
        if len(children) == 1:
            return children[0][0]
        node = _flatten(And, [c for c, _ in children])
        assert isinstance(node, And)
        # Checked after flattening, so "-a (a b)" is caught like "-a a b".
        excluded = [
            (c.child, self.not_positions.get(id(c), children[0][1]))
            for c in node.children
            if isinstance(c, Not)
        ]
        if excluded:
            required = [(c, 0) for c in node.children if not isinstance(c, Not)]
            _check_contradiction(required, excluded)
        return node

    def parse_disj(self, field: FieldName | None) -> Expr:
        first = self.parse_unary(field)
        if self.lex[self.i][0] != "or":
            return first
        children = [first]
        while (nxt := self.lex[self.i])[0] == "or":
            self.i += 1
            if not self.starts_unary():
                raise QueryError("'OR' needs a term on both sides", nxt[1])
            children.append(self.parse_unary(field))
        return _flatten(Or, children)

    def parse_unary(self, field: FieldName | None) -> Expr:
        kind, pos, raw, prefix = self.lex[self.i]
        self.i += 1
        if kind == "word" or kind == "phrase":
            return _make_term(kind, raw, prefix, field, pos)
        if kind == "not":
            if not self.starts_unary():
                raise QueryError("lone NOT: nothing to exclude after it", pos)
            self.deeper(pos)
            child = self.parse_unary(field)
            self.nesting -= 1
            if isinstance(child, Not):
                return child.child
            negation = Not(child)
            # Where each exclusion was written, for errors about it. Keyed by
            # identity: Not nodes are created here, and the tree keeps them alive.
            self.not_positions[id(negation)] = pos
            return negation
        if kind == "field":
            name: FieldName = "ti" if raw == "ti" else "abs" if raw == "abs" else "au"
            if field is not None and field != name:
                raise QueryError(f"field '{name}:' inside '{field}:'", pos)
            if not self.starts_unary():
                raise QueryError(f"nothing after '{name}:'", pos)
            self.deeper(pos)
            child = self.parse_unary(name)
            self.nesting -= 1
            return child
        # Callers check starts_unary(), so this is "(".
        self.deeper(pos)
        clauses = self.parse_list(field, pos)
        self.nesting -= 1
        if self.lex[self.i][0] != "rp":
            raise QueryError("unclosed '('", pos)
        self.i += 1
        return _flatten(Or, [c for c, _ in clauses])


def _assemble(clauses: list[tuple[Expr, bool, int]]) -> Profile:
    """The Profile of top-level ``(clause, matches_empty(clause), position)`` triples.

    Hoists exclusion clauses and raises for a clause that is true of papers lacking
    a term, a profile with nothing to include, and a clause the hoisted exclusions
    rule out entirely.
    """
    if not any(empty for _, empty, _ in clauses):  # the common case: nothing to hoist
        return Profile(tuple(node for node, _, _ in clauses))
    positive: list[tuple[Expr, int]] = []
    excluded: list[tuple[Expr, int]] = []
    for node, empty, pos in clauses:
        if not empty:
            positive.append((node, pos))
        elif isinstance(node, Not):
            excluded.append((node.child, pos))
        elif isinstance(node, And) and all(isinstance(c, Not) for c in node.children):
            # "-a -b" as a clause: each exclusion applies to the whole profile.
            excluded += [(c.child, pos) for c in node.children if isinstance(c, Not)]
        else:
            raise QueryError(
                "this clause matches every paper that lacks one of its terms; "
                "put exclusions next to a word, as in 'diffusion -survey'",
                pos,
            )
    if not positive:
        raise QueryError(
            "the profile only excludes, so it would match almost every paper; "
            "add a word to include",
            excluded[0][1],
        )
    if excluded:
        for node, pos in positive:
            required = [(c, pos) for c in node.children] if isinstance(node, And) else [(node, pos)]
            _check_contradiction(required, excluded)
    return Profile(tuple(n for n, _ in positive), tuple(n for n, _ in excluded))


class _Unsplittable(Exception):
    """A profile that is not simply clauses each parsing alone (see ``_split``)."""


class _ClauseCache(dict[str, Expr]):
    """Raw comma-separated part → its clause, parsed on first use.

    Keyed by the part exactly as written (spaces included) so that a profile's
    clauses are looked up with one ``map`` over ``text.split(",")``. Most profiles
    are a handful of clauses, and the same clause ("diffusion", "graph neural
    network") recurs across subscribers and across days.
    """

    def __missing__(self, part: str) -> Expr:
        clause = part.strip()
        if not clause:
            raise _Unsplittable
        # " diffusion" (after a comma) and "diffusion" (first) are the same clause.
        node = self.get(clause)
        if node is None:
            try:
                node, empty = _parse_clause(clause)
            except QueryError:
                raise _Unsplittable from None
            self[clause] = node
            if empty:
                _empty_parts.add(clause)
        if clause in _empty_parts:
            _empty_parts.add(part)
        self[part] = node
        return node


#: Cleared when it reaches this size (profile text is user input), only ever between
#: two profiles: a profile's clauses and their emptiness must come from one state.
_CLAUSE_CACHE_MAX: Final = 200_000
_clause_cache = _ClauseCache()
# The cached parts whose clause matches empty (exclusion clauses, mostly): only a
# profile containing one needs assembling (hoisting, contradiction checks).
_empty_parts: set[str] = set()
# Held while a profile's clauses are looked up (and parsed into the caches), so that
# another thread cannot clear the caches in between.
_clause_lock = threading.Lock()


def _split(text: str) -> Profile:
    """Parse ``text`` clause by clause through the clause cache.

    Raises ``_Unsplittable`` when the text is not simply "clauses separated by
    commas, each of which parses alone" (a comma inside quotes or parentheses, an
    empty clause, any error in a clause): the caller then parses the whole text,
    which also reports the right error. When it returns, the result equals the
    whole-text parse: every lexeme lies within one part, and lexing treats a comma
    like the end of the text.
    """
    parts = text.split(",")
    with _clause_lock:
        if len(_clause_cache) >= _CLAUSE_CACHE_MAX:
            _clause_cache.clear()
            _empty_parts.clear()
        nodes = tuple(map(_clause_cache.__getitem__, parts))
        if not _empty_parts or _empty_parts.isdisjoint(parts):
            return _profile(nodes)
        empty = list(map(_empty_parts.__contains__, parts))
    # What ``_assemble`` does, without positions: on any problem the whole-text
    # parse reports it. Only the hoisting and the contradiction check are needed.
    positive: list[Expr] = []
    excluded: list[Expr] = []
    for node, hoisted in zip(nodes, empty, strict=True):
        if not hoisted:
            positive.append(node)
        elif type(node) is Not:
            excluded.append(node.child)
        elif type(node) is And and all(type(c) is Not for c in node.children):
            excluded += [c.child for c in node.children if isinstance(c, Not)]
        else:
            raise _Unsplittable
    if not positive:
        raise _Unsplittable
    # An exclusion can rule out a required term only if its first stem is one of
    # that term's stems (see ``_covers``): check those pairs alone.
    firsts = {x.stems[0] for x in excluded if type(x) is Term and not x.prefix}
    if firsts:
        pairs = [(x, 0) for x in excluded]
        for node in positive:
            required = node.children if type(node) is And else (node,)
            for req in required:
                if type(req) is Term and not firsts.isdisjoint(req.stems):
                    try:
                        _check_contradiction([(req, 0)], pairs)
                    except QueryError:
                        raise _Unsplittable from None
    return _profile(tuple(positive), tuple(excluded))


# A clause of words and exclusions only (no quotes, groups, fields, prefixes, OR or
# AND) needs no lexer: it is the AND of its whitespace-separated items. This covers
# most clauses people write; anything unusual in it goes to the parser.
_NOT_PLAIN: Final = frozenset('"():*')


def _is_plain(clause: str) -> bool:
    """Whether ``_parse_plain`` takes ``clause``: none of ``"():*``, no ``OR``/``AND``
    (even inside a word such as ``ORCA``: cheaper to test, and still correct)."""
    return _NOT_PLAIN.isdisjoint(clause) and "OR" not in clause and "AND" not in clause


def _parse_clause(clause: str) -> tuple[Expr, bool]:
    """One stripped clause parsed alone, with ``matches_empty`` of it; raises
    ``_Unsplittable`` if it is not a whole clause on its own (a stray ")", half of
    a comma-split group), and ``QueryError`` for a problem in it."""
    if _is_plain(clause):
        return _parse_plain(clause)
    found = _parse_simple(clause)
    if found is not None:
        return found
    return _parse_clause_full(clause)


def _parse_clause_full(clause: str) -> tuple[Expr, bool]:
    """``_parse_clause`` through the lexer and parser: the definition the fast
    paths (``_parse_plain``, ``_parse_simple``) must agree with."""
    lexemes = _lex(clause)
    parser = _Parser(clause, lexemes)
    node = parser.parse_conj(None)
    if lexemes[parser.i][0] != "end":
        raise _Unsplittable
    # Without a NOT nothing can match empty; most clauses have none.
    return node, any(lx[0] == "not" for lx in lexemes) and matches_empty(node)


# The field names as a user may spell them (any case) → the field.
_FIELD_SPELLINGS: Final[dict[str, FieldName]] = {
    "".join(chars): name for name in FIELDS for chars in product(*((c, c.upper()) for c in name))
}
# The tokens of a clause with quotes, for ``_parse_simple``: a phrase with what touches
# it ("-", a field, a closing "*"), "(" or ")", a run of other non-space characters
# (where the lexer's word would end), or a quote that opens no phrase. A clause
# without quotes is split with str methods instead, which is several times cheaper.
_SIMPLE_TOKEN = re.compile(r'-?(?:[Tt][Ii]:|[Aa][Bb][Ss]:|[Aa][Uu]:)?"[^"]*"\*?|[()]|[^\s"()]+|"')


def _parse_simple(clause: str) -> tuple[Expr, bool] | None:
    """``_parse_clause`` without the lexer and parser for a clause of terms (words,
    prefixes, phrases, each maybe fielded or negated), ``NOT``, ``OR``, ``AND`` and
    groups of OR-ed terms without nesting: ``"graph neural" NOT survey``,
    ``(gnn OR gcn) ti:molecul*``. None for anything else (nested or juxtaposed
    inside a group, double negation, a field before a group or after "-", a
    misplaced keyword, a colon or "*" inside a word, ...), which the parser then
    handles, errors included.
    """
    if '"' in clause:
        tokens = _SIMPLE_TOKEN.findall(clause)
    else:
        tokens = clause.replace("(", " ( ").replace(")", " ) ").split()
    conj: list[Expr] = []  # the finished OR chains, ANDed
    chain: list[Expr] = []  # the current OR chain
    outer: list[Expr] | None = None  # the enclosing chain while inside "(...)"
    outer_join = join = False  # the next term or group extends ``chain`` (after OR)
    negate = False  # after NOT
    excludes = False  # some "-" or NOT: then the clause may match empty
    node: Expr
    for token in tokens:
        first = token[0]
        if first == "(":
            if outer is not None or negate:
                return None
            outer, outer_join, chain, join = chain, join, [], False
            continue
        if first == ")":
            if outer is None or join or negate or not chain:
                return None
            node = chain[0] if len(chain) == 1 else _flatten(Or, chain)
            chain, join, outer = outer, outer_join, None
        elif token in _KEYWORDS:
            if negate:
                return None
            if token == "NOT":
                negate = excludes = True
            elif join or not chain:  # OR/AND with nothing before it
                return None
            elif token == "OR":
                join = True
            elif outer is not None:  # AND inside a group
                return None
            else:  # AND: as if it were not there
                conj.append(chain[0] if len(chain) == 1 else _flatten(Or, chain))
                chain = []
            continue
        elif token.isalnum():  # a plain word, the usual term (_make_term's cache inlined)
            node = _term_cache.get(("word", token, False, None)) or _make_term(
                "word", token, False, None, 0
            )
        else:  # a term: ["-"][field ":"] then word["*"] or "phrase"["*"]
            rest = token[1:] if first == "-" else token
            name: FieldName | None = None
            quote = rest.find('"')
            if quote >= 0:  # a phrase token, whole (see _SIMPLE_TOKEN)
                if token == '"':
                    return None
                if quote:
                    name = _FIELD_SPELLINGS[rest[: quote - 1]]
                star = rest[-1] == "*"
                node = _make_term("phrase", rest[quote + 1 : -2 if star else -1], star, name, 0)
            else:
                colon = rest.find(":")
                if colon >= 0:
                    found = _FIELD_SPELLINGS.get(rest[:colon])
                    if found is None:
                        return None
                    name, rest = found, rest[colon + 1 :]
                if not rest or rest[0] == "-":
                    return None
                star = rest[-1] == "*"
                if star:
                    rest = rest[:-1]
                if "*" in rest or ":" in rest or (not star and rest in _KEYWORDS):
                    return None
                node = _make_term("word", rest, star, name, 0)
        if first == "-":
            if negate:
                return None
            node = _not(node)
            excludes = True
        elif negate:  # (never after ")": see above)
            node = _not(node)
            negate = False
        if join:
            chain.append(node)
            join = False
        else:
            if chain:  # juxtaposition: AND
                if outer is not None:
                    return None
                conj.append(chain[0] if len(chain) == 1 else _flatten(Or, chain))
            chain = [node]
    if outer is not None or join or negate or not chain:
        return None
    conj.append(chain[0] if len(chain) == 1 else _flatten(Or, chain))
    if len(conj) == 1:
        node = conj[0]
    else:
        node = _and(tuple(conj))  # no child is an And: nothing to flatten
        if excludes:
            excluded = [(c.child, 0) for c in conj if isinstance(c, Not)]
            if excluded:
                required = [(c, 0) for c in conj if not isinstance(c, Not)]
                _check_contradiction(required, excluded)
    return node, excludes and matches_empty(node)


def _parse_plain(clause: str) -> tuple[Expr, bool]:
    """``_parse_clause`` for words, ``-word`` and ``NOT word``: the parser's result
    without the parser. Double negations and lone NOTs are left to the parser."""
    children: list[Expr] = []
    negate = False
    for item in clause.split():
        if item == "NOT" or item[0] == "-":
            if negate:
                raise _Unsplittable
            negate = True
            if item == "NOT":
                continue
            item = item[1:]
            if not item or item[0] == "-" or item in _KEYWORDS:
                raise _Unsplittable
        term = _term_cache.get(("word", item, False, None)) or _make_term(
            "word", item, False, None, 0
        )
        children.append(_not(term) if negate else term)
        negate = False
    if negate:
        raise _Unsplittable
    excluded = [(c.child, 0) for c in children if isinstance(c, Not)]
    only_excludes = len(excluded) == len(children)  # then it matches empty
    if len(children) == 1:
        return children[0], only_excludes
    if excluded:
        _check_contradiction([(c, 0) for c in children if not isinstance(c, Not)], excluded)
    return _and(tuple(children)), only_excludes


# --- Public API ----------------------------------------------------------------------


def parse(text: str) -> Profile:
    """Parse and check ``text``; the tree of a valid profile, else ``QueryError``.

    The root is always a ``Profile``. Nothing but ``QueryError`` is raised, whatever
    the text.
    """
    if len(text) > MAX_PROFILE_CHARS:
        raise QueryError(f"the profile is longer than {MAX_PROFILE_CHARS} characters", 0)
    text = _straight_quotes(text)
    try:
        return _split(text)
    except _Unsplittable:
        return parse_whole(text)


def parse_whole(text: str) -> Profile:
    """``parse`` without the clause cache: the whole text through the parser at once.

    ``parse`` must always agree with it (tested); it is public for that test.
    """
    text = _straight_quotes(text)
    return _Parser(text, _lex(text)).parse_profile()


@dataclass(frozen=True)
class CompiledProfile:
    """A checked profile, ready to match; equal (and hashing) by its source text.

    Reusable across batches and threads. ``tree`` is the parsed profile;
    ``canonical`` its normal form; ``terms`` the included terms and ``excluded_terms``
    the excluded ones, as the user wrote them, in order, without repeats.
    """

    source: str
    tree: Profile = dataclasses.field(compare=False, repr=False)

    @functools.cached_property
    def canonical(self) -> str:
        return canonical(self.tree)

    @functools.cached_property
    def terms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.written for t, inc in iter_terms(self.tree) if inc))

    @functools.cached_property
    def excluded_terms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.written for t, inc in iter_terms(self.tree) if not inc))


@functools.lru_cache(maxsize=COMPILE_CACHE_SIZE)
def compile_profile(text: str) -> CompiledProfile:
    """Parse, check and compile ``text``; raises ``QueryError`` like ``parse``.

    Cached by text, so compiling every subscriber's profile each digest run costs
    a dictionary lookup for profiles that did not change.
    """
    return CompiledProfile(text, parse(text))


def compile_many(texts: Iterable[str]) -> dict[str, CompiledProfile | QueryError]:
    """``compile_profile`` for many profiles at once: text → compiled profile, or the
    ``QueryError`` that text raises. For the digest planner, which compiles every
    subscriber's profile; the cyclic GC is paused meanwhile (see ``paused_gc``).
    """
    found: dict[str, CompiledProfile | QueryError] = {}
    with paused_gc():
        for text in texts:
            if text not in found:
                try:
                    found[text] = compile_profile(text)
                except QueryError as exc:
                    found[text] = exc
    return found


def clear_caches() -> None:
    """Forget every cached compilation, clause and term (for timing a cold start)."""
    compile_profile.cache_clear()
    with _clause_lock:
        _clause_cache.clear()
        _empty_parts.clear()
    _term_cache.clear()
