"""Discover: exact and near-duplicate code units removed before they become fine-tuning data.

Method
------
1. Normalise what a unit *is* -- its signature and body (decorators and docstring are separate fields and
   left out): comments dropped, whitespace folded, tokens separated by one space (`normalise`).
   Python is lexed with `tokenize` (a regex lexer when `tokenize` fails on a fragment), keeps one logical line
   per line with its indentation depth, drops string-only statements (docstrings of nested functions, stray
   string statements: they are documentation, not code content) and writes single-quoted strings with double
   quotes, as `black` does. Java, Kotlin, TypeScript, JavaScript and Go are lexed by one regex that matches
   string, text-block, template/raw and character literals before `//` and `/* */` comments, so `"http://x"`
   stays a string; their line breaks carry no meaning, so the result is one line. Another language only has
   its whitespace folded.
   In every language a comma right before a closing bracket is dropped (formatters add "magic" trailing
   commas); so `(x,)` and `(x)` normalise alike, a price paid for catching reformatted copies.
2. Exact duplicates: equal sha256 of the normalised text.
3. Near duplicates, across all sources: each unit's normalised text becomes the set of its k-token shingles
   (k = 5; a unit with fewer than k tokens is one shingle of all its tokens, so it only ever matches an
   identical token sequence). Shingles are hashed to 32 bits (token hashes are blake2b, so runs are
   reproducible across processes), sketched with `datasketch.MinHash` (num_perm = 128, fixed seed) and indexed
   by `datasketch.MinHashLSH`; two units are candidates when they share a bucket. The bands x rows are chosen
   so that a pair exactly at the Jaccard threshold (0.8) becomes a candidate with probability >= 0.98
   (`lsh_params`; 18 bands of 7 rows for the defaults -- datasketch's own optimum, 9 x 13, finds a pair at 0.8
   only 40% of the time). Every candidate pair is then verified with its *exact* Jaccard over the shingle
   sets, so no pair below the threshold is ever reported and the LSH only decides which pairs are looked at.
4. Clusters: exact groups, then connected components (union-find) of the verified near-duplicate pairs
   between the groups' representatives. A unit is never a duplicate of the unit that encloses it (a class
   with one method and that method): such pairs are ignored.

Keep rule
---------
Within each cluster the unit with the smallest (source, path, start_line, qualified_name) is kept (unit_id
breaks a tie) -- the same one whatever the order of the input. The others are removed with the reason
`exact duplicate of <unit_id>` or `near duplicate (jaccard 0.87) of <unit_id>` (the exact Jaccard with the
kept unit; in a chain A~B~C it can be below the threshold for C, which is linked to A through B).

Cost: lexing Python with `tokenize` is most of the time (about 3/4 on the standard library's 57,000 units);
`workers` > 1 spreads lexing, shingling and sketching over processes. See bench/dedup_stdlib.py.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import re
import tokenize
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations, repeat

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
DEFAULT_SHINGLE = 5
# Fixed so that sketches, and so the removed units, are the same in every run.
SEED = 1
# Explicit, so that stored sketches never mix with another datasketch default (2.0 changed it from "legacy").
_SCHEME = "affine32"
# Below this many units a process pool costs more than it saves.
_PARALLEL_FROM_UNITS = 2000
# Probability that a pair exactly at the threshold shares at least one LSH band (see `lsh_params`).
CANDIDATE_RECALL_AT_THRESHOLD = 0.98

C_LIKE = frozenset({"java", "kotlin", "typescript", "javascript", "go"})

# Strings first, so that comment markers inside them are text; then comments; then tokens.
_C_LEXEME = re.compile(
    r"""(?P<str>\"\"\"[\s\S]*?\"\"\"|`(?:\\[\s\S]|[^\\`])*`|"(?:\\.|[^\\"\n])*"|'(?:\\.|[^\\'\n])*')"""
    r"|(?P<com>//[^\n]*|/\*[\s\S]*?\*/)"
    r"|(?P<nl>\n)"
    r"|(?P<tok>\w+|[^\s\w])"
)
# Only used when `tokenize` rejects a Python fragment.
_PY_LEXEME = re.compile(
    r"""(?P<str>[rRbBuUfF]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))"""
    r"|(?P<com>\#[^\n]*)"
    r"|(?P<nl>\n)"
    r"|(?P<tok>\w+|[^\s\w])"
)
_CLOSERS = frozenset(")]}")
_SKIP_PY = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER})
_MASK32 = np.uint64(0xFFFFFFFF)


@dataclass
class DedupResult:
    kept: list[dict]
    removed: list[tuple[dict, str]] = field(default_factory=list)
    # removed units / all units, per source (0.0 for a source that lost nothing).
    removed_share_by_source: dict[str, float] = field(default_factory=dict)


# --- normalisation -------------------------------------------------------------------------------------------


def normalise(code: str, language: str) -> str:
    """`code` without comments and with whitespace folded: tokens separated by one space; Python keeps one
    logical line per line, indented by its depth, and loses string-only statements (docstrings)."""
    if language == "python":
        try:
            return _normalise_python(code)
        except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
            return _normalise_regex(code, _PY_LEXEME, python=True)
    if language in C_LIKE:
        return _normalise_regex(code, _C_LEXEME, python=False)
    return " ".join(code.split())


def _normalise_python(code: str) -> str:
    lines: list[str] = []
    line: list[str] = []
    only_strings = True
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        kind = tok.type
        if kind in _SKIP_PY:
            continue
        if kind == tokenize.INDENT:
            depth += 1
        elif kind == tokenize.DEDENT:
            depth -= 1
        elif kind == tokenize.NEWLINE:
            if line and not only_strings:
                lines.append("    " * depth + " ".join(line))
            line, only_strings = [], True
        elif kind == tokenize.STRING:
            line.append(_double_quoted(tok.string))
        else:
            _append_token(line, tok.string)
            only_strings = False
    if line and not only_strings:  # a fragment may end without NEWLINE
        lines.append("    " * depth + " ".join(line))
    return "\n".join(lines)


def _normalise_regex(code: str, lexeme: re.Pattern[str], python: bool) -> str:
    """Regex lexing: Python (fallback) keeps physical lines without indentation; C-like languages become one
    line, as their line breaks carry no meaning a formatter would keep."""
    lines: list[str] = []
    line: list[str] = []
    only_strings = True
    for match in lexeme.finditer(code):
        group = match.lastgroup
        if group == "com":
            continue
        if group == "nl":
            if python:
                if line and not only_strings:
                    lines.append(" ".join(line))
                line, only_strings = [], True
            continue
        if group == "str":
            line.append(_double_quoted(match.group()) if python else match.group())
        else:
            _append_token(line, match.group())
            only_strings = False
    if line and not (python and only_strings):
        lines.append(" ".join(line))
    return "\n".join(lines)


def _append_token(line: list[str], token: str) -> None:
    # A trailing comma before a closing bracket is formatter noise ("magic trailing comma").
    if token in _CLOSERS and line and line[-1] == ",":
        line.pop()
    line.append(token)


def _double_quoted(literal: str) -> str:
    """'abc' -> "abc" when that changes nothing else (no quote or backslash inside), as black writes strings."""
    body = literal.lstrip("rRbBuUfF")
    quotes = 6 if body.startswith("'''") else 2
    if not body.startswith("'") or '"' in body or "\\" in body or body.count("'") != quotes:
        return literal
    return literal[: len(literal) - len(body)].lower() + body.replace("'", '"')


def unit_text(unit: dict) -> str:
    """The normalised signature and body of a code unit: what exact and near duplicates are computed on."""
    language = unit["language"]
    return normalise(unit["signature"], language) + "\n" + normalise(unit["body"], language)


# --- shingles and sketches -----------------------------------------------------------------------------------


class _TokenHashes(dict):
    """token -> 64-bit blake2b hash, computed once per distinct token (Python's `hash` is salted per process)."""

    def __missing__(self, token: str) -> int:
        value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        self[token] = value
        return value


# Odd 64-bit multipliers, one per position in a shingle: a shingle's hash is sum(token_hash[i] * M[i]) mod 2^64.
_POSITION_MULTIPLIERS = np.random.default_rng(SEED).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


def _shingle_hashes(text: str, k: int, token_hashes: _TokenHashes) -> np.ndarray:
    """Sorted distinct 32-bit hashes of the k-token shingles of `text` (one shingle if it has fewer tokens)."""
    tokens = text.split()
    n = len(tokens)
    if n == 0:
        return np.empty(0, dtype=np.uint32)
    hashes = np.fromiter(map(token_hashes.__getitem__, tokens), dtype=np.uint64, count=n)
    width = min(k, n)
    windows = n - width + 1
    combined = np.zeros(windows, dtype=np.uint64)
    for i in range(width):  # vectorised over all windows; uint64 arithmetic wraps, which is the intended mod 2^64
        combined += hashes[i : i + windows] * _POSITION_MULTIPLIERS[i]
    return np.unique(((combined >> np.uint64(32)) ^ combined) & _MASK32).astype(np.uint32)


def unit_shingles(units: Sequence[dict], shingle: int = DEFAULT_SHINGLE) -> list[np.ndarray]:
    """Per unit, the sorted distinct hashes of its k-token shingles (the sets whose Jaccard is estimated)."""
    token_hashes = _TokenHashes()
    return [_shingle_hashes(unit_text(u), shingle, token_hashes) for u in units]


def lsh_params(threshold: float, num_perm: int, target: float = CANDIDATE_RECALL_AT_THRESHOLD) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest needless candidates) such that a pair with Jaccard exactly
    `threshold` shares at least one band with probability >= `target`: 1 - (1 - t^r)^b >= target."""
    best = (num_perm // 2, 2)  # datasketch needs at least 2 bands
    for rows in range(2, num_perm // 2 + 1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= target:
            best = (bands, rows)
    return best


@dataclass
class _Prepared:
    digests: list[str]  # sha256 of the normalised text
    shingles: list[np.ndarray]
    hashvalues: np.ndarray  # (units, num_perm) MinHash values


def _prepare_batch(batch: Sequence[tuple[str, str, str]], shingle: int, num_perm: int) -> _Prepared:
    token_hashes = _TokenHashes()
    digests: list[str] = []
    shingles: list[np.ndarray] = []
    for signature, body, language in batch:
        text = normalise(signature, language) + "\n" + normalise(body, language)
        digests.append(hashlib.sha256(text.encode()).hexdigest())
        shingles.append(_shingle_hashes(text, shingle, token_hashes))
    # The shingles are already 32-bit hashes: `int` as hash function hands them unchanged to MinHash's vectorised
    # permutation + min step (update_batch); MinHash.bulk builds the permutations once for the whole batch.
    sketches = MinHash.bulk((s.tolist() for s in shingles), num_perm=num_perm, seed=SEED, hashfunc=int, scheme=_SCHEME)
    hashvalues = np.stack([m.hashvalues for m in sketches]) if sketches else np.empty((0, num_perm), np.uint32)
    return _Prepared(digests, shingles, hashvalues)


def _prepare(units: Sequence[dict], shingle: int, num_perm: int, workers: int) -> _Prepared:
    """Digest, shingles and MinHash of every unit; in `workers` processes when there are many (lexing Python
    with `tokenize` is most of the time)."""
    todo = [(u["signature"], u["body"], u["language"]) for u in units]
    if workers <= 1 or len(todo) < _PARALLEL_FROM_UNITS:
        return _prepare_batch(todo, shingle, num_perm)
    size = max(256, len(todo) // (workers * 8))  # many batches keep every worker busy to the end
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    # spawn, because the caller may hold threads (as in code_units)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_prepare_batch, batches, repeat(shingle), repeat(num_perm)))
    return _Prepared(
        [d for p in parts for d in p.digests],
        [s for p in parts for s in p.shingles],
        np.concatenate([p.hashvalues for p in parts]),
    )


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def _near_pairs(
    shingles: Sequence[np.ndarray], hashvalues: np.ndarray, threshold: float, num_perm: int
) -> dict[tuple[int, int], float]:
    """Index pairs (i < j) whose exact Jaccard is >= threshold, among the candidates the LSH proposes."""
    present = [i for i, s in enumerate(shingles) if s.size]  # an empty unit is a duplicate only exactly
    if len(present) < 2:
        return {}
    sketches = {i: LeanMinHash(seed=SEED, hashvalues=hashvalues[i], scheme=_SCHEME) for i in present}
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=lsh_params(threshold, num_perm))
    with lsh.insertion_session() as session:
        for i, sketch in sketches.items():
            session.insert(i, sketch, check_duplication=False)
    # Candidates straight from the buckets: two units are candidates when they share a band. Walking the buckets
    # once costs less than querying the index with every sketch, which recomputes each band's key.
    candidates: set[tuple[int, int]] = set()
    for table in lsh.hashtables:
        for band in table:  # a datasketch Storage iterates over its keys
            bucket = table.get(band)
            if len(bucket) > 1:
                candidates.update(combinations(sorted(bucket), 2))
    pairs: dict[tuple[int, int], float] = {}
    for i, j in sorted(candidates):
        a, b = shingles[i], shingles[j]
        small, large = sorted((a.size, b.size))
        if small < threshold * large:  # Jaccard <= |small| / |large|: cannot reach the threshold
            continue
        similarity = _jaccard(a, b)
        if similarity >= threshold:
            pairs[(i, j)] = similarity
    return pairs


def near_duplicate_pairs(
    units: Sequence[dict],
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    *,
    workers: int = 1,
) -> set[tuple[str, str]]:
    """All (unit_id, unit_id) pairs, sorted within the tuple, whose shingle sets have Jaccard >= threshold as
    found by the LSH (identical sets included; no keep rule, no enclosing-unit exclusion)."""
    prepared = _prepare(units, shingle, num_perm, workers)
    # Identical sets are indexed once: groups of copies would otherwise fill the LSH buckets quadratically.
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, s in enumerate(prepared.shingles):
        if s.size:
            groups[s.tobytes()].append(i)
    members = list(groups.values())
    reps = [g[0] for g in members]
    ids = [u["unit_id"] for u in units]
    result: set[tuple[str, str]] = set()
    for group in members:
        result.update(_id_pair(ids[a], ids[b]) for x, a in enumerate(group) for b in group[x + 1 :])
    near = _near_pairs([prepared.shingles[r] for r in reps], prepared.hashvalues[reps], threshold, num_perm)
    for gi, gj in near:
        result.update(_id_pair(ids[a], ids[b]) for a in members[gi] for b in members[gj])
    return result


def _id_pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


# --- clusters and the keep rule ------------------------------------------------------------------------------


def _keep_key(unit: dict) -> tuple[str, str, int, str, str]:
    # unit_id last: two records with the same place and name still get one order, whatever the input order.
    return (unit["source"], unit["path"], unit["start_line"], unit["qualified_name"], unit["unit_id"])


def _encloses(a: dict, b: dict) -> bool:
    """One unit lies inside the other (a class and its method): not duplicates, whatever their text."""
    if (a["source"], a["path"]) != (b["source"], b["path"]):
        return False
    a_end, b_end = a.get("end_line", a["start_line"]), b.get("end_line", b["start_line"])
    return (a["start_line"] <= b["start_line"] and b_end <= a_end) or (
        b["start_line"] <= a["start_line"] and a_end <= b_end
    )


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]  # path halving keeps the trees flat
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def deduplicate(
    units: list[dict],
    threshold: float = DEFAULT_THRESHOLD,
    num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
    *,
    workers: int = 1,
) -> DedupResult:
    """Units without exact and near duplicates; kept and removed keep the input order (see the module doc for
    the method and the keep rule). `workers` > 1 lexes and sketches in that many processes."""
    prepared = _prepare(units, shingle, num_perm, workers)
    exact: dict[str, list[int]] = defaultdict(list)
    for i, digest in enumerate(prepared.digests):
        exact[digest].append(i)
    # Each exact group is represented by its smallest unit; near duplicates are searched between those.
    groups = [sorted(members, key=lambda i: _keep_key(units[i])) for members in exact.values()]
    reps = [g[0] for g in groups]
    shingles = [prepared.shingles[r] for r in reps]
    near = _near_pairs(shingles, prepared.hashvalues[reps], threshold, num_perm)
    clusters = _UnionFind(len(reps))
    for gi, gj in near:
        if not _encloses(units[reps[gi]], units[reps[gj]]):
            clusters.union(gi, gj)
    components: dict[int, list[int]] = defaultdict(list)
    for g in range(len(reps)):
        components[clusters.find(g)].append(g)

    reason: dict[int, str] = {}
    for component in components.values():
        keeper = min(component, key=lambda g: _keep_key(units[reps[g]]))
        keep_id = units[reps[keeper]]["unit_id"]
        for g in component:
            if g == keeper:
                why = f"exact duplicate of {keep_id}"
                members = groups[g][1:]
            else:
                pair = (min(g, keeper), max(g, keeper))
                similarity = near.get(pair)
                if similarity is None:  # linked through a chain: report the Jaccard with the kept unit itself
                    similarity = _jaccard(shingles[g], shingles[keeper])
                why = f"near duplicate (jaccard {similarity:.2f}) of {keep_id}"
                members = groups[g]
            for i in members:
                reason[i] = why

    result = DedupResult(kept=[], removed=[])
    totals: dict[str, int] = defaultdict(int)
    lost: dict[str, int] = defaultdict(int)
    for i, unit in enumerate(units):
        totals[unit["source"]] += 1
        if i in reason:
            result.removed.append((unit, reason[i]))
            lost[unit["source"]] += 1
        else:
            result.kept.append(unit)
    result.removed_share_by_source = {source: lost[source] / n for source, n in sorted(totals.items())}
    return result


def removed_counts(result: DedupResult) -> tuple[int, int]:
    """(exact, near) duplicates removed."""
    exact = sum(1 for _, why in result.removed if why.startswith("exact"))
    return exact, len(result.removed) - exact
