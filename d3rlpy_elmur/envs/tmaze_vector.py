"""The passive T-Maze of :class:`~d3rlpy_elmur.envs.tmaze.TMazeEnv`, vectorized with numpy.

``TMazeVectorEnv(num_envs)`` behaves exactly like ``gym.vector.SyncVectorEnv`` over ``num_envs``
``TMazeEnv(corridor_length)`` (passive variant, vector observation ``[y, hint, flag, noise]``):
the same transitions, rewards, terminations, truncations, ``info["success"]`` at episode end,
next-step autoreset, and even the same noise values for the same seeds, because every sub-env
keeps its own generator and draws its noise in blocks of the same size from it, in the same
order. A batched step is a dozen numpy operations on ``[num_envs]`` arrays; the only Python
loops run over sub-envs that autoreset (one goal draw each) or whose noise block is used up
(once every 4096 steps).

Beyond SyncVectorEnv, ``reset`` accepts per-sub-env options, so evaluation can balance goals::

    venv = TMazeVectorEnv(100)
    goals = np.where(np.arange(100) % 2 == 0, 1, -1)
    obs, info = venv.reset(seed=0, options={"goal": goals, "corridor_length": 10**6})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from .tmaze import _NOISE_BLOCK, DOWN, LEFT, RIGHT, UP, TMazeEnv, _check_corridor_length
from .vector_seeding import reseed_sub_envs

__all__ = ["TMazeVectorEnv", "balanced_goal_options"]

# Displacement per action, indexed by the action: one gather instead of branches.
_DX = np.zeros(4, dtype=np.int64)
_DX[RIGHT], _DX[LEFT] = 1, -1
_DY = np.zeros(4, dtype=np.int64)
_DY[UP], _DY[DOWN] = 1, -1


_NONE = np.zeros(0, dtype=np.int64)  # no sub-env


class TMazeVectorEnv(gym.vector.VectorEnv[Any, Any, Any]):
    """``num_envs`` passive T-Mazes stepped together (gymnasium 1.0 ``VectorEnv`` API).

    Args:
        num_envs: number of sub-environments.
        corridor_length: default corridor ``L >= 1`` (autoreset episodes use it, as
            SyncVectorEnv's autoreset passes no options).
        penalty, goal_reward, noise: as in :class:`TMazeEnv`.

    ``reset(seed=..., options=...)``: ``seed`` is None, an int (sub-env i gets ``seed + i``)
    or a list of ints/None; ``options`` may hold ``"goal"`` (+1/-1, scalar or one per sub-env)
    and ``"corridor_length"`` (int, scalar or one per sub-env), for this episode only.
    Infos are dicts of arrays with ``_key`` masks: ``corridor_length`` for sub-envs that
    (auto)reset, ``success`` for sub-envs whose episode ended.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": "next_step"}

    def __init__(
        self,
        num_envs: int,
        corridor_length: int = 10,
        penalty: float = 0.0,
        goal_reward: float = 1.0,
        noise: bool = True,
    ) -> None:
        if isinstance(num_envs, bool) or int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        _check_corridor_length(corridor_length)
        if penalty > 0:
            raise ValueError(f"penalty must be <= 0, got {penalty}")
        n = int(num_envs)
        self.num_envs = n
        self.default_corridor_length = int(corridor_length)
        self.penalty = float(penalty)
        self.goal_reward = float(goal_reward)
        self.noise = bool(noise)
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(4)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n)

        self._rngs: list[np.random.Generator | None] = [None] * n  # made lazily, like Env's
        self._noise = np.zeros((n, _NOISE_BLOCK), dtype=np.float32)
        self._noise_index = np.full(n, _NOISE_BLOCK, dtype=np.int64)
        self._rows = np.arange(n)
        self._goal = np.ones(n, dtype=np.int64)
        self._length = np.full(n, self.default_corridor_length, dtype=np.int64)
        self._x = np.zeros(n, dtype=np.int64)  # y is always 0 while an episode runs
        self._t = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    @classmethod
    def from_env(cls, env: gym.Env[Any, Any], num_envs: int) -> TMazeVectorEnv | None:
        """The vector version of ``env`` if it is a plain passive vector-observation TMazeEnv
        (possibly inside gymnasium's checker wrappers, which change nothing per step), else
        None."""
        while isinstance(env, (gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)):
            env = env.env
        if (
            type(env) is not TMazeEnv
            or env.variant != "passive"
            or env.ambiguous
            or env.observation_format != "vector"
        ):
            return None
        return cls(
            num_envs,
            corridor_length=env.default_corridor_length,
            penalty=env.penalty,
            goal_reward=env.goal_reward,
            noise=env.noise,
        )

    # ---------------------------------------------------------------- public state
    @property
    def goal(self) -> np.ndarray:
        """Goal side per sub-env (+1 up, -1 down)."""
        return self._goal.copy()

    @property
    def corridor_length(self) -> np.ndarray:
        """Corridor length per sub-env (the junction's x)."""
        return self._length.copy()

    @property
    def elapsed_steps(self) -> np.ndarray:
        """Steps taken in each sub-env's current episode."""
        return self._t.copy()

    # ---------------------------------------------------------------- gym API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        reseed_sub_envs(self._rngs, self._noise_index, seed, stale=_NOISE_BLOCK)
        options = options or {}
        length = options.get("corridor_length", self.default_corridor_length)
        lengths = np.broadcast_to(np.asarray(length), (n,))
        for value in np.unique(lengths):
            _check_corridor_length(value.item())
        if "goal" in options:
            goals = np.broadcast_to(np.asarray(options["goal"]), (n,))
            if not np.isin(goals, (-1, 1)).all():
                raise ValueError(f"options['goal'] must be +1 or -1, got {options['goal']!r}")
            self._goal[:] = goals
        else:
            self._goal[:] = self._draw_goals(self._rows)
        self._length[:] = lengths
        self._x[:] = 0
        self._t[:] = 0
        self._autoreset[:] = False
        self._started = True
        obs = self._observe(None, None)
        return obs, {"corridor_length": self._length.copy(), "_corridor_length": np.ones(n, bool)}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("TMazeVectorEnv.step() called before reset()")
        a = _as_actions(actions, self.num_envs)
        resetting = self._autoreset
        running = ~resetting
        self._t += running
        x = self._x
        nx = x + _DX[a]
        junction = x == self._length
        # right/left move inside the corridor; up/down only at the junction (else a wall)
        horizontal = (a == RIGHT) | (a == LEFT)
        x = np.where(horizontal & (nx >= 0) & (nx <= self._length), nx, x)
        y = np.where(horizontal | ~junction | resetting, 0, _DY[a])
        terminated = y != 0
        success = y == self._goal  # only meaningful where terminated
        reward = np.where(terminated, np.where(success, self.goal_reward, 0.0), 0.0)
        if self.penalty:
            # lagging behind the optimal schedule (x < t); never on an autoreset step
            reward = np.where((x < self._t) & running & ~terminated, self.penalty, reward)
        truncated = ~terminated & (self._t >= self._length + 2) & running
        ended = terminated | truncated
        infos: dict[str, Any] = {}
        if ended.any():
            infos["success"] = success & terminated
            infos["_success"] = ended
        index = _NONE
        if resetting.any():
            # next-step autoreset: the action is ignored; default corridor, random goal
            index = np.flatnonzero(resetting)
            self._goal[index] = self._draw_goals(index)
            self._length[index] = self.default_corridor_length
            self._t[index] = 0
            x[index] = 0
            infos["corridor_length"] = np.where(resetting, self._length, 0)
            infos["_corridor_length"] = resetting.copy()
        self._x = x
        self._autoreset = ended
        obs = self._observe(y, index)
        return obs, reward, terminated, truncated, infos

    # ---------------------------------------------------------------- internals
    def _draw_goals(self, index: np.ndarray) -> np.ndarray:
        """One goal draw per listed sub-env from its own generator, as TMazeEnv.reset does."""
        out = np.empty(len(index), dtype=np.int64)
        for j, i in enumerate(index):
            rng = self._rngs[i]
            if rng is None:
                rng = self._rngs[i] = seeding.np_random()[0]
            out[j] = 1 if rng.integers(2) == 1 else -1
        return out

    def _observe(self, y: np.ndarray | None, started: np.ndarray | None) -> np.ndarray:
        """[y, hint, flag, noise]; the hint shows only on the first step of an episode
        (``started``: the sub-envs that just reset, None for all)."""
        obs = np.zeros((self.num_envs, 4), dtype=np.float32)
        if y is not None:
            obs[:, 0] = y
        if started is None:
            obs[:, 1] = self._goal
        elif len(started):
            obs[started, 1] = self._goal[started]
        obs[:, 2] = self._x == self._length
        if self.noise:
            obs[:, 3] = self._next_noise()
        return obs

    def _next_noise(self) -> np.ndarray:
        # Every sub-env draws one value per step, so the indices move in lockstep and a
        # refill touches all sub-envs once every 4096 steps.
        empty = self._noise_index >= _NOISE_BLOCK
        if empty.any():
            for i in np.flatnonzero(empty):
                rng = self._rngs[i]
                assert rng is not None
                self._noise[i] = rng.integers(-1, 2, size=_NOISE_BLOCK)
            self._noise_index[empty] = 0
        value = self._noise[self._rows, self._noise_index]
        self._noise_index += 1
        return value


def _as_actions(actions: Any, n: int) -> np.ndarray:
    """Integer actions [n] in 0..3 (rejects out-of-range and non-integral values)."""
    arr = np.asarray(actions)
    if arr.shape != (n,) or arr.dtype.kind not in "iuf":
        raise ValueError(f"expected {n} T-Maze actions in 0..3, got {actions!r}")
    a = arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and not (a == arr).all():
        raise ValueError(f"invalid T-Maze actions {actions!r}: expected 0, 1, 2 or 3")
    if a.min() < 0 or a.max() > 3:
        raise ValueError(f"invalid T-Maze actions {actions!r}: expected 0, 1, 2 or 3")
    return a


def balanced_goal_options(
    corridor_length: int | None = None,
) -> Callable[[int, int], dict[str, Any]]:
    """``reset_options`` for :func:`d3rlpy_elmur.evaluate` on a TMazeVectorEnv: episode i of
    the evaluation gets goal +1 if i is even, else -1, so any even number of episodes is
    exactly balanced; ``corridor_length`` overrides the env's default for every episode."""

    def options(first: int, num_envs: int) -> dict[str, Any]:
        goals = np.where((first + np.arange(num_envs)) % 2 == 0, 1, -1)
        out: dict[str, Any] = {"goal": goals}
        if corridor_length is not None:
            out["corridor_length"] = corridor_length
        return out

    return options
