"""A family of cue-recall tasks: a k-way cue at t = 0, an answer ``delay`` steps later.

The tasks differ from T-Maze the way real memory tasks do (issue 33): more than two cues,
variable delays, several distractor features, dense answers, continuous actions. A task is a
:class:`RecallTask` (named like ``cue3-flag`` or ``cue3-every-onehot``); the delay is chosen
per episode.

Observation (flat ``Box`` float32, ``k + 1 + n`` values)::

    [cue one-hot (k) | due (1) | noise (n)]

* the cue one-hot shows the cue ``c`` in ``0..k-1`` at ``t = 0`` only (zeros afterwards), or
  with ``late=True`` (flag answers only) at one step drawn uniformly in ``0..delay // 2``,
  so a memory that stops writing after the first segment loses it;
* ``due`` is 1 where an answer is scored: at ``t = delay`` only (``answer="flag"``), or at
  every step ``t <= delay`` (``answer="every"``);
* the noise features are uniform in {-1, 0, 1}, drawn afresh every step (distractors in the
  range of the cue).

Answer modes (every episode has ``delay + 1`` steps, ``t = 0..delay``, and then terminates):

* ``"flag"``: only the action at ``t = delay`` is scored (earlier actions are ignored; the
  expert waits with the no-op). Reward 1 if it is right, else 0; success = it was right.
* ``"every"``: like POPGym's RepeatFirst, the cue is the answer at every step, the first
  included. Each right answer earns ``1 / (delay + 1)``, so the return is the fraction of
  answers right; success = every answer right (one slip fails the episode).

Actions and what counts as right:

* ``"discrete"``: ``Discrete(k + 1)``; 0 is the no-op, ``c + 1`` answers cue ``c``.
* ``"onehot"``: ``Box(-1, 1, (k,))``; the expert answers the one-hot ``e_c`` (no-op: zeros).
  Right iff ``e_c`` is strictly the nearest one-hot target, i.e. ``a[c] > a[j]`` for j != c.
* ``"scalar"``: ``Box(-1, 1, (1,))``; cue ``c`` is the target ``linspace(-1, 1, k)[c]`` (no-op:
  0). Right iff that target is strictly the nearest.

Ties are wrong, so a no-op never answers. :class:`RecallVectorEnv` runs ``num_envs`` episodes
as numpy arrays with the same transitions and noise as :class:`RecallEnv` for the same seeds,
which makes 10^4-step evaluations of 100 episodes affordable; :func:`recall_dataset` builds
expert episodes for offline training.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from .experts import register_expert
from .vector_seeding import reseed_sub_envs

if TYPE_CHECKING:
    from d3rlpy.dataset import ReplayBuffer

__all__ = [
    "RecallAnswer",
    "RecallActions",
    "RecallTask",
    "RecallEnv",
    "RecallVectorEnv",
    "RecallExpert",
    "answers_right",
    "balanced_cue_options",
    "recall_dataset",
]

RecallAnswer = Literal["flag", "every"]
RecallActions = Literal["discrete", "onehot", "scalar"]

MIN_CUES, MAX_CUES = 2, 8
# Noise is drawn in blocks (one Generator call per block, not per step); the vector env draws
# the same blocks from the same generators, so both envs see the same values.
_NOISE_BLOCK = 4096
_NAME = re.compile(r"cue(\d+)-(flag|every)(?:-(discrete|onehot|scalar))?(?:-noise(\d+))?(-late)?")


@dataclasses.dataclass(frozen=True)
class RecallTask:
    """One task of the family (everything but the delay, which varies per episode).

    Args:
        num_cues: k, the number of cues (2 to 8).
        answer: ``"flag"`` (one scored answer at ``t = delay``) or ``"every"`` (an answer
            at every step).
        actions: ``"discrete"``, ``"onehot"`` (k-dim continuous) or ``"scalar"`` (1-dim).
        noise_features: n distractor features (0 or more).
        late: the cue shows at a step drawn uniformly in ``0..delay // 2`` (per episode)
            instead of ``t = 0``; flag answers only.

    The name (``str(task)``, parsed back by :meth:`from_name`) is
    ``cue{k}-{answer}[-{actions}][-noise{n}][-late]``, leaving out discrete actions and one
    noise feature: ``cue3-flag``, ``cue8-every``, ``cue3-flag-onehot``, ``cue3-flag-noise4``,
    ``cue8-flag-late``.
    """

    num_cues: int = 3
    answer: RecallAnswer = "flag"
    actions: RecallActions = "discrete"
    noise_features: int = 1
    late: bool = False

    def __post_init__(self) -> None:
        k = self.num_cues
        if isinstance(k, bool) or int(k) != k or not MIN_CUES <= k <= MAX_CUES:
            raise ValueError(f"num_cues must be an integer in {MIN_CUES}..{MAX_CUES}, got {k!r}")
        if self.answer not in ("flag", "every"):
            raise ValueError(f"answer must be 'flag' or 'every', got {self.answer!r}")
        if self.actions not in ("discrete", "onehot", "scalar"):
            raise ValueError(
                f"actions must be 'discrete', 'onehot' or 'scalar', got {self.actions!r}"
            )
        n = self.noise_features
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"noise_features must be an integer >= 0, got {n!r}")
        if self.late and self.answer != "flag":
            raise ValueError(
                "late=True needs answer='flag' (an answer at every step would be due "
                "before the cue shows)"
            )

    @classmethod
    def from_name(cls, name: str) -> RecallTask:
        """The task called ``name`` (``cue3-flag``, ``cue3-every-scalar-noise2``, ...)."""
        match = _NAME.fullmatch(name)
        if match is None:
            raise ValueError(
                f"not a recall task name: {name!r} (expected "
                "cue<k>-<flag|every>[-<discrete|onehot|scalar>][-noise<n>][-late], e.g. "
                "cue3-flag)"
            )
        k, answer, actions, noise, late = match.groups()
        return cls(
            num_cues=int(k),
            answer=answer,  # type: ignore[arg-type]  # the pattern admits only valid values
            actions=actions or "discrete",  # type: ignore[arg-type]
            noise_features=1 if noise is None else int(noise),
            late=late is not None,
        )

    @property
    def name(self) -> str:
        """The task's name, e.g. ``cue3-flag``."""
        name = f"cue{self.num_cues}-{self.answer}"
        if self.actions != "discrete":
            name += f"-{self.actions}"
        if self.noise_features != 1:
            name += f"-noise{self.noise_features}"
        if self.late:
            name += "-late"
        return name

    def __str__(self) -> str:
        return self.name

    @property
    def discrete(self) -> bool:
        """Whether actions are discrete."""
        return self.actions == "discrete"

    @property
    def observation_size(self) -> int:
        """k cue features, the due flag and the noise features."""
        return self.num_cues + 1 + self.noise_features

    @property
    def action_size(self) -> int:
        """d3rlpy's action size: k + 1 discrete actions, or the continuous dimension."""
        if self.actions == "discrete":
            return self.num_cues + 1
        return self.num_cues if self.actions == "onehot" else 1

    def observation_space(self) -> gym.spaces.Box:
        """The flat observation space of one env."""
        return gym.spaces.Box(-1.0, 1.0, shape=(self.observation_size,), dtype=np.float32)

    def action_space(self) -> gym.spaces.Space[Any]:
        """The action space of one env."""
        if self.discrete:
            return gym.spaces.Discrete(self.num_cues + 1)
        return gym.spaces.Box(-1.0, 1.0, shape=(self.action_size,), dtype=np.float32)

    def answer_action(self, cue: int) -> Any:
        """The expert's answer for ``cue``: an int, or a float32 vector."""
        if self.actions == "discrete":
            return cue + 1
        if self.actions == "onehot":
            return np.eye(self.num_cues, dtype=np.float32)[cue]
        return np.array([_scalar_targets(self.num_cues)[cue]], dtype=np.float32)

    def wait_action(self) -> Any:
        """The no-op (never a right answer): 0, or zeros."""
        if self.discrete:
            return 0
        return np.zeros(self.action_size, dtype=np.float32)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`RecallEnv` (and ``gym.make(RECALL_ID, ...)``)."""
        return dataclasses.asdict(self)

    def make_env(self, delay: int = 10) -> RecallEnv:
        """A :class:`RecallEnv` of this task with default ``delay``."""
        return RecallEnv(delay=delay, **self.env_kwargs())

    def make_vector_env(self, num_envs: int, delay: int = 10) -> RecallVectorEnv:
        """A :class:`RecallVectorEnv` of ``num_envs`` envs of this task."""
        return RecallVectorEnv(num_envs, delay=delay, **self.env_kwargs())


def _scalar_targets(num_cues: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, num_cues)


def answers_right(task: RecallTask, actions: np.ndarray, cues: np.ndarray) -> np.ndarray:
    """Whether each action answers its cue: ``actions`` [n] (discrete) or [n, dim], ``cues``
    [n] in ``0..k-1``; returns bool [n]. Continuous answers are right when the cue's target
    is strictly the nearest one (ties, e.g. a no-op, are wrong). The rule of both envs."""
    if task.discrete:
        return np.asarray(actions) == cues + 1
    rows = np.arange(len(cues))
    if task.actions == "onehot":
        # |a - e_j|^2 = |a|^2 - 2 a_j + 1: the nearest one-hot is the largest component
        score = np.asarray(actions, dtype=np.float64).copy()
    else:
        targets = _scalar_targets(task.num_cues)
        score = -np.abs(np.asarray(actions, dtype=np.float64).reshape(-1, 1) - targets)
    mine = score[rows, cues]
    score[rows, cues] = -np.inf
    return mine > score.max(axis=1)


def _check_delay(delay: Any) -> None:
    if isinstance(delay, bool) or int(delay) != delay or delay < 1:
        raise ValueError(f"delay must be an integer >= 1, got {delay!r}")


def _check_cues(cues: np.ndarray, num_cues: int) -> None:
    if cues.dtype.kind not in "iu" or cues.min() < 0 or cues.max() >= num_cues:
        raise ValueError(f"options['cue'] must be integers in 0..{num_cues - 1}, got {cues!r}")


def _continuous_actions(actions: Any, n: int, size: int) -> np.ndarray:
    arr = np.asarray(actions, dtype=np.float64)
    if arr.size != n * size or not np.isfinite(arr).all():
        raise ValueError(f"expected {n} finite actions of size {size}, got {actions!r}")
    return arr.reshape(n, size)


def _discrete_actions(actions: Any, n: int, num_actions: int) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.size != n or arr.dtype.kind not in "iuf":
        raise ValueError(f"expected {n} integer actions in 0..{num_actions - 1}, got {actions!r}")
    a = arr.reshape(n).astype(np.int64)
    if (a != arr.reshape(n)).any() or a.min() < 0 or a.max() >= num_actions:
        raise ValueError(f"expected {n} integer actions in 0..{num_actions - 1}, got {actions!r}")
    return a


class RecallEnv(gym.Env[np.ndarray, Any]):
    """One cue-recall episode at a time (see the module docstring for the task).

    Args:
        num_cues, answer, actions, noise_features: the :class:`RecallTask`.
        delay: default steps from the cue to the (last) answer, ``>= 1``; an episode has
            ``delay + 1`` steps.

    Reset options: ``{"cue": c}`` forces the cue (evaluation balances cues this way),
    ``{"delay": d}`` changes the delay for this episode only. ``info["success"]`` is set at
    the episode's end. Nothing grows with the delay: a step costs the same at 10^6.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        num_cues: int = 3,
        delay: int = 10,
        answer: RecallAnswer = "flag",
        actions: RecallActions = "discrete",
        noise_features: int = 1,
        late: bool = False,
    ) -> None:
        super().__init__()
        _check_delay(delay)
        self.task = RecallTask(num_cues, answer, actions, noise_features, late)
        self.default_delay = int(delay)
        self.observation_space = self.task.observation_space()
        self.action_space = self.task.action_space()
        self._noise = np.zeros((_NOISE_BLOCK, noise_features), dtype=np.float32)
        self._noise_index = _NOISE_BLOCK
        self._cue = 0
        self._delay = self.default_delay
        self._onset = 0
        self._t = 0
        self._n_right = 0
        self._done = True

    @property
    def cue(self) -> int:
        """The current episode's cue, in ``0..k-1``."""
        return self._cue

    @property
    def delay(self) -> int:
        """The current episode's delay."""
        return self._delay

    @property
    def onset(self) -> int:
        """The step at which the current episode shows its cue (0 unless ``late``)."""
        return self._onset

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode."""
        return self._t

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._noise_index = _NOISE_BLOCK  # new generator: the buffered noise is stale
        options = options or {}
        delay = options.get("delay", self.default_delay)
        _check_delay(delay)
        if "cue" in options:
            cue = int(options["cue"])
            _check_cues(np.array([cue]), self.task.num_cues)
        else:
            cue = int(self.np_random.integers(self.task.num_cues))
        self._cue, self._delay = cue, int(delay)
        self._onset = int(self.np_random.integers(self._delay // 2 + 1)) if self.task.late else 0
        self._t = 0
        self._n_right = 0
        self._done = False
        return self._observe(), {"delay": self._delay}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("RecallEnv.step() called after the episode ended: reset()")
        task = self.task
        if task.discrete:
            a = _discrete_actions(action, 1, task.action_size)
        else:
            a = _continuous_actions(action, 1, task.action_size)
        right = bool(answers_right(task, a, np.array([self._cue]))[0])
        last = self._t == self._delay
        reward = 0.0
        if task.answer == "every":
            self._n_right += right
            reward = 1.0 / (self._delay + 1) if right else 0.0
            success = self._n_right == self._delay + 1
        else:
            success = right
            reward = 1.0 if last and right else 0.0
        self._t += 1
        info: dict[str, Any] = {}
        if last:
            self._done = True
            info["success"] = success
        return self._observe(), reward, last, False, info

    def _observe(self) -> np.ndarray:
        k = self.task.num_cues
        obs = np.zeros(self.task.observation_size, dtype=np.float32)
        if self._t == self._onset:
            obs[self._cue] = 1.0
        if self.task.answer == "every":
            obs[k] = self._t <= self._delay
        else:
            obs[k] = self._t == self._delay
        if self.task.noise_features:
            if self._noise_index >= _NOISE_BLOCK:
                self._noise[:] = self.np_random.integers(-1, 2, size=self._noise.shape)
                self._noise_index = 0
            obs[k + 1 :] = self._noise[self._noise_index]
            self._noise_index += 1
        return obs


class RecallVectorEnv(gym.vector.VectorEnv[Any, Any, Any]):
    """``num_envs`` :class:`RecallEnv` episodes stepped together as numpy arrays.

    It behaves like ``gym.vector.SyncVectorEnv`` over ``RecallEnv``s (same observations,
    rewards, terminations, ``info["success"]`` at the end, next-step autoreset, the same noise
    for the same seeds: every sub-env keeps its own generator and draws the same blocks). A
    batched step is a few numpy operations; Python loops only run over sub-envs that autoreset
    or whose noise block is used up (once every 4096 steps).

    ``reset(seed=..., options=...)``: ``seed`` is None, an int (sub-env i gets ``seed + i``)
    or a list; ``options`` may hold ``"cue"`` and ``"delay"``, each a scalar or one per
    sub-env, for this episode only (autoreset episodes use the default delay and a random
    cue). ``d3rlpy_elmur.evaluate`` accepts it as it is, with :func:`balanced_cue_options`.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": "next_step"}

    def __init__(
        self,
        num_envs: int,
        num_cues: int = 3,
        delay: int = 10,
        answer: RecallAnswer = "flag",
        actions: RecallActions = "discrete",
        noise_features: int = 1,
        late: bool = False,
    ) -> None:
        if isinstance(num_envs, bool) or int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        _check_delay(delay)
        n = int(num_envs)
        self.task = RecallTask(num_cues, answer, actions, noise_features, late)
        self.num_envs = n
        self.default_delay = int(delay)
        self.single_observation_space = self.task.observation_space()
        self.single_action_space = self.task.action_space()
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n)

        self._rngs: list[np.random.Generator | None] = [None] * n  # made lazily, like Env's
        self._noise = np.zeros((n, _NOISE_BLOCK, noise_features), dtype=np.float32)
        self._noise_index = np.full(n, _NOISE_BLOCK, dtype=np.int64)
        self._rows = np.arange(n)
        self._cue = np.zeros(n, dtype=np.int64)
        self._delay = np.full(n, self.default_delay, dtype=np.int64)
        self._onset = np.zeros(n, dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._n_right = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    @classmethod
    def from_env(cls, env: gym.Env[Any, Any], num_envs: int) -> RecallVectorEnv | None:
        """The vector version of ``env`` if it is a :class:`RecallEnv` (possibly inside
        gymnasium's checker wrappers, which change nothing per step), else None."""
        while isinstance(env, (gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)):
            env = env.env
        if type(env) is not RecallEnv:
            return None
        return cls(num_envs, delay=env.default_delay, **env.task.env_kwargs())

    @property
    def cue(self) -> np.ndarray:
        """The cue per sub-env."""
        return self._cue.copy()

    @property
    def delay(self) -> np.ndarray:
        """The delay per sub-env."""
        return self._delay.copy()

    @property
    def onset(self) -> np.ndarray:
        """The step at which each sub-env's episode shows its cue (0 unless ``late``)."""
        return self._onset.copy()

    @property
    def elapsed_steps(self) -> np.ndarray:
        """Steps taken in each sub-env's current episode."""
        return self._t.copy()

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        reseed_sub_envs(self._rngs, self._noise_index, seed, stale=_NOISE_BLOCK)
        options = options or {}
        delays = np.broadcast_to(np.asarray(options.get("delay", self.default_delay)), (n,))
        for value in np.unique(delays):
            _check_delay(value.item())
        if "cue" in options:
            cues = np.broadcast_to(np.asarray(options["cue"]), (n,))
            _check_cues(cues, self.task.num_cues)
            self._cue[:] = cues
        else:
            self._cue[:] = self._draw_cues(self._rows)
        self._delay[:] = delays
        self._draw_onsets(self._rows)
        self._t[:] = 0
        self._n_right[:] = 0
        self._autoreset[:] = False
        self._started = True
        return self._observe(), {"delay": self._delay.copy(), "_delay": np.ones(n, bool)}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("RecallVectorEnv.step() called before reset()")
        task, n = self.task, self.num_envs
        if task.discrete:
            a = _discrete_actions(actions, n, task.action_size)
        else:
            a = _continuous_actions(actions, n, task.action_size)
        resetting = self._autoreset
        running = ~resetting
        right = answers_right(task, a, self._cue) & running
        last = (self._t == self._delay) & running
        if task.answer == "every":
            self._n_right += right
            reward = np.where(right, 1.0 / (self._delay + 1), 0.0)
            success = self._n_right == self._delay + 1
        else:
            reward = np.where(last & right, 1.0, 0.0)
            success = right
        self._t += running
        infos: dict[str, Any] = {}
        if last.any():
            infos["success"] = success & last
            infos["_success"] = last.copy()
        if resetting.any():
            # next-step autoreset: the action is ignored; default delay, random cue
            index = np.flatnonzero(resetting)
            self._cue[index] = self._draw_cues(index)
            self._delay[index] = self.default_delay
            self._draw_onsets(index)
            self._t[index] = 0
            self._n_right[index] = 0
            infos["delay"] = np.where(resetting, self._delay, 0)
            infos["_delay"] = resetting.copy()
        self._autoreset = last
        truncated = np.zeros(n, dtype=bool)
        return self._observe(), reward, last, truncated, infos

    def _rng(self, i: int) -> np.random.Generator:
        rng = self._rngs[i]
        if rng is None:
            rng = self._rngs[i] = seeding.np_random()[0]
        return rng

    def _draw_cues(self, index: np.ndarray) -> np.ndarray:
        """One cue draw per listed sub-env from its own generator, as RecallEnv.reset does."""
        return np.array([self._rng(i).integers(self.task.num_cues) for i in index], np.int64)

    def _draw_onsets(self, index: np.ndarray) -> None:
        """The listed sub-envs' onsets (after their cue and delay are set): drawn, as
        RecallEnv.reset does, when the cue is late, else 0."""
        if self.task.late:
            for i in index:
                self._onset[i] = self._rng(i).integers(self._delay[i] // 2 + 1)

    def _observe(self) -> np.ndarray:
        """Observations [n, k + 1 + noise]; the cue shows where ``t`` is the onset."""
        k = self.task.num_cues
        obs = np.zeros((self.num_envs, self.task.observation_size), dtype=np.float32)
        shown = np.flatnonzero(self._t == self._onset)
        obs[shown, self._cue[shown]] = 1.0
        if self.task.answer == "every":
            obs[:, k] = self._t <= self._delay
        else:
            obs[:, k] = self._t == self._delay
        if self.task.noise_features:
            obs[:, k + 1 :] = self._next_noise()
        return obs

    def _next_noise(self) -> np.ndarray:
        # every sub-env draws one row per step, so the indices move in lockstep
        empty = self._noise_index >= _NOISE_BLOCK
        if empty.any():
            for i in np.flatnonzero(empty):
                rng = self._rngs[i]
                assert rng is not None
                self._noise[i] = rng.integers(-1, 2, size=self._noise.shape[1:])
            self._noise_index[empty] = 0
        value = self._noise[self._rows, self._noise_index]
        self._noise_index += 1
        return value


class RecallExpert:
    """The optimal recall policy from observations: remember the cue, answer when due, else
    wait with the no-op. Its only state is the remembered cue."""

    def __init__(self, task: RecallTask) -> None:
        self.task = task
        self._cue = -1

    def reset(self) -> None:
        self._cue = -1

    def act(self, observation: Any) -> Any:
        obs = np.asarray(observation)
        k = self.task.num_cues
        if obs[:k].any():
            self._cue = int(obs[:k].argmax())
        if obs[k] == 1 and self._cue >= 0:
            return self.task.answer_action(self._cue)
        return self.task.wait_action()


def _expert_for(env: gym.Env[Any, Any]) -> RecallExpert:
    inner = env.unwrapped
    if not isinstance(inner, RecallEnv):
        raise TypeError(f"the 'recall' expert needs a RecallEnv, got {type(inner).__name__}")
    return RecallExpert(inner.task)


register_expert("recall", _expert_for)


def balanced_cue_options(
    num_cues: int, delay: int | None = None
) -> Callable[[int, int], dict[str, Any]]:
    """``reset_options`` for :func:`d3rlpy_elmur.evaluate` on a :class:`RecallVectorEnv`:
    episode i gets cue ``i % num_cues`` (balanced whenever the episode count is a multiple of
    k, off by at most one episode per cue otherwise); ``delay`` overrides the env's default."""

    def options(first: int, num_envs: int) -> dict[str, Any]:
        out: dict[str, Any] = {"cue": (first + np.arange(num_envs)) % num_cues}
        if delay is not None:
            out["delay"] = delay
        return out

    return options


def recall_dataset(
    task: RecallTask | str,
    n_episodes: int,
    max_delay: int,
    seed: int,
    min_delay: int = 1,
) -> ReplayBuffer:
    """A d3rlpy ``ReplayBuffer`` of ``n_episodes`` expert episodes of ``task``.

    Delays are uniform in ``min_delay..max_delay`` (so with ``max_delay = S*K - 2`` some
    decisions fall inside a model's attention window and some outside it); cues are balanced
    (each cue ``n_episodes // k`` or one more times) in a random order. Each episode is a
    :class:`RecallEnv` rollout of :class:`RecallExpert` with a reset seed derived from
    ``seed``, so the buffer is a pure function of the arguments. Episode i has
    ``delay + 1`` steps (its delay is ``len(episode) - 1``) and is terminal.
    """
    # the envs need no d3rlpy (like the rest of this package); only the buffer does
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

    task = RecallTask.from_name(task) if isinstance(task, str) else task
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    _check_delay(min_delay)
    if max_delay < min_delay:
        raise ValueError(f"max_delay={max_delay} must be >= min_delay={min_delay}")
    rng = np.random.default_rng(seed)
    cues = rng.permutation(np.arange(n_episodes) % task.num_cues)
    delays = rng.integers(min_delay, max_delay + 1, size=n_episodes)
    reset_seeds = np.random.SeedSequence(seed).generate_state(n_episodes)
    env = task.make_env(max_delay)
    expert = RecallExpert(task)
    episodes = []
    for cue, delay, reset_seed in zip(cues, delays, reset_seeds, strict=True):
        obs, _ = env.reset(seed=int(reset_seed), options={"cue": int(cue), "delay": int(delay)})
        expert.reset()
        observations, actions, rewards = [], [], []
        done = False
        while not done:
            action = expert.act(obs)
            observations.append(obs)
            actions.append(action)
            obs, reward, done, _, _ = env.step(action)
            rewards.append(float(reward))
        episodes.append(
            Episode(
                observations=np.stack(observations),
                actions=np.array(actions, dtype=np.int64 if task.discrete else np.float32).reshape(
                    len(actions), -1
                ),
                rewards=np.array(rewards, dtype=np.float32).reshape(-1, 1),
                terminated=True,
            )
        )
    return ReplayBuffer(
        InfiniteBuffer(),
        episodes=episodes,
        action_space=ActionSpace.DISCRETE if task.discrete else ActionSpace.CONTINUOUS,
        action_size=task.action_size,
    )
