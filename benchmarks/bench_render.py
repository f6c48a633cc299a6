"""Digest rendering throughput: whole messages per second, ours against naive.

    python -m benchmarks.bench_render [--quick]

"Ours" is what a worker does per subscriber: a 10-paper digest context → subject,
text and HTML (templates whose CSS was inlined once, at load) → EmailMessage → MIME
bytes. The baseline is the same pipeline with the common naive step, running
``premailer.transform`` over every email's HTML (same templates, same settings,
output proven equivalent by tests/digest/test_render.py), measured in the same run.

Workloads. *Daily-run mix*: the digests a real run sends — 2,000 generated profiles
(benchmarks/bench_match.py) matched against 500 papers, each subscriber's top 10 —
so a paper card recurs as often as it does in a run, and the card cache
(newsletter/digest/render.py) works as it does in production; the note gives its hit
rate. *Cold*: the same messages with every cache emptied before each one, so every
card is rendered: the worst case, a run where no two subscribers share a card. One
process, one thread: one core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Row, format_table, peak_rss_mb, stopwatch
from newsletter.digest.message import build_message, message_bytes
from newsletter.digest.render import (
    DigestPaper,
    Recipient,
    Rendered,
    build_digest_context,
    render_email,
    render_email_premailer,
)

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "emails" / "sample_papers.json"
PAPERS_PER_DIGEST = 10
DISTINCT_DIGESTS = 64
DATE = datetime(2024, 7, 30, 7, 0, tzinfo=UTC)


def sample_papers() -> list[DigestPaper]:
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return [
        DigestPaper(
            title=p["title"],
            abstract=p["abstract"],
            authors=tuple(p["authors"]),
            arxiv_id=p["arxiv_id"],
            url=p["url"],
            score=p["score"],
            matched=tuple(p["matched"]),
            title_spans=tuple((a, b) for a, b in p["title_spans"]),
            abstract_spans=tuple((a, b) for a, b in p["abstract_spans"]),
        )
        for p in data["papers"]
    ]


def digest_inputs(count: int) -> list[tuple[Recipient, list[DigestPaper]]]:
    """``count`` distinct (recipient, 10 ranked papers) pairs: rotated paper lists."""
    papers = sample_papers()
    out = []
    for i in range(count):
        rotated = papers[i % len(papers) :] + papers[: i % len(papers)]
        recipient = Recipient(
            email=f"reader{i}@example.org",
            profile=f'equivari*, "optimal transport", diffusion, topic{i}',
            unsubscribe_url=f"https://papers.example.org/u/token{i:06d}",
            preferences_url=f"https://papers.example.org/p/token{i:06d}",
        )
        out.append((recipient, rotated[:PAPERS_PER_DIGEST]))
    return out


def context_of(recipient: Recipient, papers: list[DigestPaper], i: int) -> dict[str, Any]:
    return build_digest_context(
        recipient,
        papers,
        period_label="Tuesday 30 July 2024",
        web_url=f"https://papers.example.org/d/web{i:06d}",
        site_name="Paper Digest",
    )


def message(rendered: Rendered, i: int) -> bytes:
    msg = build_message(
        rendered,
        sender="Paper Digest <digest@papers.example.org>",
        to=f"reader{i}@example.org",
        message_id=f"<digest.{i}.D2024-07-30@papers.example.org>",
        date=DATE,
        list_id="Paper Digest <digest.papers.example.org>",
    )
    return message_bytes(msg)


def rates(works: list[tuple[Callable[[int], object], int]], repeats: int) -> list[float]:
    """Calls per second of each ``(work, count)``: the best of ``repeats`` rounds of
    ``count`` calls. Rounds alternate between the works, so a burst of load from
    other processes on a shared machine cannot favour one side of a comparison
    (works that share caches are timed in separate calls)."""
    best = [float("inf")] * len(works)
    for _ in range(repeats):
        for k, (work, count) in enumerate(works):
            with stopwatch() as elapsed:
                for i in range(count):
                    work(i)
            best[k] = min(best[k], elapsed[0] / count)
    return [1 / seconds for seconds in best]


def machine_speed_us() -> float:
    """µs for sum(range(1000)): ~8 on a 2020s laptop core, to read the figures by."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(2000):
            sum(range(1000))
        best = min(best, (time.perf_counter() - start) / 2000)
    return best * 1e6


def daily_mix(count: int) -> list[dict[str, Any]]:
    """``count`` digest contexts as a daily run makes them: generated profiles
    matched against 500 papers, each subscriber's 10 best papers (the cards repeat
    across subscribers as much as in a run)."""
    import random

    from benchmarks.bench_match import make_papers, make_profiles
    from newsletter.matching.match import PaperIndex, match_many
    from newsletter.subscribers.query import CompiledProfile, compile_many

    rnd = random.Random(7)
    papers = make_papers(500, rnd)
    texts = make_profiles(count * 2, papers, rnd)
    compiled = compile_many(texts)
    profiles = {i: c for i, t in enumerate(texts) if isinstance(c := compiled[t], CompiledProfile)}
    matches = match_many(profiles, PaperIndex.build(papers))
    by_key = {p.key: p for p in papers}
    contexts: list[dict[str, Any]] = []
    for i, found in list(matches.items())[:count]:
        digest = []
        for m in found[:PAPERS_PER_DIGEST]:
            p = by_key[m.paper_key]
            digest.append(
                DigestPaper(
                    title=p.title,
                    abstract=p.abstract,
                    authors=tuple(f"Author {(p.key + k) % 97} Name" for k in range(1 + p.key % 7)),
                    arxiv_id=f"2407.{10000 + p.key}",
                    url=None,
                    score=m.score,
                    matched=m.matched,
                    title_spans=m.title_spans,
                    abstract_spans=m.abstract_spans,
                )
            )
        recipient = Recipient(
            email=f"reader{i}@example.org",
            profile=texts[i],
            unsubscribe_url=f"https://papers.example.org/u/token{i:06d}",
            preferences_url=f"https://papers.example.org/p/token{i:06d}",
        )
        contexts.append(context_of(recipient, digest, i))
    return contexts


def _clear_caches() -> None:
    from newsletter.digest.context import _paper_fields
    from newsletter.digest.render import _environment

    _paper_fields.cache_clear()
    _environment(True).filters["card"].clear()


def run(quick: bool = False) -> list[Row]:
    contexts = daily_mix(500 if quick else 2000)
    n = len(contexts)
    count, naive_count, repeats = (200, 5, 2) if quick else (2000, 15, 5)

    def ours(i: int) -> bytes:
        return message(render_email("digest", contexts[i % n]), i)

    def cold(i: int) -> bytes:
        _clear_caches()
        return message(render_email("digest", contexts[i % n]), i)

    def naive(i: int) -> bytes:
        return message(render_email_premailer("digest", contexts[i % n]), i)

    rendered = [render_email("digest", c) for c in contexts]

    def render_only(i: int) -> Rendered:
        return render_email("digest", contexts[i % n])

    def render_naive(i: int) -> Rendered:
        return render_email_premailer("digest", contexts[i % n])

    def bytes_ours(i: int) -> bytes:
        return message(rendered[i % n], i)

    def bytes_stdlib(i: int) -> bytes:
        msg = build_message(
            rendered[i % n],
            sender="Paper Digest <digest@papers.example.org>",
            to=f"reader{i}@example.org",
            message_id=f"<digest.{i}.D2024-07-30@papers.example.org>",
            date=DATE,
            list_id="Paper Digest <digest.papers.example.org>",
        )
        return msg.as_bytes()

    ours(0), naive(0)  # load and compile templates, inline the CSS: once per process
    html_kb = sum(len(r.html.encode()) for r in rendered) / n / 1024
    mime_kb = len(ours(0)) / 1024
    cards = [
        (p["title_text"], p["matched"], p["excerpt"], p["title"])
        for c in contexts
        for p in c["papers"]
    ]
    distinct = len({json.dumps(c) for c in cards})
    speed = machine_speed_us()

    # Each path on its own: interleaving them would let the cold path empty the
    # caches in the middle of ours. The first round fills the caches, as the first
    # digests of a run do.
    _clear_caches()
    (full,) = rates([(ours, count)], repeats)
    (full_cold,) = rates([(cold, count // 4)], repeats)
    (full_naive,) = rates([(naive, naive_count)], repeats)
    render_ours, render_base = rates([(render_only, count), (render_naive, naive_count)], repeats)
    mime_ours, mime_base = rates([(bytes_ours, count), (bytes_stdlib, count // 4)], repeats)
    rows = [
        Row(
            "digest message, 10 papers, daily-run mix (context → HTML+text → MIME bytes)",
            full,
            "messages/s",
            full_naive,
            "premailer.transform on every email",
            "≥ 2,000/s and ≥ 20× naive",
            f"{n:,} digests, {len(cards):,} cards of which {distinct:,} distinct; "
            f"HTML {html_kb:.1f} KB, MIME {mime_kb:.1f} KB; "
            f"machine: sum(range(1000)) = {speed:.1f} µs",
        ),
        Row(
            "same, cold: caches emptied before every message",
            full_cold,
            "messages/s",
            full_naive,
            "premailer.transform on every email",
            note="every card rendered: no two subscribers share one",
        ),
        Row(
            "render only (context → subject, text, HTML)",
            render_ours,
            "emails/s",
            render_base,
            "premailer.transform on every email",
        ),
        Row(
            "MIME only (Rendered → EmailMessage → bytes)",
            mime_ours,
            "messages/s",
            mime_base,
            "same EmailMessage, stdlib as_bytes()",
            note=f"peak RSS {peak_rss_mb():.0f} MB",
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    print(format_table(run(quick=parser.parse_args().quick)))


if __name__ == "__main__":
    main()
