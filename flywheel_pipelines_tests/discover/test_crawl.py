"""Step 1: a source folder is crawled into file records; what cannot be read is skipped with a reason."""

from pathlib import Path

import pytest

from flywheel_pipelines.discover.crawl import Source, crawl_source, crawl_sources
from flywheel_pipelines.schemas import validation_errors


def make_repo(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "service.py").write_text("def f():\n    return 1\n")
    (root / "pkg" / "notes.md").write_text("# notes\n")
    (root / "pkg" / "blob.py").write_bytes(b"\x00\x01binary")
    (root / "pkg" / "latin.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    (root / "pkg" / "generated_pb2.py").write_text("X = 1\n")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "dep.py").write_text("def dep(): pass\n")
    return root


def test_python_files_are_recorded_with_language_size_and_hash(tmp_path: Path):
    result = crawl_source(Source("repo", make_repo(tmp_path), ("**/*.py",), ("**/*_pb2.py",)))
    by_path = {f["path"]: f for f in result.files}
    assert set(by_path) == {"pkg/service.py"}
    record = by_path["pkg/service.py"]
    assert record["language"] == "python" and record["size_bytes"] == len("def f():\n    return 1\n")
    assert len(record["sha256"]) == 64 and not validation_errors("crawled_file", record)


def test_binary_and_non_utf8_files_are_skipped_with_the_reason(tmp_path: Path):
    result = crawl_source(Source("repo", make_repo(tmp_path), ("**/*.py",)))
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons["pkg/blob.py"].startswith("binary")
    assert reasons["pkg/latin.py"].startswith("not UTF-8")
    assert not any(f["path"].startswith(".venv") for f in result.files)


def test_same_content_gives_the_same_hash_across_sources(tmp_path: Path):
    a, b = make_repo(tmp_path / "a"), make_repo(tmp_path / "b")
    result = crawl_sources([Source("a", a, ("**/*.py",)), Source("b", b, ("**/*.py",))])
    hashes = {(f["source"], f["path"]): f["sha256"] for f in result.files}
    assert hashes[("a", "pkg/service.py")] == hashes[("b", "pkg/service.py")]


def test_a_missing_source_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="source 'gone'"):
        crawl_source(Source("gone", tmp_path / "nope"))
