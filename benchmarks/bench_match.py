"""Matching speed: 100,000 profiles against 500 new papers, next to a naive loop.

Target (issue 3): ≤ 5 s on one core *including* compiling every profile, and
≥ 100× faster than the naive loop (every profile × every paper with regexes),
which is timed on a subset in the same run and scaled linearly: it does the same
work for every profile, so scaling is fair. Peak memory is reported.

Profiles are drawn from the sample papers' own vocabulary — title words, title
phrases, abstract words for exclusions — so they hit papers at a realistic rate
rather than never (random strings) or always (stop words).
"""

from __future__ import annotations

import itertools
import random
import re
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Row, format_table, peak_rss_mb, stopwatch
from newsletter.matching.match import MatchPaper, PaperIndex, match_many
from newsletter.papers.parse_dump import parse_dump
from newsletter.subscribers.query import CompiledProfile, clear_caches, compile_many
from newsletter.text import fold, stem, tokens

SAMPLES = Path(__file__).resolve().parents[1] / "newsletter" / "samples"
SEED = 20240730
FILE_TIME = datetime(2026, 7, 30, tzinfo=UTC)
#: A word in more than this share of the papers is too common to be a topic.
TOPIC_MAX_SHARE = 0.03

FULL = {"profiles": 100_000, "papers": 500, "naive_profiles": 200}
QUICK = {"profiles": 2_000, "papers": 100, "naive_profiles": 20}

# Words too common to be anyone's topic; the profiles avoid them as users would.
# fmt: off
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "in", "into", "is",
    "it", "its", "of", "on", "or", "our", "than", "that", "the", "their", "this", "to", "we",
    "with", "via", "using", "towards", "toward", "without", "when", "what", "which", "while",
    "can", "not", "do", "does", "new", "based", "learning", "model", "models",
))
# fmt: on
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")


def sample_pairs() -> list[tuple[str, str]]:
    """(title, abstract) of every paper in the sample dumps."""
    pairs: list[tuple[str, str]] = []
    for path in sorted(SAMPLES.glob("*.txt")):
        result = parse_dump(path.read_bytes(), file_time=FILE_TIME)
        pairs += [(r.title, r.abstract) for r in result.records]
    return pairs


def make_papers(n: int, rnd: random.Random) -> list[MatchPaper]:
    """``n`` papers: the samples, then variants (new title lead, shuffled abstract
    sentences with one borrowed from another paper) until there are ``n``."""
    base = sample_pairs()
    leads = ["Towards", "Revisiting", "Scaling", "On", "Rethinking", "Efficient", "Learning"]
    papers = []
    for i in range(n):
        title, abstract = base[i % len(base)]
        if i >= len(base):
            sentences = re.split(r"(?<=\.)\s+", abstract)
            rnd.shuffle(sentences)
            other = re.split(r"(?<=\.)\s+", rnd.choice(base)[1])
            sentences.insert(rnd.randrange(len(sentences) + 1), rnd.choice(other))
            title, abstract = f"{rnd.choice(leads)} {title}", " ".join(sentences)
        papers.append(MatchPaper(i, title, abstract))
    return papers


def make_profiles(n: int, papers: list[MatchPaper], rnd: random.Random) -> list[str]:
    """``n`` profiles of 1–8 clauses: words, phrases, AND, OR groups, prefixes, ti:/abs:
    fields and exclusions (in a clause or as a clause of their own).

    Topic words and phrases come from the titles, keeping words that occur in at most
    ``TOPIC_MAX_SHARE`` of the papers: a subscriber names a topic, not "neural".
    Exclusions are abstract words sharing no stem with any topic word, so no
    generated profile contradicts itself.
    """
    df = Counter(t for p in papers for t in {tok.term for tok in tokens(f"{p.title} {p.abstract}")})
    limit = len(papers) * TOPIC_MAX_SHARE

    def topical(w: str) -> bool:
        terms = [tok.term for tok in tokens(w)]
        return bool(terms) and w.lower() not in _STOP and all(df[t] <= limit for t in terms)

    title_words: list[str] = []
    phrases: list[str] = []
    for p in papers:
        words = [w for w in _WORD.findall(p.title) if len(w) > 3]
        title_words += [w for w in words if topical(w)]
        for a, b in itertools.pairwise(words):
            if f"{a} {b}" in p.title and (topical(a) or topical(b)):
                phrases.append(f"{a} {b}")
    topic = sorted(set(title_words))
    phrases = sorted(set(phrases))
    plain = [w for w in topic if w.isalpha()]  # prefixes of hyphenated words are odd
    topic_stems = {tok.term for w in [*topic, *phrases] for tok in tokens(w)}
    excl = sorted(
        {
            w.lower()
            for p in papers
            for w in _WORD.findall(p.abstract)
            if w.isalpha()
            and w.lower() not in _STOP
            and 3 <= df[stem(w.lower())] <= len(papers) // 5
            and stem(w.lower()) not in topic_stems
        }
    )

    def word() -> str:
        w = rnd.choice(topic)
        return w.lower() if rnd.random() < 0.5 else w

    def clause() -> str:
        r = rnd.random()
        if r < 0.35:
            return word()
        if r < 0.60:
            return f'"{rnd.choice(phrases)}"'
        if r < 0.75:
            return f"{word()} {word()}"
        if r < 0.83:
            w = rnd.choice(plain)
            return f"{w[: max(4, len(w) - 3)]}*"
        if r < 0.90:
            return f"ti:{word()}"
        if r < 0.95:
            return f'abs:"{rnd.choice(phrases)}"'
        return f"({word()} OR {word()}) {word()}"

    profiles = []
    for _ in range(n):
        clauses = [clause() for _ in range(rnd.randint(1, 8))]
        if rnd.random() < 0.3:
            ex = rnd.choice(excl)
            if rnd.random() < 0.5:
                clauses.append(f"-{ex}")
            else:
                i = rnd.randrange(len(clauses))
                clauses[i] += f" NOT {ex}"
        profiles.append(", ".join(clauses))
    return profiles


# --- The naive baseline --------------------------------------------------------------

_NAIVE_TERM = re.compile(r'(-|NOT\s+)?(?:(ti|abs|au):)?("([^"]*)"|[^\s,()"]+)(\*?)')


def naive_match(profiles: list[str], papers: list[MatchPaper]) -> int:
    """Every profile against every paper with regexes, the way a first version would.

    Each profile is split into clauses and terms, every term becomes a regex over the
    folded title and abstract (stems approximated by "word prefix + \\w*"), and each
    paper is tested clause by clause; matched papers get their spans with finditer.
    It is generous to the baseline: papers are folded once, not per profile, and
    OR groups are simply read as AND. Returns the number of matches.
    """
    folded = [(fold(p.title), fold(p.abstract)) for p in papers]
    count = 0
    for profile in profiles:
        clauses = []
        for raw in profile.split(","):
            terms = []
            for m in _NAIVE_TERM.finditer(raw):
                neg, field, text, phrase, _star = m.groups()
                body = phrase if phrase is not None else text
                parts = [w[:-1] if len(w) > 4 else w for w in _WORD.findall(fold(body))]
                if not parts or body in ("OR", "AND"):
                    continue
                pattern = r"\b" + r"\w*\W+".join(map(re.escape, parts)) + r"\w*"
                terms.append((bool(neg), field, re.compile(pattern)))
            clauses.append(terms)
        for title, abstract in folded:
            hit = False
            for terms in clauses:
                ok = bool(terms)
                for neg, field, rx in terms:
                    texts = (
                        (title,) if field == "ti" else (abstract,) if field else (title, abstract)
                    )
                    if any(rx.search(t) for t in texts) == neg:
                        ok = False
                        break
                if ok:
                    hit = True
                    spans = [m.span() for _, _, rx in terms for m in rx.finditer(abstract)]
                    spans.sort()
            count += hit
    return count


def run(quick: bool = False) -> list[Row]:
    """Time compile + index + match of the whole workload, and the naive loop on a
    subset scaled to the same size."""
    size = QUICK if quick else FULL
    rnd = random.Random(SEED)
    papers = make_papers(size["papers"], rnd)
    texts = make_profiles(size["profiles"], papers, rnd)
    clear_caches()  # time a cold start: every profile compiled, every term stemmed

    with stopwatch() as t_compile:
        by_text = compile_many(texts)
        compiled: dict[int, CompiledProfile] = {}
        for i, text in enumerate(texts):
            profile = by_text[text]
            assert isinstance(profile, CompiledProfile), (text, profile)
            compiled[i] = profile
    with stopwatch() as t_index:
        index = PaperIndex.build(papers)
    with stopwatch() as t_match:
        results = match_many(compiled, index)
    ours = t_compile[0] + t_index[0] + t_match[0]
    matches = sum(len(v) for v in results.values())

    subset = texts[: size["naive_profiles"]]
    with stopwatch() as t_naive:
        naive_match(subset, papers)
    naive = t_naive[0] * len(texts) / len(subset)

    n_prof, n_pap = size["profiles"], size["papers"]
    return [
        Row(
            f"match {n_prof:,} profiles × {n_pap} papers",
            ours,
            "s",
            baseline=naive,
            baseline_name=f"naive regex loop, {len(subset)} profiles scaled",
            target="≤ 5 s incl. compile, ≥ 100×",
            note=(
                f"compile {t_compile[0]:.2f} s + index {t_index[0]:.2f} s + "
                f"match {t_match[0]:.2f} s; {len(results):,} profiles matched, "
                f"{matches:,} matches; peak RSS {peak_rss_mb():.0f} MiB"
            ),
            higher_is_better=False,
        ),
        Row(
            "profiles matched per second",
            n_prof / ours,
            "profiles/s",
            baseline=n_prof / naive,
            baseline_name="naive regex loop",
            target="≥ 20,000 profiles/s",
        ),
    ]


if __name__ == "__main__":
    print(format_table(run(quick="--quick" in sys.argv)))
