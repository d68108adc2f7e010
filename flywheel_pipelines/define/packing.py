"""Sequence packing for training: several tokenized examples share one row, and none can see another.

Rows carry `position_ids` that restart at 0 for every example and no attention mask; transformers then builds a
block-diagonal causal mask from the position restarts (`masking_utils.find_packed_sequence_indices`), so a token
attends only to earlier tokens of its own example. It does so only without a KV cache: a model trained on packed
rows must have `use_cache` off (`for_packed_training`), or every example silently attends to the ones before it.
The first label of every example is masked as well, so no example is trained to predict its first token from the end
of the one before it. Batches pad at most 5% (`PackedCollator`).

Rows are filled first-fit-decreasing (longest examples first, each into the first row with room), so a training
step sees `per_device_batch_size` nearly full rows, whatever the examples' lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

Feature = dict[str, list[int]]


@dataclass(frozen=True)
class PackedRow:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    examples: int


def pack(features: Sequence[Feature], max_length: int) -> list[PackedRow]:
    """Rows of at most `max_length` tokens; an example longer than that is cut to it (tokenization already keeps
    its answer)."""
    order = sorted(range(len(features)), key=lambda i: (-len(features[i]["input_ids"]), i))
    rows: list[list[int]] = []  # feature indices per row
    room: list[int] = []
    for i in order:
        length = min(len(features[i]["input_ids"]), max_length)
        for r, free in enumerate(room):
            if free >= length:
                rows[r].append(i)
                room[r] -= length
                break
        else:
            rows.append([i])
            room.append(max_length - length)
    packed = []
    for members in rows:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in sorted(members):  # dataset order inside a row: deterministic and independent of the fill order
            f_ids = features[i]["input_ids"][:max_length]
            f_labels = [-100, *features[i]["labels"][1:max_length]]
            ids += f_ids
            labels += f_labels
            positions += list(range(len(f_ids)))
        packed.append(PackedRow(ids, labels, positions, len(members)))
    return packed


def for_packed_training(model: Any) -> Any:
    """The model with its KV cache off, so that transformers reads packed rows' position restarts as attention
    boundaries (with a cache it falls back to one causal mask over the whole row)."""
    model.config.use_cache = False
    return model


class PackedCollator:
    """Batches packed rows with at most `max_padding_share` of padding. Rows of like length (the sampler groups
    them) are padded to the longest, the padding a sequence of its own (positions from 0, labels -100); a batch
    that would pad more is laid end to end in one sequence instead, which pads nothing but makes attention span
    the whole batch (block-diagonal, so still no example sees another) — dearer per token, so used only then.
    Neither carries an attention mask: the position restarts define the attention blocks."""

    def __init__(self, pad_token_id: int, max_padding_share: float = 0.05):
        self.pad_token_id = pad_token_id
        self.max_padding_share = max_padding_share

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        padding = sum(width - len(r["input_ids"]) for r in rows)
        if padding > self.max_padding_share * width * len(rows):
            return {
                key: torch.tensor([[t for r in rows for t in r[key]]])
                for key in ("input_ids", "labels", "position_ids")
            }
        ids, labels, positions = [], [], []
        for r in rows:
            pad = width - len(r["input_ids"])
            ids.append(r["input_ids"] + [self.pad_token_id] * pad)
            labels.append(r["labels"] + [-100] * pad)
            positions.append(r["position_ids"] + list(range(pad)))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions)}
