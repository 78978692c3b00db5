"""Stored recurrent states at every segment boundary of a dataset: where training windows start.

A training window starts at some segment p of an episode, and the model should see there the
memory (and attention context) it would have after running the episode from t = 0. Running
from t = 0 for every window costs a pass over up to the whole episode per update; instead, as in
the stored-state replay of recurrent off-policy RL, the states at every boundary are kept in a
table. It is filled by a full pass over the dataset (``refresh``, every ``memory_refresh_every``
updates and at the first update), and in between every update writes back the states its
windows computed. A state in the table is therefore the real one under parameters at most
``memory_refresh_every`` updates old, recomputed from one that is at most as old. Each refresh
after the first measures how far the table had drifted (``staleness``), and training logs it
as ``memory_staleness``.
"""

from __future__ import annotations

import torch

from ..models.sequence import State

__all__ = ["BoundaryStates"]


class BoundaryStates:
    """A table of encoder states, one row per (episode, segment) boundary index."""

    def __init__(self, size: int):
        self.size = size
        self._table: State = {}

    @property
    def filled(self) -> bool:
        return bool(self._table)

    def staleness(self, fresh: BoundaryStates) -> float:
        """Relative L2 distance of this table's float states from ``fresh`` (the same
        boundaries recomputed now): how far the states windows started from had drifted."""
        num = den = 0.0
        for key, value in fresh._table.items():
            if value.is_floating_point():
                num += float((self._table[key] - value).pow(2).sum())
                den += float(value.pow(2).sum())
        return (num / den) ** 0.5 if den > 0 else 0.0

    def read(self, index: torch.Tensor, initial: State) -> State:
        """States of rows ``index`` [B]; rows with index -1 get ``initial`` (batch B), which
        keeps its gradient (the learned initial memory)."""
        if not self._table:
            return initial
        stored = index >= 0
        rows = index.clamp(min=0)
        out: State = {}
        for key, value in initial.items():
            mask = stored.view(-1, *([1] * (value.dim() - 1)))
            out[key] = torch.where(mask, self._table[key][rows].to(value.dtype), value)
        return out

    def write(self, index: torch.Tensor, state: State) -> None:
        """Stores ``state`` (batch B, detached) at rows ``index`` [B] where index >= 0."""
        kept = (index >= 0).nonzero().squeeze(1)  # once for every key
        if not len(kept):
            return
        rows = index[kept]
        for key, value in state.items():
            value = value.detach()
            if key not in self._table:
                shape = (self.size, *value.shape[1:])
                self._table[key] = torch.zeros(shape, dtype=value.dtype, device=value.device)
            self._table[key].index_copy_(0, rows, value.index_select(0, kept))
