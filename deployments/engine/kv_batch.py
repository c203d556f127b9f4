"""The KV cache of the running batch, one row per running request, rows added and removed
between decode steps.

Rows are left-aligned to a common width: a row whose cache is shorter than the batch's is
padded on the left with masked-out zeros (or the batch is padded when the newcomer is
longer), and columns that no remaining row uses are cut off when rows leave. Positions are
per row, so padding never shifts a row's position ids.
"""

from typing import Any

import torch
from transformers import DynamicCache


def cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class KVBatch:
    """The running rows' cache (`cache`, a `DynamicCache` the model updates in place) and
    the attention mask over its columns."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def add(self, row_cache: Any) -> None:
        """Append one row whose cache (batch of 1) holds only its real tokens."""
        row = cache_tensors(row_cache)
        length = int(row[0][0].shape[-2])
        row_mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        if self.cache is None or self.size == 0:
            self.cache = DynamicCache(ddp_cache_data=row)
            self.mask = row_mask
            return
        grow, pad = max(0, length - self.width), max(0, self.width - length)
        merged = []
        for (keys, values), (row_keys, row_values) in zip(cache_tensors(self.cache), row):
            merged.append(
                (
                    torch.cat([_pad_left(keys, grow, -2), _pad_left(row_keys, pad, -2)]),
                    torch.cat([_pad_left(values, grow, -2), _pad_left(row_values, pad, -2)]),
                )
            )
        self.cache = DynamicCache(ddp_cache_data=merged)
        self.mask = torch.cat([_pad_left(self.mask, grow, 1), _pad_left(row_mask, pad, 1)])

    def keep(self, indexes: list[int]) -> None:
        """Keep only these rows (in this order) and drop the columns none of them uses."""
        if not indexes:
            self.cache = None
            self.mask = self.mask[:0, :0]
            return
        index = torch.tensor(indexes, dtype=torch.long, device=self.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0
        self.mask = mask[:, first:]
        kept = [
            (keys.index_select(0, index)[:, :, first:], values.index_select(0, index)[:, :, first:])
            for keys, values in cache_tensors(self.cache)
        ]
        self.cache = DynamicCache(ddp_cache_data=kept)

    def step_mask(self) -> torch.Tensor:
        """The attention mask for one more token in every row; becomes `mask` after the step."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.size, 1))], dim=1)
        return self.mask
