"""Run every benchmark and print one table: ``python -m benchmarks [--quick] [NAME...]``.

NAME picks benchmarks by module suffix (ingest, match, render, deliver).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from benchmarks.common import Row, format_table


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    wanted = [a for a in argv if not a.startswith("-")]
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    rows: list[Row] = []
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows += module.run(quick=quick)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
