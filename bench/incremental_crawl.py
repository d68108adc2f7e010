"""Incremental re-run after one commit to a generated 1,000-file git repository, against the full first crawl
(clone + crawl + code units), both measured in this run. Goal: the re-run takes at most 5% of the full time.

    .venv/bin/python bench/incremental_crawl.py [--files 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.crawl import crawl
from flywheel_pipelines.discover.sources import SourceSpec, checkout

MODULE = '''"""Generated module {i}."""

import math


class Shape{i}:
    """A shape with an area."""

    def __init__(self, size: float):
        self.size = size

    def area(self) -> float:
        """Area of the shape."""
        return math.pi * self.size ** 2 + {i}

    def scaled(self, factor: float) -> "Shape{i}":
        """A copy scaled by factor."""
        if factor <= 0:
            raise ValueError(factor)
        return Shape{i}(self.size * factor)


def total_area_{i}(shapes: list) -> float:
    """Sum of the areas."""
    return sum(s.area() for s in shapes)
'''


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def discover(spec: SourceSpec, clones: Path, previous_files: list, previous_units: list) -> tuple[list, list]:
    snapshot = checkout(spec, clones)
    files = crawl(snapshot, spec, previous_files).files
    return files, extract_code_units(files, previous_units, workers=2).units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo, clones = Path(tmp) / "repo", Path(tmp) / "clones"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        for i in range(args.files):
            (repo / f"pkg{i % 20}").mkdir(exist_ok=True)
            (repo / f"pkg{i % 20}" / f"mod{i}.py").write_text(MODULE.format(i=i))
        git(repo, "add", ".")
        git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "generated")
        spec = SourceSpec(name="generated", git=f"file://{repo}", ref="main")

        started = time.perf_counter()
        files, units = discover(spec, clones, [], [])
        full_s = time.perf_counter() - started

        changed = repo / "pkg7" / "mod7.py"
        changed.write_text(changed.read_text().replace("+ 7", "+ 77"))
        git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "one change")

        started = time.perf_counter()
        _, units2 = discover(spec, clones, files, units)
        incremental_s = time.perf_counter() - started

    print(f"repository: {args.files} files, {len(units)} code units; one file changed in the second commit")
    print(f"full crawl (clone + crawl + units):   {full_s:6.2f} s")
    print(f"incremental re-run after the commit:  {incremental_s:6.2f} s")
    print(f"ratio incremental/full:               {incremental_s / full_s:6.1%}  (goal <= 5%)")
    assert len(units2) == len(units), "the re-run lost or duplicated units"


if __name__ == "__main__":
    main()
