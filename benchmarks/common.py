"""Shared benchmark plumbing: every benchmark returns rows, one command prints them.

A row puts our figure next to a naive baseline measured in the same run, because
ratios hold on a noisy machine and absolute times do not.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    """One line of the benchmark table.

    ``ours`` and ``baseline`` are in ``unit`` (higher is better for rates such as
    papers/s; say so in ``unit``). ``baseline`` is None where no baseline applies.
    ``target`` is the issue's target in words, ``note`` anything worth knowing
    (peak memory, sizes).
    """

    name: str
    ours: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    note: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or self.ours == 0:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (perf_counter)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """Peak resident memory of the largest finished child process, in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class TreeMemory:
    """Peak of the memory this process and all its descendants use together (the sum
    of their proportional set sizes, so pages shared after a fork count once),
    sampled twice a second over a block. The database server and the kernel's file
    cache are not counted."""

    def __init__(self, interval: float = 0.5) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_mb = 0.0

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, tree_pss_mb(os.getpid()))
            if self._stop.wait(self._interval):
                return


def tree_pss_mb(root: int) -> float:
    """The summed PSS of ``root`` and its descendants, in MiB (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue  # exited meanwhile
    return total_kb / 1024


def format_table(rows: list[Row]) -> str:
    """A plain-text table, one row per measurement, ratio column = ours vs baseline."""
    headers = ["benchmark", "ours", "baseline", "×", "unit", "target", "note"]
    body = []
    for r in rows:
        ratio = r.ratio
        body.append(
            [
                r.name,
                f"{r.ours:,.1f}",
                "" if r.baseline is None else f"{r.baseline:,.1f} ({r.baseline_name})",
                "" if ratio is None else f"{ratio:,.1f}×",
                r.unit,
                r.target,
                r.note,
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)
