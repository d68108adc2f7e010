"""Crawl + extract + validate the running interpreter's standard library, against bare `ast.parse` of the same
files, both measured in this run. Goal: at most 2.0x the bare parse time on 2 cores.

    .venv/bin/python bench/crawl_stdlib.py [--workers 2]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import sysconfig
import time
from pathlib import Path

from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.crawl import crawl
from flywheel_pipelines.discover.sources import Snapshot, SourceSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    spec = SourceSpec(name="stdlib", path=stdlib, languages=frozenset({"python"}))

    started = time.perf_counter()
    crawled = crawl(Snapshot("stdlib", stdlib), spec)
    units = extract_code_units(crawled.files, workers=args.workers)
    ours_s = time.perf_counter() - started

    # The baseline reads and parses the very same files, and nothing else.
    started = time.perf_counter()
    for f in crawled.files:
        with contextlib.suppress(SyntaxError):
            ast.parse((stdlib / f["path"]).read_bytes())
    bare_s = time.perf_counter() - started

    size_mb = sum(f["size_bytes"] for f in crawled.files) / 1e6
    print(f"stdlib: {stdlib}  files: {len(crawled.files)} ({size_mb:.1f} MB)  workers: {args.workers}")
    print(f"code units: {len(units.units)}  quarantined: {len(crawled.quarantined) + len(units.quarantined)}")
    print(f"bare ast.parse:                  {bare_s:6.2f} s")
    print(f"crawl + extract + validate:      {ours_s:6.2f} s")
    print(f"ratio to bare parse:             {ours_s / bare_s:6.2f}x  (goal <= 2.0x)")


if __name__ == "__main__":
    main()
