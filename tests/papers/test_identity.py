from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from newsletter.papers.identity import (
    find_arxiv_id_in_text,
    keys_for,
    normalise_doi,
    normalise_title,
    parse_arxiv_id,
    title_fingerprint,
)
from newsletter.papers.records import PaperRecord


def test_arxiv_ids_new_and_old_style() -> None:
    assert parse_arxiv_id("http://arxiv.org/abs/2202.12139v1") == ("2202.12139", 1)
    assert parse_arxiv_id("oai:arXiv.org:2401.01234v12") == ("2401.01234", 12)
    assert parse_arxiv_id("https://arxiv.org/pdf/0704.0001") == ("0704.0001", None)
    assert parse_arxiv_id("arXiv:hep-th/9901001v3") == ("hep-th/9901001", 3)
    assert parse_arxiv_id("http://arxiv.org/abs/math.GT/0309136v2") == ("math.GT/0309136", 2)
    assert parse_arxiv_id("no id here") is None
    assert parse_arxiv_id("12345.67890") is None  # too many digits before the dot


def test_arxiv_id_in_free_text_needs_context() -> None:
    assert find_arxiv_id_in_text("Code at arXiv:2401.01234v2.") == ("2401.01234", 2)
    assert find_arxiv_id_in_text("we got 1234.5678 points") is None


def test_doi_normalised() -> None:
    assert normalise_doi("https://doi.org/10.1109/ICSTW55395.2022.00035") == (
        "10.1109/icstw55395.2022.00035"
    )
    assert normalise_doi("doi:10.1000/XYZ123).") == "10.1000/xyz123"
    assert normalise_doi("nothing") is None


def test_keys_strongest_first() -> None:
    rec = PaperRecord(title="Attention Is All You Need", arxiv_id="1706.03762", doi="10.1/ABC")
    keys = keys_for(rec)
    assert keys[0] == "arxiv:1706.03762"
    assert keys[1] == "doi:10.1/abc"
    assert keys[2].startswith("title:")
    assert keys_for(PaperRecord(title="Attention is all you need!"))[0] == keys[2]


def test_title_normalisation() -> None:
    assert normalise_title("  Naïve  Bayes: a SELF-supervised—Study!! ") == (
        "naive bayes a self supervised study"
    )
    assert title_fingerprint("") is None
    assert title_fingerprint("?!") is None


_title_words = st.lists(
    st.text(alphabet=string.ascii_letters + "éüñçà", min_size=1, max_size=10),
    min_size=1,
    max_size=8,
)


@given(_title_words, st.data())
def test_fingerprint_invariant_under_case_accents_space_punctuation(
    words: list[str], data: st.DataObject
) -> None:
    base = " ".join(words)
    variant_words = []
    for w in words:
        w2 = data.draw(st.sampled_from([w, w.upper(), w.lower(), w.swapcase()]))
        # Fold accents by hand for the variant: é → e etc.
        w2 = w2.translate(str.maketrans("éüñçàÉÜÑÇÀ", "euncaEUNCA"))
        variant_words.append(w2)
    seps = data.draw(
        st.lists(
            st.sampled_from([" ", "  ", " - ", ": ", "\t", ", ", "\n"]),
            min_size=len(words) - 1,
            max_size=len(words) - 1,
        )
    )
    variant = variant_words[0] + "".join(
        s + w for s, w in zip(seps, variant_words[1:], strict=True)
    )
    variant = (
        data.draw(st.sampled_from(["", " ", "“"]))
        + variant
        + data.draw(st.sampled_from(["", ".", "?", " !", "”"]))
    )
    assert title_fingerprint(base) == title_fingerprint(variant)
