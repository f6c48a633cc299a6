"""Match compiled profiles against a batch of papers: ranked matches with spans (pure).

The batch is indexed once (per field: stemmed term → papers → token positions), and
each profile is evaluated over *sets of papers* rather than paper by paper: a set is
a Python int used as a bitset (bit ``i`` = the ``i``-th paper of the batch), so AND,
OR and NOT over the whole batch are single integer operations.

Work is shared across profiles at three levels, all memoised on the index:

* a term's set of papers and its per-paper details (score, spans) — once per batch;
* a clause's ranked matches — once per clause object, and the compiler hands every
  profile with the same clause text the same object;
* a paper that one clause alone selects is reported as that clause's Match object,
  shared by every profile containing the clause.

So 100,000 profiles drawn from one vocabulary cost little more than their distinct
clauses plus copying references. ``reference_match`` evaluates one profile against
one paper directly, with no index: the executable definition the fast path is tested
against.

Semantics (see ``newsletter.subscribers.query``): an unfielded term looks in title and
abstract; ``au:`` in the authors, each name on its own so a phrase never spans two;
a phrase's words must be adjacent within one field; a prefix compares with the
folded, unstemmed word; exclusions beat inclusions.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final, NamedTuple, TypeVar

from newsletter.gc_tuning import paused_gc
from newsletter.subscribers.query import And, CompiledProfile, Expr, Not, Or, Term
from newsletter.text import Token, stem_all, tokens, words

K = TypeVar("K")

# --- Score ---------------------------------------------------------------------------
#
# score = Σ over the profile terms that made the paper match of
#         kind weight × (TITLE_WEIGHT       if the term is in the title
#                        + ABSTRACT_WEIGHT × (1 + ABSTRACT_REPEAT_WEIGHT × ln n)
#                                           if it occurs n ≥ 1 times in the abstract
#                        + AUTHOR_WEIGHT    if it is in the authors)
# kind weight = WORD_WEIGHT, PREFIX_WEIGHT, or PHRASE_WEIGHT_PER_WORD × words;
# so more matching terms score higher, a phrase above its words, a title above an
# abstract.

#: A title is the paper's own summary of itself: a term there says far more about the
#: topic than the same term in passing in the abstract.
TITLE_WEIGHT: Final = 3.0
#: The baseline: one mention in the abstract.
ABSTRACT_WEIGHT: Final = 1.0
#: Repeated mentions in the abstract count, but only logarithmically, so a long
#: abstract cannot outweigh a title hit (ln n would need n > e⁸ to add 2.0).
ABSTRACT_REPEAT_WEIGHT: Final = 0.25
#: ``au:`` is a deliberate "anything by this person"; weigh it like a title hit.
AUTHOR_WEIGHT: Final = TITLE_WEIGHT
#: A single word.
WORD_WEIGHT: Final = 1.0
#: A prefix is a looser word (``equivari*`` also hits ``equivariantly``).
PREFIX_WEIGHT: Final = 0.8
#: Per word of a phrase: a phrase of n words outweighs the AND of the same n words
#: (n × 1.0), because adjacency is much stronger evidence of the topic.
PHRASE_WEIGHT_PER_WORD: Final = 1.5
#: Scores are rounded to this many decimals, so that equal sums reached in a
#: different order are equal ties (then ordered by paper key), not float noise.
SCORE_DECIMALS: Final = 6

#: Authors are indexed as one token stream with this many empty positions between
#: names, so that no phrase can run from one author's name into the next.
_AUTHOR_GAP: Final = 1
_GAP: Final = ("", -1, -1)

#: Which indexed fields an unfielded or fielded term looks at.
_SCOPE: Final[dict[str | None, tuple[str, ...]]] = {
    None: ("ti", "abs"),
    "ti": ("ti",),
    "abs": ("abs",),
    "au": ("au",),
}
_FIELDS: Final = ("ti", "abs", "au")

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class MatchPaper:
    """What the matcher needs of a paper. ``key`` identifies it in the results and
    must be unique within a batch."""

    key: int
    title: str
    abstract: str
    authors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """One paper a profile matched.

    ``matched`` are the profile terms that made it match, as the user wrote them, in
    profile order. ``title_spans`` / ``abstract_spans`` are ``[start, end)`` character
    offsets into the original title / abstract, sorted and merged, covering every
    occurrence of those terms in the fields each term looks at. ``rank`` orders the
    matches of one batch (ascending = best first: score descending, then paper key);
    it means nothing across batches and is not compared.
    """

    paper_key: int
    score: float
    matched: tuple[str, ...]
    title_spans: tuple[Span, ...]
    abstract_spans: tuple[Span, ...]
    rank: int = dataclasses.field(default=0, compare=False, repr=False)


_BY_RANK: Final = attrgetter("rank")

# Match(...) runs a frozen dataclass's __init__, one object.__setattr__ per field
# (about 2 µs); make_match sets the slots through their descriptors instead (about
# 0.5 µs), which counts for the 100,000 Matches of a large batch. Same object.
_new_object = object.__new__
_MATCH_FIELDS: Final = ("paper_key", "score", "matched", "title_spans", "abstract_spans", "rank")
_MATCH_SETTERS: Final = tuple(vars(Match)[name].__set__ for name in _MATCH_FIELDS)


def _indices(bits: int) -> Iterator[int]:
    """The positions of the set bits of ``bits``, lowest first."""
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


def _kind_weight(term: Term) -> float:
    if len(term.words) > 1:
        return PHRASE_WEIGHT_PER_WORD * len(term.words)
    return PREFIX_WEIGHT if term.prefix else WORD_WEIGHT


def _merge_merged(parts: list[tuple[Span, ...]]) -> tuple[Span, ...]:
    """``_merge`` of the spans of ``parts``, each non-empty and merged already: the
    one part as is when there is only one (the usual case)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return ()
    return _merge([span for part in parts for span in part])


def _merge(spans: list[Span]) -> tuple[Span, ...]:
    """Sort and merge overlapping or touching spans."""
    if len(spans) < 2:
        return tuple(spans)
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            if end > last_end:
                merged[-1] = (last_start, end)
        else:
            merged.append((start, end))
    return tuple(merged)


class _Ranked(NamedTuple):
    """What a clause (or a term on its own) selects in one batch.

    ``bits``: the papers; ``matches``: their Matches, best first; ``by_paper``: paper
    index → Match; ``contributing``: (term, papers) for every included term that made
    the clause true, in profile order; ``keys``: the ``Term.key`` of those terms.
    """

    bits: int
    matches: list[Match]
    by_paper: dict[int, Match]
    contributing: list[tuple[Term, int]]
    keys: frozenset[str]


_NOTHING: Final = _Ranked(0, [], {}, [], frozenset())

# (score contribution, title spans, abstract spans) of one term in one paper
_Details = tuple[float, tuple[Span, ...], tuple[Span, ...]]


class PaperIndex:
    """One batch of papers, indexed for matching many profiles. Build with ``build``.

    Per field: stemmed term → paper → token positions, term → set of papers, and
    folded word → set of papers (for prefixes). The index also memoises, per batch,
    what terms and clauses select; those caches only ever gain entries that are pure
    functions of the batch, so an index can be shared by threads and reused by any
    number of calls. Memory grows with the distinct clauses matched against it;
    build a new index per batch.
    """

    def __init__(self, papers: Sequence[MatchPaper]) -> None:
        self.papers = tuple(papers)
        self.keys = tuple(p.key for p in self.papers)
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("paper keys must be unique within a batch")
        self.all = (1 << len(self.papers)) - 1
        # A paper's place in key order breaks score ties inside ``Match.rank``.
        self._key_order = [0] * len(self.keys)
        for place, at in enumerate(sorted(range(len(self.keys)), key=self.keys.__getitem__)):
            self._key_order[at] = place
        self._postings: dict[str, dict[str, dict[int, list[int]]]] = {f: {} for f in _FIELDS}
        self._bits: dict[str, dict[str, int]] = {f: {} for f in _FIELDS}
        self._word_bits: dict[str, dict[str, int]] = {f: {} for f in _FIELDS}
        self._vocab: dict[str, list[str]] = {}
        # Per field and paper, the (folded word, start, end) at every position: the
        # offsets for highlighting and the words for prefix positions. Authors are
        # one stream with an empty placeholder between names.
        self._words: dict[str, list[list[tuple[str, int, int]]]] = {f: [] for f in _FIELDS}
        self._term_memo: dict[str, int] = {}
        self._prefix_memo: dict[tuple[str, str], list[str]] = {}
        self._word_positions_memo: dict[tuple[str, int], dict[str, list[int]]] = {}
        self._details_memo: dict[tuple[str, int], _Details] = {}
        self._singles: dict[tuple[str, str], _Ranked] = {}
        # Clause results by the identity of the clause object; ``_clause_nodes`` keeps
        # every memoised object alive, so no other object can take its identity.
        self._clauses: dict[int, _Ranked] = {}
        self._clause_nodes: list[Expr] = []
        self._combined: dict[tuple[int, ...], Match] = {}
        # (paper, ids of terms) → Match; ``_combo_terms`` keeps those terms alive.
        self._term_combos: dict[tuple[int, ...], Match] = {}
        self._combo_terms: list[list[Term]] = []
        with paused_gc():
            for i, paper in enumerate(self.papers):
                self._add(i, "ti", words(paper.title))
                self._add(i, "abs", words(paper.abstract))
                stream: list[tuple[str, int, int]] = []
                for name in paper.authors:
                    if stream:
                        stream += [_GAP] * _AUTHOR_GAP
                    stream += words(name)
                self._add(i, "au", stream)

    @classmethod
    def build(cls, papers: Sequence[MatchPaper]) -> PaperIndex:
        """Tokenise and index ``papers`` (keys must be unique)."""
        return cls(papers)

    def __len__(self) -> int:
        return len(self.papers)

    def _add(self, paper: int, field: str, stream: list[tuple[str, int, int]]) -> None:
        self._words[field].append(stream)
        folded = [w for w, _, _ in stream]
        terms = stem_all(folded)
        postings = self._postings[field]
        for pos, term in enumerate(terms):
            by_paper = postings.get(term)
            if by_paper is None:
                postings[term] = {paper: [pos]}
                continue
            positions = by_paper.get(paper)
            if positions is None:
                by_paper[paper] = [pos]
            else:
                positions.append(pos)
        bit = 1 << paper
        for table, present in ((self._bits[field], terms), (self._word_bits[field], folded)):
            for key in set(present):
                table[key] = table.get(key, 0) | bit
            table.pop("", None)  # the author gap placeholder must match nothing

    def make_match(
        self,
        paper: int,
        score: float,
        matched: tuple[str, ...],
        title_spans: tuple[Span, ...],
        abstract_spans: tuple[Span, ...],
    ) -> Match:
        """A Match for the paper at index ``paper``, with its score rounded and its
        rank within this batch."""
        score = round(score, SCORE_DECIMALS)
        # Exact integer: score descending, then key ascending.
        rank = -round(score * 10**SCORE_DECIMALS) * len(self.keys) + self._key_order[paper]
        match = _new_object(Match)
        set_key, set_score, set_matched, set_title, set_abstract, set_rank = _MATCH_SETTERS
        set_key(match, self.keys[paper])
        set_score(match, score)
        set_matched(match, matched)
        set_title(match, title_spans)
        set_abstract(match, abstract_spans)
        set_rank(match, rank)
        return match

    # -- terms -------------------------------------------------------------------------

    def _prefix_words(self, field: str, prefix: str) -> list[str]:
        """The folded words of ``field`` in this batch that start with ``prefix``."""
        found = self._prefix_memo.get((field, prefix))
        if found is None:
            vocab = self._vocab.get(field)
            if vocab is None:
                vocab = self._vocab[field] = sorted(self._word_bits[field])
            found = []
            for i in range(bisect_left(vocab, prefix), len(vocab)):
                if not vocab[i].startswith(prefix):
                    break
                found.append(vocab[i])
            self._prefix_memo[(field, prefix)] = found
        return found

    def _word_set(self, term: Term, k: int, field: str) -> int:
        """Papers whose ``field`` has a token matching word ``k`` of ``term``."""
        if term.prefix and k == len(term.stems) - 1:
            word_bits = self._word_bits[field]
            bits = 0
            for word in self._prefix_words(field, term.stems[k]):
                bits |= word_bits[word]
            return bits
        return self._bits[field].get(term.stems[k], 0)

    def _positions(self, term: Term, k: int, field: str, paper: int) -> list[int]:
        """Positions in ``field`` of ``paper`` of a token matching word ``k``."""
        if term.prefix and k == len(term.stems) - 1:
            # The batch's words with that prefix, looked up in the paper's words:
            # cheaper than testing every token of the paper with startswith.
            at = self._word_positions(field, paper)
            found: list[int] = []
            for word in self._prefix_words(field, term.stems[k]):
                positions = at.get(word)
                if positions is not None:
                    found += positions
            found.sort()
            return found
        return self._postings[field].get(term.stems[k], {}).get(paper, [])

    def _word_positions(self, field: str, paper: int) -> dict[str, list[int]]:
        """Folded word → its positions in ``field`` of ``paper`` (built on first use,
        for prefixes)."""
        found = self._word_positions_memo.get((field, paper))
        if found is None:
            found = {}
            for pos, (word, _, _) in enumerate(self._words[field][paper]):
                positions = found.get(word)
                if positions is None:
                    found[word] = [pos]
                else:
                    positions.append(pos)
            self._word_positions_memo[(field, paper)] = found
        return found

    def occurrences(self, term: Term, paper: int, field: str) -> list[int]:
        """Sorted token positions in ``field`` of ``paper`` where ``term`` starts."""
        starts = self._positions(term, 0, field, paper)
        for k in range(1, len(term.stems)):
            if not starts:
                break
            following = set(self._positions(term, k, field, paper))
            starts = [s for s in starts if s + k in following]
        return starts

    def term_bits(self, term: Term) -> int:
        """The set of papers ``term`` matches (memoised per batch by ``term.key``)."""
        found = self._term_memo.get(term.key)
        if found is not None:
            return found
        scope = _SCOPE[term.field]
        candidates = self.all
        for k in range(len(term.stems)):
            word = 0
            for field in scope:
                word |= self._word_set(term, k, field)
            candidates &= word
            if not candidates:
                break
        if len(term.stems) > 1 and candidates:
            # Every word is present; keep the papers where they are adjacent.
            bits = 0
            for paper in _indices(candidates):
                if any(self.occurrences(term, paper, f) for f in scope):
                    bits |= 1 << paper
            candidates = bits
        self._term_memo[term.key] = candidates
        return candidates

    def details(self, term: Term, paper: int) -> _Details:
        """(score contribution, title spans, abstract spans) of ``term`` in ``paper``,
        which it must match."""
        memo_key = (term.key, paper)
        found = self._details_memo.get(memo_key)
        if found is not None:
            return found
        weight = 0.0
        spans: dict[str, tuple[Span, ...]] = {"ti": (), "abs": ()}
        last = len(term.stems) - 1
        for field in _SCOPE[term.field]:
            starts = self.occurrences(term, paper, field)
            if not starts:
                continue
            if field == "ti":
                weight += TITLE_WEIGHT
            elif field == "abs":
                weight += ABSTRACT_WEIGHT * (1 + ABSTRACT_REPEAT_WEIGHT * math.log(len(starts)))
            else:
                weight += AUTHOR_WEIGHT
            if field != "au":
                stream = self._words[field][paper]
                spans[field] = _merge([(stream[s][1], stream[s + last][2]) for s in starts])
        found = (round(weight * _kind_weight(term), SCORE_DECIMALS), spans["ti"], spans["abs"])
        self._details_memo[memo_key] = found
        return found

    # -- expressions -----------------------------------------------------------------

    def bits(self, node: Expr) -> int:
        """The set of papers ``node`` is true for."""
        if type(node) is Term:
            found = self._term_memo.get(node.key)
            return found if found is not None else self.term_bits(node)
        memo_get = self._term_memo.get  # the Term case inlined below: children are mostly terms
        if type(node) is And:
            acc = self.all
            negated: list[Expr] = []
            # Intersect the inclusions first: they are usually small and empty
            # early, which saves evaluating the exclusions at all.
            for child in node.children:
                if type(child) is Term:
                    found = memo_get(child.key)
                    acc &= found if found is not None else self.term_bits(child)
                elif type(child) is Not:
                    negated.append(child.child)
                    continue
                else:
                    acc &= self.bits(child)
                if not acc:
                    return 0
            for child in negated:
                acc &= ~self.bits(child)
                if not acc:
                    return 0
            return acc
        if type(node) is Or:
            acc = 0
            for child in node.children:
                if type(child) is Term:
                    found = memo_get(child.key)
                    acc |= found if found is not None else self.term_bits(child)
                else:
                    acc |= self.bits(child)
            return acc
        assert type(node) is Not
        return self.all & ~self.bits(node.child)

    def contributing(self, node: Expr, mask: int, out: list[tuple[Term, int]]) -> None:
        """Append (term, papers) for each included term that makes ``node`` true for
        the papers of ``mask`` (which must all satisfy ``node``)."""
        if type(node) is Term:
            hit = mask & self.bits(node)
            if hit:
                out.append((node, hit))
        elif type(node) is And:
            for child in node.children:
                if type(child) is not Not:
                    self.contributing(child, mask, out)
        elif type(node) is Or:
            for child in node.children:
                hit = mask & self.bits(child)
                if hit:
                    self.contributing(child, hit, out)
        # A Not contributes no terms: a paper is never "chosen because" of an absence.

    # -- clauses -----------------------------------------------------------------------

    def singles(self, term: Term) -> _Ranked:
        """The matches of ``term`` as a clause on its own, memoised by what it
        matches and how it was written."""
        memo_key = (term.key, term.written)
        found = self._singles.get(memo_key)
        if found is None:
            bits = self.term_bits(term)
            label = (term.written,)
            by_paper = {}
            for paper in _indices(bits):
                score, title_spans, abstract_spans = self.details(term, paper)
                by_paper[paper] = self.make_match(paper, score, label, title_spans, abstract_spans)
            found = _ranked(by_paper, [(term, bits)], bits)
            self._singles[memo_key] = found
        return found

    def clause(self, node: Expr) -> _Ranked:
        """The matches of ``node`` as a whole clause, memoised by identity.

        The memo holds the node itself, so its identity cannot be reused by another
        object while the entry exists. Clause and term objects are shared by every
        profile with that clause text (the compiler's caches), so a popular clause is
        evaluated once per batch; equal but distinct objects are evaluated again.
        """
        found = self._clauses.get(id(node))
        if found is not None:
            return found
        if type(node) is Term:
            found = self.singles(node)
        else:
            bits = self.bits(node)
            if not bits:
                found = _NOTHING  # most distinct composite clauses match nothing
            else:
                contributing: list[tuple[Term, int]] = []
                self.contributing(node, bits, contributing)
                found = _ranked(self.combine_terms(contributing, bits), contributing, bits)
        self._clause_nodes.append(node)
        self._clauses[id(node)] = found
        return found

    def combine_terms(self, contributing: list[tuple[Term, int]], papers: int) -> dict[int, Match]:
        """paper index → Match for ``papers``, from the terms that selected each one."""
        out: dict[int, Match] = {}
        if not papers:
            return out
        shared: list[Term] | None = None
        if all(bits == papers for _, bits in contributing):
            # The usual composite clause ("graph neural"): the same terms selected
            # every paper, so collect them once.
            first: dict[str, Term] = {}
            for term, _ in contributing:
                first.setdefault(term.key, term)
            shared = list(first.values())
            if len(shared) == 1:  # "word -other": each paper as the term alone
                single = self.singles(shared[0]).by_paper
                return {paper: single[paper] for paper in _indices(papers)}
        for paper in _indices(papers):
            if shared is not None:
                terms = shared
            else:
                # Keyed by what the term matches: "Diffusion" and "diffusion" count once.
                by_key: dict[str, Term] = {}
                for term, bits in contributing:
                    if bits >> paper & 1 and term.key not in by_key:
                        by_key[term.key] = term
                terms = list(by_key.values())
            if len(terms) == 1:
                out[paper] = self.singles(terms[0]).by_paper[paper]
                continue
            # The same terms (objects: same spellings too) on the same paper make the
            # same Match, whichever clauses or profiles bring them together.
            memo_key = (paper, *map(id, terms))
            found = self._term_combos.get(memo_key)
            if found is not None:
                out[paper] = found
                continue
            score = 0.0
            titles: list[tuple[Span, ...]] = []
            abstracts: list[tuple[Span, ...]] = []
            labels: list[str] = []
            for term in terms:
                weight, title_spans, abstract_spans = self.details(term, paper)
                score += weight
                if title_spans:
                    titles.append(title_spans)
                if abstract_spans:
                    abstracts.append(abstract_spans)
                if term.written not in labels:
                    labels.append(term.written)
            out[paper] = self._term_combos[memo_key] = self.make_match(
                paper, score, tuple(labels), _merge_merged(titles), _merge_merged(abstracts)
            )
            self._combo_terms.append(terms)
        return out

    def combine_clauses(self, paper: int, matches: list[Match]) -> Match:
        """One Match from the Matches several clauses made for ``paper``, when no
        term is shared between those clauses (so their scores simply add up).

        Memoised by the identities of ``matches``, which the clause memo keeps alive:
        profiles sharing two clauses that hit the same paper share the result.
        """
        memo_key = tuple(map(id, matches))
        found = self._combined.get(memo_key)
        if found is None:
            found = self._combined[memo_key] = self._combine_clauses(paper, matches)
        return found

    def _combine_clauses(self, paper: int, matches: list[Match]) -> Match:
        labels: list[str] = []
        titles: list[tuple[Span, ...]] = []
        abstracts: list[tuple[Span, ...]] = []
        score = 0.0
        for match in matches:
            score += match.score
            if match.title_spans:
                titles.append(match.title_spans)
            if match.abstract_spans:
                abstracts.append(match.abstract_spans)
            labels += [label for label in match.matched if label not in labels]
        return self.make_match(
            paper, score, tuple(labels), _merge_merged(titles), _merge_merged(abstracts)
        )


def _ranked(by_paper: dict[int, Match], contributing: list[tuple[Term, int]], bits: int) -> _Ranked:
    return _Ranked(
        bits,
        sorted(by_paper.values(), key=_BY_RANK),
        by_paper,
        contributing,
        frozenset(t.key for t, _ in contributing),
    )


def match_profile(profile: CompiledProfile, index: PaperIndex) -> list[Match]:
    """The papers of ``index`` that ``profile`` matches, best first (ties by key)."""
    tree = profile.tree
    memo_get = index._clauses.get
    results: list[_Ranked] = []
    selected = multi = 0
    for node in tree.clauses:
        # index.clause(node), inlined for the hot path (see PaperIndex._clauses)
        result = memo_get(id(node)) or index.clause(node)
        bits = result.bits
        if bits:
            results.append(result)
            multi |= selected & bits
            selected |= bits
    if not selected:
        return []
    chosen = selected  # before exclusions
    for excluded in tree.excluded:
        selected &= ~index.bits(excluded)
        if not selected:
            return []

    if not multi and selected == chosen:
        # The common case: every clause keeps all its matches, each paper comes from
        # one clause, and each clause's list is ranked already.
        if len(results) == 1:
            return list(results[0].matches)
        out: list[Match] = []
        for result in results:
            out += result.matches
        out.sort(key=_BY_RANK)
        return out

    # A paper selected by one clause gets that clause's Match as is; a paper selected
    # by several gets one Match combining them. Collected by paper index with dict
    # operations, so only the excluded and the shared papers cost a Python step.
    by_paper: dict[int, Match] = {}
    for result in results:
        by_paper.update(result.by_paper)
    removed = chosen & ~selected
    while removed:  # the set bits, inlined
        low = removed & -removed
        del by_paper[low.bit_length() - 1]
        removed ^= low
    multi &= selected
    if multi:
        hits = [r for r in results if r.bits & multi]
        keys: set[str] = set()
        disjoint = True
        for result in hits:
            disjoint = disjoint and keys.isdisjoint(result.keys)
            keys |= result.keys
        if disjoint:
            combined_get = index._combined.get
            if len(hits) == 2:  # the usual case: then both clauses hold every shared paper
                first, second = hits[0].by_paper, hits[1].by_paper
                for paper in _indices(multi):
                    one, two = first[paper], second[paper]
                    # index.combine_clauses, its memo lookup inlined
                    found = combined_get((id(one), id(two)))
                    if found is None:
                        found = index.combine_clauses(paper, [one, two])
                    by_paper[paper] = found
            else:
                gets = [r.by_paper.get for r in hits]
                for paper in _indices(multi):
                    clause_matches = [m for get in gets if (m := get(paper)) is not None]
                    found = combined_get(tuple(map(id, clause_matches)))
                    if found is None:
                        found = index.combine_clauses(paper, clause_matches)
                    by_paper[paper] = found
        else:  # a term in two clauses must count once: combine at the term level
            contributing = [c for r in hits for c in r.contributing]
            by_paper.update(index.combine_terms(contributing, multi))
    out = list(by_paper.values())
    out.sort(key=_BY_RANK)
    return out


def match_many(profiles: Mapping[K, CompiledProfile], index: PaperIndex) -> dict[K, list[Match]]:
    """``match_profile`` for every profile; only keys with at least one match.

    Subscribers with the same profile text are evaluated once (each gets its own
    list).
    """
    done: dict[str, list[Match]] = {}
    results: dict[K, list[Match]] = {}
    with paused_gc():
        for key, profile in profiles.items():
            found = done.get(profile.source)
            if found is None:
                found = done[profile.source] = match_profile(profile, index)
                if found:
                    results[key] = found
            elif found:
                results[key] = list(found)
    return results


# --- The reference evaluator ---------------------------------------------------------


def reference_match(profile: CompiledProfile, paper: MatchPaper) -> bool:
    """Whether ``profile`` matches ``paper``, evaluated directly with no index.

    The slow, obviously-correct definition the indexed matcher must agree with.
    """
    streams: dict[str, list[list[Token]]] = {
        "ti": [tokens(paper.title)],
        "abs": [tokens(paper.abstract)],
        "au": [tokens(name) for name in paper.authors],
    }

    def token_matches(term: Term, k: int, tok: Token) -> bool:
        if term.prefix and k == len(term.stems) - 1:
            return tok.word.startswith(term.stems[k])
        return tok.term == term.stems[k]

    def has(term: Term) -> bool:
        n = len(term.stems)
        for field in _SCOPE[term.field]:
            for toks in streams[field]:
                for start in range(len(toks) - n + 1):
                    if all(token_matches(term, k, toks[start + k]) for k in range(n)):
                        return True
        return False

    def holds(node: Expr) -> bool:
        if isinstance(node, Term):
            return has(node)
        if isinstance(node, Not):
            return not holds(node.child)
        if isinstance(node, And):
            return all(holds(c) for c in node.children)
        return any(holds(c) for c in node.children)

    tree = profile.tree
    return any(holds(c) for c in tree.clauses) and not any(holds(x) for x in tree.excluded)
