"""Deduplicate the running interpreter's standard library code units, then check the MinHash LSH against the
exact answer (all pairs' Jaccard over the same shingle sets) on a seeded sample, both measured in this run.
Goal: recall of near-duplicate pairs >= 0.95.

    .venv/bin/python bench/dedup_stdlib.py [--workers 2] [--sample 3000] [--seed 0]

The sample is made of whole files, drawn at random (seeded) until it holds `--sample` units: near duplicates
cluster in files and packages (test variants, codec tables), so a sample of single units would hold almost no
pairs to measure recall on.
"""

from __future__ import annotations

import argparse
import random
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.crawl import crawl
from flywheel_pipelines.discover.dedup import (
    DEFAULT_NUM_PERM,
    DEFAULT_SHINGLE,
    DEFAULT_THRESHOLD,
    deduplicate,
    lsh_params,
    near_duplicate_pairs,
    removed_counts,
    unit_shingles,
)
from flywheel_pipelines.discover.sources import Snapshot, SourceSpec


def sample_by_file(units: list[dict], size: int, seed: int) -> list[dict]:
    by_file: dict[str, list[dict]] = defaultdict(list)
    for unit in units:
        by_file[unit["path"]].append(unit)
    paths = sorted(by_file)
    random.Random(seed).shuffle(paths)
    sample: list[dict] = []
    for path in paths:
        if len(sample) >= size:
            break
        sample.extend(by_file[path])
    return sample


def exact_pairs(units: list[dict], threshold: float, shingle: int) -> tuple[set[tuple[str, str]], set]:
    """Every pair with Jaccard >= threshold, by comparing all pairs; also the pairs with identical sets."""
    sets = [frozenset(s.tolist()) for s in unit_shingles(units, shingle)]
    ids = [u["unit_id"] for u in units]
    found: set[tuple[str, str]] = set()
    identical: set[tuple[str, str]] = set()
    for i, a in enumerate(sets):
        if not a:
            continue
        for j in range(i + 1, len(sets)):
            b = sets[j]
            inter = len(a & b)
            if inter and inter >= threshold * (len(a) + len(b) - inter):
                pair = (ids[i], ids[j]) if ids[i] <= ids[j] else (ids[j], ids[i])
                found.add(pair)
                if a == b:
                    identical.add(pair)
    return found, identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    threshold, num_perm, shingle = DEFAULT_THRESHOLD, DEFAULT_NUM_PERM, DEFAULT_SHINGLE

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    spec = SourceSpec(name="stdlib", path=stdlib, languages=frozenset({"python"}))
    crawled = crawl(Snapshot("stdlib", stdlib), spec)
    units = extract_code_units(crawled.files, workers=args.workers).units

    started = time.perf_counter()
    result = deduplicate(units, threshold, num_perm, shingle, workers=args.workers)
    dedup_s = time.perf_counter() - started
    exact_removed, near_removed = removed_counts(result)
    bands, rows = lsh_params(threshold, num_perm)
    print(f"stdlib: {stdlib}  workers: {args.workers}")
    print(
        f"method: {shingle}-token shingles, num_perm {num_perm}, LSH {bands} bands x {rows} rows, "
        f"jaccard >= {threshold} (exact, on LSH candidates)"
    )
    print(f"code units:                      {len(units)}")
    print(f"exact duplicates removed:        {exact_removed}")
    print(f"near duplicates removed:         {near_removed}")
    print(f"kept:                            {len(result.kept)}")
    print(f"deduplicate:                     {dedup_s:6.2f} s")

    sample = sample_by_file(units, args.sample, args.seed)
    started = time.perf_counter()
    exact, identical = exact_pairs(sample, threshold, shingle)
    pairwise_s = time.perf_counter() - started
    started = time.perf_counter()
    lsh = near_duplicate_pairs(sample, threshold, num_perm, shingle)
    lsh_s = time.perf_counter() - started

    hits = lsh & exact
    recall = len(hits) / len(exact) if exact else 1.0
    not_identical = exact - identical
    recall_not_identical = len(hits & not_identical) / len(not_identical) if not_identical else 1.0
    precision = len(hits) / len(lsh) if lsh else 1.0
    files = len({u["path"] for u in sample})
    n = len(sample)
    print(f"sample: {n} units from {files} files (seed {args.seed})")
    print(f"exact pairs (jaccard >= {threshold}):  {len(exact)}  ({len(not_identical)} not identical sets)")
    print(f"LSH pairs:                       {len(lsh)}")
    print(f"pairwise jaccard, all pairs:     {pairwise_s:6.2f} s  (shingling included)")
    print(f"MinHash LSH:                     {lsh_s:6.2f} s  (shingling included)")
    print(f"time ratio LSH / pairwise:       {lsh_s / pairwise_s:6.3f}")
    print(f"pairwise on all units (n^2):     ~{pairwise_s * (len(units) / n) ** 2:,.0f} s estimated")
    print(f"recall:                          {recall:6.3f}  (goal >= 0.95)")
    print(f"recall, not identical sets:      {recall_not_identical:6.3f}")
    print(f"precision:                       {precision:6.3f}")


if __name__ == "__main__":
    main()
