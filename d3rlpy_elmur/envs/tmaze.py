"""The offline T-Maze of RATE/ELMUR (docs/design.md §3), plus the Memory-RL variants.

Layout (x grows to the right, y up)::

    oracle/start                     junction
      (0,0) --- (1,0) --- ... --- (x_j, 0)
                                  (x_j,+1)  goal if g = +1
                                  (x_j,-1)  goal if g = -1

The goal side ``g`` is drawn uniformly in {-1, +1} at reset; ``x`` is never observed.
Default (``variant="passive"``) is the RATE/ELMUR task: the agent starts on the cue cell,
``x_j = L``, and the episode is truncated after ``L + 2`` steps. ``variant="active"`` is
Memory-RL's active T-Maze: the agent starts one cell right of the cue and must step left to
see it, so ``x_j = L + 1`` and the time limit is ``L + 4`` (the optimal ``L + 3`` plus one
spare step, as in the passive case). In both variants the episode terminates on entering a
goal cell (reward ``goal_reward`` if ``y == g`` else 0).

The cost per step is constant and nothing grows with the episode: the evaluator runs
10^6-step corridors.
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

__all__ = [
    "DOWN",
    "LEFT",
    "RIGHT",
    "UP",
    "TMazeEnv",
    "TMazeObservationFormat",
    "TMazeVariant",
]

RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3
_DX = (1, 0, -1, 0)
_DY = (0, 1, 0, -1)

TMazeVariant = Literal["passive", "active"]
TMazeObservationFormat = Literal["vector", "dict"]

# Noise values are drawn in blocks so that a step costs one array read instead of one
# Generator call (the block is refilled in place, so memory stays constant).
_NOISE_BLOCK = 4096


class TMazeEnv(gym.Env[Any, Any]):
    """T-Maze with a cue at the start and a choice at the end of a long corridor.

    Observation (``observation_format="vector"``, float32): ``[y, hint, flag, noise]``
    where ``hint = g`` on the first visit of the cue cell (``t = 0`` in the passive
    variant) and 0 otherwise, ``flag = 1`` at ``x == x_j`` and ``noise`` is uniform in
    {-1, 0, 1} (0 if ``noise=False``). With ``ambiguous=True`` it is Memory-RL's 2-float
    observation ``[at_junction, hint_or_y]``: ``[0, hint]`` on the cue cell, ``[0, 0]``
    in the corridor, ``[1, y]`` at the junction. ``observation_format="dict"`` returns the
    vector observation as ``{"cue": [hint], "noise": n + 1 (Discrete(3)),
    "position": [y, flag]}`` to exercise Dict pipelines.

    Actions ``Discrete(4)``: 0 right, 1 up, 2 left, 3 down. A move into a wall leaves the
    agent in place.

    Args:
        corridor_length: ``L >= 1``, the number of right moves from the start to the
            junction.
        variant: ``"passive"`` (RATE/ELMUR, default) or ``"active"`` (Memory-RL).
        ambiguous: use Memory-RL's 2-float observation.
        penalty: reward (``<= 0``) added on every non-final step where the agent lags
            behind the optimal schedule (``x < t - o``, ``o`` = 1 if active else 0);
            Memory-RL uses ``-1 / L``.
        goal_reward: reward for entering the correct goal cell.
        noise: draw the noise feature (``False`` keeps it at 0).
        observation_format: ``"vector"`` or ``"dict"``.

    Reset options: ``{"goal": +1 | -1}`` forces the goal side (the evaluator balances
    goals this way); ``{"corridor_length": L}`` changes the corridor for this episode only.
    ``info["success"]`` is set when the episode ends (termination or truncation).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    _length: int
    _goal: int
    _junction: int
    _horizon: int
    _x: int
    _y: int
    _t: int
    _oracle_seen: bool
    _done: bool

    def __init__(
        self,
        corridor_length: int = 10,
        variant: TMazeVariant = "passive",
        ambiguous: bool = False,
        penalty: float = 0.0,
        goal_reward: float = 1.0,
        noise: bool = True,
        observation_format: TMazeObservationFormat = "vector",
    ) -> None:
        super().__init__()
        _check_corridor_length(corridor_length)
        if variant not in ("passive", "active"):
            raise ValueError(f"variant must be 'passive' or 'active', got {variant!r}")
        if penalty > 0:
            raise ValueError(f"penalty must be <= 0, got {penalty}")
        if observation_format not in ("vector", "dict"):
            raise ValueError(
                f"observation_format must be 'vector' or 'dict', got {observation_format!r}"
            )
        if ambiguous and observation_format != "vector":
            raise ValueError("ambiguous=True needs observation_format='vector'")
        self.default_corridor_length = int(corridor_length)
        self.variant: TMazeVariant = variant
        self.ambiguous = bool(ambiguous)
        self.penalty = float(penalty)
        self.goal_reward = float(goal_reward)
        self.noise = bool(noise)
        self.observation_format: TMazeObservationFormat = observation_format
        self.oracle_offset = 1 if variant == "active" else 0

        self.action_space = gym.spaces.Discrete(4)
        self.observation_space = self._make_observation_space()

        self._noise_block = np.zeros(_NOISE_BLOCK, dtype=np.float32)
        self._noise_index = _NOISE_BLOCK
        self._set_episode(self.default_corridor_length, goal=1)
        self._done = True

    # ---------------------------------------------------------------- public state
    @property
    def corridor_length(self) -> int:
        """Corridor length L of the current episode."""
        return self._length

    @property
    def horizon(self) -> int:
        """Steps after which the current episode is truncated."""
        return self._horizon

    @property
    def goal(self) -> int:
        """Goal side g of the current episode (+1 up, -1 down)."""
        return self._goal

    @property
    def position(self) -> tuple[int, int]:
        """Agent cell (x, y); x = 0 is the cue cell."""
        return self._x, self._y

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode."""
        return self._t

    # ---------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            # New seed: the buffered noise must come from the new generator.
            self._noise_index = _NOISE_BLOCK
        options = options or {}
        length = options.get("corridor_length", self.default_corridor_length)
        _check_corridor_length(length)
        if "goal" in options:
            goal = int(options["goal"])
            if goal not in (-1, 1):
                raise ValueError(f"options['goal'] must be +1 or -1, got {goal!r}")
        else:
            goal = 1 if self.np_random.integers(2) == 1 else -1
        self._set_episode(int(length), goal)
        self._done = False
        return self._observe(), {"corridor_length": self._length}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("TMazeEnv.step() called after the episode ended: reset()")
        a = action if type(action) is int else _as_action(action)
        if not 0 <= a <= 3:
            raise ValueError(f"invalid T-Maze action {action!r}: expected 0, 1, 2 or 3")
        self._t += 1
        x, y = self._x, self._y
        if y == 0:
            if a == RIGHT or a == LEFT:
                nx = x + _DX[a]
                if 0 <= nx <= self._junction:
                    x = nx
            elif x == self._junction:
                y = _DY[a]
            # up/down before the junction: wall, stay in place
        self._x, self._y = x, y

        if y != 0:  # entered a goal cell
            self._done = True
            reward = self.goal_reward if y == self._goal else 0.0
            return self._observe(), reward, True, False, {"success": y == self._goal}
        reward = self.penalty if x < self._t - self.oracle_offset else 0.0
        if self._t >= self._horizon:
            self._done = True
            return self._observe(), reward, False, True, {"success": False}
        return self._observe(), reward, False, False, {}

    # ---------------------------------------------------------------- internals
    def _set_episode(self, length: int, goal: int) -> None:
        self._length = length
        self._goal = goal
        self._junction = self.oracle_offset + length
        # optimal episode: 2*o + L + 1 steps; one spare step as in RATE/ELMUR (L + 2)
        self._horizon = length + 2 * self.oracle_offset + 2
        self._x = self.oracle_offset
        self._y = 0
        self._t = 0
        self._oracle_seen = False

    def _next_noise(self) -> float:
        if not self.noise:
            return 0.0
        if self._noise_index >= _NOISE_BLOCK:
            self._noise_block[:] = self.np_random.integers(-1, 2, size=_NOISE_BLOCK)
            self._noise_index = 0
        value = self._noise_block[self._noise_index]
        self._noise_index += 1
        return float(value)

    def _features(self) -> tuple[float, float, float]:
        """(y, hint, flag) of the current cell; consumes the one-time cue."""
        hint = 0.0
        if self._x == 0 and not self._oracle_seen:
            self._oracle_seen = True
            hint = float(self._goal)
        flag = 1.0 if self._x == self._junction else 0.0
        return float(self._y), hint, flag

    def _observe(self) -> Any:
        y, hint, flag = self._features()
        if self.ambiguous:
            if flag:
                return np.array((1.0, y), dtype=np.float32)
            return np.array((0.0, hint), dtype=np.float32)
        noise = self._next_noise()
        if self.observation_format == "dict":
            return {
                "cue": np.array((hint,), dtype=np.float32),
                "noise": int(noise) + 1,
                "position": np.array((y, flag), dtype=np.float32),
            }
        return np.array((y, hint, flag, noise), dtype=np.float32)

    def _make_observation_space(self) -> gym.Space[Any]:
        if self.ambiguous:
            return gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if self.observation_format == "dict":
            return gym.spaces.Dict(
                {
                    "cue": gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
                    "noise": gym.spaces.Discrete(3),
                    "position": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                }
            )
        return gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)


def _as_action(action: Any) -> int:
    """Integer action from numpy scalars or one-element arrays (rejects 1.5, [1, 2])."""
    arr = np.asarray(action)
    if arr.size != 1 or arr.dtype.kind not in "iuf" or arr.reshape(()) != int(arr.reshape(())):
        raise ValueError(f"invalid T-Maze action {action!r}: expected 0, 1, 2 or 3")
    return int(arr.reshape(()))


def _check_corridor_length(length: Any) -> None:
    if isinstance(length, bool) or int(length) != length or length < 1:
        raise ValueError(f"corridor_length must be an integer >= 1, got {length!r}")
