"""The cyclic garbage collector around bulk work: one place for how we tune it.

Our bulk phases (compiling profiles, matching, planning, delivering) allocate many
small objects that live long (caches, compiled trees, rows) and form few cycles. For
CPython's generational collector that is the worst case: young collections keep
promoting survivors and full collections re-scan the whole grown heap. Reference
counting still frees whatever dies; these helpers only change how often the cycle
collector looks.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["RELAXED_THRESHOLDS", "paused_gc", "relaxed_gc", "release_memory"]

#: Collect the young generation every 50,000 net allocations instead of 700: a
#: delivery run's caches grow by thousands of objects per batch, and at the default
#: the collector took as long as decoding the rows it interrupted (measured on the
#: render helper's row loading: 254 → 137 µs a delivery).
RELAXED_THRESHOLDS = (50_000, 20, 20)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for a bulk build.

    Compiling many profiles, indexing a batch and matching many profiles allocate
    hundreds of thousands of small objects that survive (trees, postings, results)
    and form no reference cycles. That is the worst case for the generational
    collector: each full collection re-scans the whole growing heap, which measured
    at a quarter to a third of the matching benchmark. Reference counting still frees
    whatever dies. The previous state is restored; a collector found paused (by
    another thread) is left paused.

    On the way out, what the build left in the young generations is moved to the
    oldest one as is (``gc.freeze()`` then ``gc.unfreeze()``, two list splices):
    otherwise the first allocation after re-enabling collects the young generation,
    which is now the whole build, and then the next generation again (0.1–0.2 s each
    for the benchmark's compiled profiles or matches). Garbage cycles among those
    objects, if any, are still found by the next full collection. Skipped when
    something else has frozen objects, which ``unfreeze`` would release.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect less often (:data:`RELAXED_THRESHOLDS`) for a long run that keeps
    allocating, such as a delivery run, where pausing the collector for minutes would
    let garbage cycles (tracebacks of handled errors, say) pile up. The previous
    thresholds are restored."""
    before = gc.get_threshold()
    gc.set_threshold(*RELAXED_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def release_memory() -> None:
    """After a burst of allocation that is over (planning), hand the freed heap back
    to the operating system: collect cycles, then ``malloc_trim`` (glibc; elsewhere
    only the collection). Python frees the objects but glibc keeps their pages, so
    the delivery that follows in the same process (``newsletter digest``), and a
    worker forked from it, would carry planning's peak for the whole run: measured
    on 100,000 subscribers, the planner's resident size drops from about 650 MB to
    about 320 MB."""
    gc.collect()
    with suppress(AttributeError, OSError):  # not glibc: nothing more to do
        ctypes.CDLL(None).malloc_trim(0)
