"""Gymnasium registration of the package's environments (runs on import).

Entry points are strings because Minari writes the EnvSpec into dataset metadata and
cannot serialise callables. No ``max_episode_steps``: the T-Mazes truncate themselves at
``L + 2`` and recall episodes end after ``delay + 1`` steps (a TimeLimit would cut 10^6-step
evaluation episodes). The passive env checker only inspects the first step, so it costs nothing
per step afterwards.
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "RECALL_ID", "TMAZE_ID", "VISUAL_TMAZE_ID", "register_envs"]

TMAZE_ID = "d3rlpy_elmur/TMaze-v0"
VISUAL_TMAZE_ID = "d3rlpy_elmur/VisualTMaze-v0"
RECALL_ID = "d3rlpy_elmur/Recall-v0"

_ENTRY_POINTS = {
    TMAZE_ID: "d3rlpy_elmur.envs.tmaze:TMazeEnv",
    VISUAL_TMAZE_ID: "d3rlpy_elmur.envs.visual_tmaze:VisualTMazeEnv",
    RECALL_ID: "d3rlpy_elmur.envs.recall:RecallEnv",
}
ENV_IDS = tuple(_ENTRY_POINTS)


def register_envs() -> None:
    """Register the environments once (re-imports and reloads are no-ops)."""
    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=None)
