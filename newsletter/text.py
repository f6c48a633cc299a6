"""Text normalisation shared by paper identity, ingest and the profile matcher.

One place decides what "the same text" means, so a title fingerprint and a profile
term are folded by the same rules: Unicode NFKC, accents removed, casefolded.
"""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")


def fold(text: str) -> str:
    """NFKC-normalise, strip accents and casefold: ``"Naïve ＦＯＯ"`` → ``"naive foo"``.

    Accents are stripped by decomposing (NFKD) and dropping combining marks, then the
    result is recomposed (NFKC) so ligatures and full-width forms are folded too.
    Characters with no ASCII base (ß, ø, Greek) keep their folded form.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", stripped).casefold()


def collapse_ws(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return _WS.sub(" ", text).strip()
