"""newsletter.gc_tuning: the collector settings around bulk work."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from newsletter.gc_tuning import RELAXED_THRESHOLDS, relaxed_gc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, trims glibc")
def test_release_memory_hands_freed_heap_back() -> None:
    """Freed memory among survivors (what planning leaves behind) stays resident
    until release_memory() trims it: glibc gives back only a free top of its heap
    on its own."""
    code = """
from newsletter.gc_tuning import release_memory
def rss():
    status = open("/proc/self/status").read().split("VmRSS:")[1]
    return int(status.split()[0]) // 1024
blobs = [bytes(4000) + i.to_bytes(4, "little") for i in range(50_000)]
keep = blobs[::64]  # survivors spread over the heap
del blobs
before = rss()
release_memory()
print(before, rss())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before >= 150  # ~200 MB of 4 kB objects were freed, yet still resident
    assert after <= before - 100


def test_relaxed_gc_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with relaxed_gc():
        assert gc.get_threshold() == RELAXED_THRESHOLDS
    assert gc.get_threshold() == before
