"""Experts for POPGym's labyrinths (LabyrinthEscape, LabyrinthExplore; needs ``mazelib``).

The observation is the 3x3 block of maze cells around the agent and its last action. An
expert that knew the whole maze would walk straight to the exit, turning at junctions
for reasons no observation shows; these experts plan only on the cells they have seen
(the union of their local views), so every choice follows from the observation history.
They read the agent's position from the environment, which dead reckoning from the
actions and the walls seen gives as well (moves are deterministic).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from .base import PopGymExpert

__all__ = ["LabyrinthEscapeExpert", "LabyrinthExploreExpert"]

_UNKNOWN, _OBSTACLE, _GOAL = -1, 1, 3
# popgym's actions: 0 left, 1 right, 2 up, 3 down, as (row, column) steps
_MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))


class _MazeExpert(PopGymExpert):
    """Keeps the map of the cells seen and walks towards the nearest target cell."""

    privileged = False

    def reset(self) -> None:
        grid = self._state.maze.grid
        self._map = np.full(grid.shape, _UNKNOWN, dtype=np.int64)
        self._visited = np.zeros(grid.shape, dtype=bool)

    def act(self, observation: Any) -> int:
        env = self._state
        y, x = (int(v) for v in env.position)
        self._visited[y, x] = True
        rows = slice(max(y - 1, 0), y + 2)  # the cells the local view shows
        cols = slice(max(x - 1, 0), x + 2)
        self._map[rows, cols] = env.maze.grid[rows, cols]
        return self._first_move((y, x), self._targets())

    def _targets(self) -> np.ndarray:
        raise NotImplementedError

    def _first_move(self, start: tuple[int, int], targets: np.ndarray) -> int:
        """First action of a shortest known path to the nearest target (breadth first)."""
        first: dict[tuple[int, int], int] = {start: -1}
        queue = deque([start])
        height, width = self._map.shape
        while queue:
            cell = queue.popleft()
            if targets[cell] and cell != start:
                return first[cell]
            for action, (dy, dx) in enumerate(_MOVES):
                nxt = (cell[0] + dy, cell[1] + dx)
                if (
                    0 <= nxt[0] < height
                    and 0 <= nxt[1] < width
                    and nxt not in first
                    and self._map[nxt] not in (_UNKNOWN, _OBSTACLE)
                ):
                    first[nxt] = action if first[cell] < 0 else first[cell]
                    queue.append(nxt)
        return 0  # nothing left to reach (the episode is about to end)


class LabyrinthExploreExpert(_MazeExpert):
    """Walks to the nearest seen but unvisited free cell (observation-only).

    Nearest-first exploration of a perfect maze walks each corridor about twice; an
    expert knowing the map could order the dead ends to backtrack less: near-optimal,
    not optimal.
    """

    def _targets(self) -> np.ndarray:
        passable = (self._map != _UNKNOWN) & (self._map != _OBSTACLE)
        return passable & ~self._visited


class LabyrinthEscapeExpert(_MazeExpert):
    """Walks to the exit once it has seen it, else to the nearest seen free cell next to
    an unseen one (observation-only).

    The exit lies on the outer wall; not knowing where, the expert explores nearest
    first, so its return depends on how much of the maze it searches: not optimal (an
    expert knowing the maze would walk the shortest path).
    """

    def _targets(self) -> np.ndarray:
        goal = self._map == _GOAL
        if goal.any():
            return goal
        passable = (self._map != _UNKNOWN) & (self._map != _OBSTACLE)
        unseen = np.pad(self._map == _UNKNOWN, 1)
        height, width = passable.shape
        near_unseen = np.zeros_like(passable)  # some cell of its 3x3 block unseen
        for dy in range(3):
            for dx in range(3):
                near_unseen |= unseen[dy : dy + height, dx : dx + width]
        return passable & near_unseen & ~self._visited
