"""Discover, step 1: walk the configured sources and record each readable text file with its content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from flywheel_pipelines.schemas import validation_errors

MAX_FILE_BYTES = 1_000_000
LANGUAGE_BY_SUFFIX = {
    ".py": "python",
    ".java": "java",
    ".kt": "kotlin",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".js": "javascript",
    ".go": "go",
    ".md": "markdown",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
}
# Folders that are never an organisation's own code.
SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".tox"}


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    include: tuple[str, ...] = ("**/*.py",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedFile:
    source: str
    path: str
    reason: str


@dataclass
class CrawlResult:
    files: list[dict]
    skipped: list[SkippedFile]


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(filenames):
            yield Path(dirpath) / filename


def read_text_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None]:
    """(text, None) for a UTF-8 text file, else (None, reason to skip it)."""
    size = path.stat().st_size
    if size > max_bytes:
        return None, f"larger than {max_bytes} bytes ({size})"
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None, "binary (NUL byte)"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 ({err.reason} at byte {err.start})"


def crawl_source(source: Source) -> CrawlResult:
    if not source.root.is_dir():
        raise FileNotFoundError(f"source {source.name!r}: folder not found: {source.root}")
    include = pathspec.PathSpec.from_lines("gitwildmatch", source.include)
    exclude = pathspec.PathSpec.from_lines("gitwildmatch", source.exclude)
    files: list[dict] = []
    skipped: list[SkippedFile] = []
    for path in _walk(source.root):
        rel = path.relative_to(source.root).as_posix()
        if not include.match_file(rel) or exclude.match_file(rel) or not path.is_file():
            continue
        text, reason = read_text_file(path)
        if text is None:
            skipped.append(SkippedFile(source.name, rel, reason or "unreadable"))
            continue
        record = {
            "source": source.name,
            "path": rel,
            "language": LANGUAGE_BY_SUFFIX.get(path.suffix.lower(), "text"),
            "size_bytes": len(text.encode("utf-8")),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "text": text,
        }
        if errors := validation_errors("crawled_file", record):
            skipped.append(SkippedFile(source.name, rel, "; ".join(errors)))
            continue
        files.append(record)
    return CrawlResult(files, skipped)


def crawl_sources(sources: Iterable[Source]) -> CrawlResult:
    result = CrawlResult([], [])
    for source in sources:
        one = crawl_source(source)
        result.files.extend(one.files)
        result.skipped.extend(one.skipped)
    return result
