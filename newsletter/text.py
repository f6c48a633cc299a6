"""Text normalisation shared by paper identity, ingest and the profile matcher.

One place decides what "the same text" means, so a title fingerprint and a profile
term are folded by the same rules: Unicode NFKC, accents removed, casefolded.
``tokens()`` adds what matching needs on top: words split at hyphens and
punctuation, Snowball (English) stems, and each word's offsets in the original
string, so a match can be highlighted where the reader sees it. Profiles and papers
both go through ``tokens()``, which is what makes them agree.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any, Final, NamedTuple

import Stemmer

_WS = re.compile(r"\s+")


def fold(text: str) -> str:
    """NFKC-normalise, strip accents and casefold: ``"Naïve ＦＯＯ"`` → ``"naive foo"``.

    Accents are stripped by decomposing (NFKD) and dropping combining marks, then the
    result is recomposed (NFKC) so ligatures and full-width forms are folded too.
    Characters with no ASCII base (ß, ø, Greek) keep their folded form.
    """
    if text.isascii():
        return text.casefold()  # nothing to decompose or strip: the common case
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", stripped).casefold()


def collapse_ws(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return _WS.sub(" ", text).strip()


# --- Tokens for matching -------------------------------------------------------------
#
# Profiles and papers go through the same ``tokens()``, so whatever it decides (what a
# word is, how it is folded and stemmed) is automatically consistent on both sides.

#: A word is a run of letters/digits; an apostrophe *inside* a word keeps it whole so
#: that the stemmer can strip a possessive ("learning's" → "learn") instead of leaving
#: a stray "s" that would break phrase adjacency. Underscores and hyphens separate
#: words, which is what makes ``self-supervised`` ≡ ``self supervised``.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

#: Invisible characters that sit *inside* words in scraped text (soft hyphen, zero-width
#: joiners, word joiner, BOM). Dropping them keeps "equi\u00advariant" one word; a
#: zero-width *space* is a real word boundary and is deliberately not listed.
_INVISIBLE = frozenset("\u00ad\u200c\u200d\u2060\ufeff")

#: The stem cache is bounded because ingest feeds it arbitrary text; English vocabulary
#: fits comfortably, and clearing now and then costs one re-stem per word.
_STEM_CACHE_MAX = 200_000

#: Folding a character's fold again changes it for a handful of characters, once;
#: the bound only guards against a cycle.
_REFOLD_LIMIT: Final = 4

_stem_cache: dict[str, str] = {}
_char_cache: dict[str, str] = {}
# PyStemmer's Stemmer objects are not safe to share between threads (the web server
# is threaded), so each thread gets its own.
_local = threading.local()


class Token(NamedTuple):
    """One word of a text.

    ``term`` is the stemmed, folded form used for matching; ``word`` the folded,
    unstemmed form (prefix search compares against it); ``start``/``end`` are the
    ``[start, end)`` character offsets of the word in the ORIGINAL string, so a
    caller can highlight ``text[start:end]``.
    """

    term: str
    start: int
    end: int
    word: str


def _stemmer() -> Any:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    """The Snowball (English) stem of one folded word: ``"networks"`` → ``"network"``.

    ``word`` must already be folded (a ``Token.word``); the result is cached.
    """
    found = _stem_cache.get(word)
    if found is None:
        if len(_stem_cache) >= _STEM_CACHE_MAX:
            _stem_cache.clear()
        found = _stem_cache[word] = str(_stemmer().stemWord(word))
    return found


def _fold_char(ch: str) -> str:
    """``fold(ch)``, refolded until stable, so folding a token's word again gives
    the same word (casefolding can produce characters that fold further)."""
    found = _char_cache.get(ch)
    if found is None:
        found = "" if ch in _INVISIBLE else fold(ch)
        for _ in range(_REFOLD_LIMIT):
            again = "".join("" if c in _INVISIBLE else fold(c) for c in found)
            if again == found:
                break
            found = again
        if len(_char_cache) < _STEM_CACHE_MAX:
            _char_cache[ch] = found
    return found


def words(text: str) -> list[tuple[str, int, int]]:
    """The folded, unstemmed words of ``text`` with their offsets into ``text``.

    Folding is ``fold()`` applied character by character, which keeps a map from
    every folded character back to the original one: "naïve" (composed or with a
    combining diaeresis) and "ﬁne" (ligature) come back as "naive" and "fine" with
    the offsets of the original spelling. A word's end is extended over trailing
    characters that fold to nothing (combining marks), so a highlight never cuts a
    letter from its accent.
    """
    if text.isascii():
        # Fast path (almost every title and abstract): folding ASCII is lowercasing
        # and keeps every offset.
        return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text.lower())]
    parts: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold_char(ch)
        if folded:
            parts.append(folded)
            origin.extend([i] * len(folded))
    folded_text = "".join(parts)
    found: list[tuple[str, int, int]] = []
    size = len(text)
    for m in _WORD.finditer(folded_text):
        start = origin[m.start()]
        end = origin[m.end() - 1] + 1
        while end < size and not _fold_char(text[end]):
            end += 1
        found.append((m.group().replace("\u2019", "'"), start, end))
    return found


def tokens(text: str) -> list[Token]:
    """``text`` as matching tokens (folded, stemmed, with original offsets), in order.

    Hyphens, underscores and punctuation separate words; case, accents, compatibility
    forms and inflection do not matter: ``tokens("Self-Supervised Networks")`` gives
    the terms ``self``, ``supervis``, ``network``.
    """
    return [Token(stem(w), start, end, w) for w, start, end in words(text)]


def stem_all(folded_words: list[str]) -> list[str]:
    """``[stem(w) for w in folded_words]``, stemming the uncached words in one call."""
    cache = _stem_cache
    missing = [w for w in set(folded_words) if w not in cache]
    if missing:
        if len(cache) + len(missing) > _STEM_CACHE_MAX:
            cache.clear()
        cache.update(zip(missing, _stemmer().stemWords(missing), strict=True))
    # ``or stem(w)``: another thread may have cleared the cache since the update.
    get = cache.get
    return [get(w) or stem(w) for w in folded_words]
