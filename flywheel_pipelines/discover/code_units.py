"""Discover, step 1: crawled files -> code units in every supported language, tests paired with what they test.

Files are parsed in parallel processes when there are many; a file whose content hash is unchanged keeps the
units it had, without being parsed again.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from flywheel_pipelines.discover.pairing import pair_tests
from flywheel_pipelines.discover.python_units import extract_python_units
from flywheel_pipelines.discover.quarantine import Quarantined

CODE_LANGUAGES = frozenset({"python", "java", "kotlin", "typescript", "javascript", "go"})
# Below this many files a process pool costs more than it saves.
_PARALLEL_FROM_FILES = 64


@dataclass
class CodeUnitsResult:
    units: list[dict]
    quarantined: list[Quarantined] = field(default_factory=list)
    parsed_files: int = 0
    reused_files: int = 0


def extract_file(text: str, source: str, path: str, language: str, sha256: str) -> tuple[list[dict], list]:
    if language == "python":
        return extract_python_units(text, source, path, sha256)
    from flywheel_pipelines.discover.treesitter_units import extract_treesitter_units

    return extract_treesitter_units(text, source, path, language, sha256)


def _extract_batch(batch: Sequence[tuple[str, str, str, str, str]]) -> tuple[list[dict], list[Quarantined]]:
    units: list[dict] = []
    rejected: list[Quarantined] = []
    for text, source, path, language, sha256 in batch:
        try:
            got, bad = extract_file(text, source, path, language, sha256)
        except Exception as err:  # a parser bug must cost one file, never the run
            got, bad = [], [Quarantined(source, path, "code_units", f"extractor failed: {type(err).__name__}: {err}")]
        units.extend(got)
        rejected.extend(bad)
    return units, rejected


def extract_code_units(files: Iterable[dict], previous_units: Iterable[dict] = (), workers: int = 1) -> CodeUnitsResult:
    """Code units of every code file in `files`; files unchanged since `previous_units` keep theirs (the very
    records passed in, re-paired)."""
    before: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for unit in previous_units:
        before[(unit["path"], unit["file_sha256"])].append(unit)
    result = CodeUnitsResult(units=[])
    todo: list[tuple[str, str, str, str, str]] = []
    for f in files:
        if f["language"] not in CODE_LANGUAGES:
            continue
        kept = before.get((f["path"], f["sha256"]))
        if kept:
            result.units.extend(kept)  # pair_tests below gives test units fresh `tested_units` lists
            result.reused_files += 1
        else:
            todo.append((f["text"], f["source"], f["path"], f["language"], f["sha256"]))
    result.parsed_files = len(todo)
    for units, rejected in _run(todo, workers):
        result.units.extend(units)
        result.quarantined.extend(rejected)
    result.units.sort(key=lambda u: (u["path"], u["start_line"], u["qualified_name"]))
    pair_tests(result.units)
    return result


def _run(todo: list[tuple[str, str, str, str, str]], workers: int) -> Iterable[tuple[list[dict], list]]:
    if workers <= 1 or len(todo) < _PARALLEL_FROM_FILES:
        yield _extract_batch(todo)
        return
    # Many small batches keep both workers busy to the end; spawn, because the caller may hold threads.
    size = max(8, len(todo) // (workers * 8))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_extract_batch, batches)
