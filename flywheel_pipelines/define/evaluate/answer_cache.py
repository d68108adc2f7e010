"""Answers a model already gave, kept so that evaluation asks each model each question once.

Every turn scores the base model and the champion again beside the candidate, on the same questions with the same
settings and seeds: their answers cannot have changed, so they come from here, and only the new adapter generates.
A key is the model's fingerprint (its weights and configuration files, the dtype) with the generation call (kind,
settings, every prompt in order): anything different misses. SQLite, one file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

# Files above this size are fingerprinted by name, size and modification time, not content (base model weights).
_HASHED_BYTES = 64 << 20


def model_fingerprint(base_model_path: str | Path, adapter_path: str | Path | None, dtype: str) -> str:
    digest = hashlib.sha256(dtype.encode())
    for folder in (base_model_path, adapter_path):
        if folder is None:
            digest.update(b"-")
            continue
        for path in sorted(Path(folder).iterdir()):
            if not path.is_file() or path.suffix not in (".json", ".safetensors", ".bin", ".model", ".txt"):
                continue
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0".encode())
            if stat.st_size <= _HASHED_BYTES:
                digest.update(path.read_bytes())
            else:
                digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()


class AnswerCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answers TEXT NOT NULL)")
        self.hits = self.misses = 0

    def get_or_generate(self, model: str, call: dict, generate: Callable[[], list]) -> list:
        key = hashlib.sha256(json.dumps([model, call], sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        row = self._db.execute("SELECT answers FROM answers WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.hits += 1
            return json.loads(row[0])
        self.misses += 1
        answers = generate()
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(answers)))
        return answers

    def close(self) -> None:
        self._db.close()
