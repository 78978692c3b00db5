"""Batched online evaluation: many episodes at once, one batched model call per step.

Each round resets a gymnasium vector env with one seed per sub-env and steps every sub-env until
each has finished one episode; the model's step path runs all rows together. Rounds repeat until
``n_episodes`` episodes are done. Sub-envs that finish early are stepped on (their autoreset
episodes are ignored), which keeps every model call the same shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ..defaults import DEFAULT_TARGET_RETURN
from ..envs.recall import RecallVectorEnv
from ..envs.tmaze_vector import TMazeVectorEnv
from ..observations import map_observations
from .envs import make_eval_env
from .policies import BatchPolicy, make_batch_policy

__all__ = ["evaluate", "run_episodes", "check_spaces", "EnvLike", "MAX_ENVS", "ResetOptions"]

EnvLike = gym.Env | gym.vector.VectorEnv | str
# Sub-envs per round: up to 100 episodes run as one batch.
MAX_ENVS = 100


class _BorrowedEnv(gym.vector.SyncVectorEnv):
    """The caller's Env as a one-env vector env whose close (also on garbage collection)
    leaves the Env open: callers evaluate with the same Env again, as d3rlpy's evaluators do."""

    def close_extras(self, **kwargs: Any) -> None:
        pass


def _as_vector_env(env: EnvLike, n_envs: int) -> tuple[gym.vector.VectorEnv, bool]:
    """(vector env, whether we made it and must close it).

    An env id is built by ``make_eval_env``. A passive T-Maze or a recall-task instance runs
    as its numpy twin (TMazeVectorEnv, RecallVectorEnv): the same transitions and noise as
    SyncVectorEnv over the Env for the same seeds, in a few numpy operations per batched step
    instead of a Python loop over sub-envs. Any other Env is the caller's and stays open.
    """
    if isinstance(env, gym.vector.VectorEnv):
        return env, False
    if isinstance(env, str):
        return make_eval_env(env, n_envs), True
    if isinstance(env, gym.Env):
        fast = TMazeVectorEnv.from_env(env, n_envs) or RecallVectorEnv.from_env(env, n_envs)
        if fast is not None:
            return fast, True
        return _BorrowedEnv([lambda: env]), False
    raise TypeError(f"env must be a gymnasium Env, VectorEnv or env id, got {type(env)!r}")


ResetOptions = dict[str, Any] | Callable[[int, int], dict[str, Any]] | None


def run_episodes(
    policy: BatchPolicy,
    env: gym.vector.VectorEnv,
    n_episodes: int,
    seed: int = 0,
    reset_options: ResetOptions = None,
    max_steps: int | None = None,
    show_progress: bool = False,
    per_episode: bool = False,
) -> dict[str, Any]:
    """Runs ``n_episodes`` episodes of ``policy`` in rounds of ``env.num_envs``.

    Episode i is reset with seed ``seed + i``. Returns the keys described in ``evaluate``.
    """
    if n_episodes <= 0:
        raise ValueError(f"n_episodes={n_episodes} must be positive")
    n_envs = env.num_envs
    returns: list[float] = []
    successes: list[float] = []
    env_steps = 0
    start = time.perf_counter()
    bar = tqdm(disable=not show_progress, unit="step", desc="evaluate")
    try:
        first = 0
        while first < n_episodes:
            active = min(n_envs, n_episodes - first)
            options = reset_options(first, n_envs) if callable(reset_options) else reset_options
            seeds = [seed + first + i for i in range(n_envs)]
            # gymnasium types VectorEnv.reset's seed as int | None; its vector envs take a list
            obs, _ = env.reset(seed=cast(Any, seeds), options=options)
            policy.reset(n_envs)
            done = np.arange(n_envs) >= active
            ep_return = np.zeros(n_envs)
            ep_success = np.full(n_envs, np.nan)
            reward = np.zeros(n_envs)
            t = 0
            while not done.all() and (max_steps is None or t < max_steps):
                actions = policy.act(map_observations(np.asarray, obs), reward)
                obs, reward, terminated, truncated, info = env.step(actions)
                reward = np.asarray(reward, dtype=np.float64)
                running = ~done
                ep_return[running] += reward[running]
                env_steps += int(running.sum())
                finished = (np.asarray(terminated) | np.asarray(truncated)) & running
                if finished.any() and "success" in info:
                    has = info.get("_success", np.ones(n_envs, dtype=bool))
                    got = finished & has
                    ep_success[got] = np.asarray(info["success"], dtype=np.float64)[got]
                done |= finished
                t += 1
                if t % 1000 == 0:
                    bar.update(1000)
            returns.extend(ep_return[:active].tolist())
            successes.extend(ep_success[:active].tolist())
            first += active
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    success = np.array(successes)
    reported = ~np.isnan(success)
    result: dict[str, Any] = {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "success_rate": float(np.nan_to_num(success, nan=0.0).mean()) if reported.any() else None,
        "episodes": len(returns),
        "env_steps": env_steps,
        "seconds": seconds,
        "env_steps_per_second": env_steps / max(seconds, 1e-9),
    }
    if per_episode:
        result["episode_returns"] = returns
        result["episode_successes"] = [None if np.isnan(x) else x for x in successes]
    return result


def evaluate(
    algo: Any,
    env: EnvLike,
    n_episodes: int = 100,
    seed: int = 0,
    target_return: float = DEFAULT_TARGET_RETURN,
    greedy: bool = True,
    reset_options: dict[str, Any] | Callable[[int, int], dict[str, Any]] | None = None,
    max_steps: int | None = None,
    show_progress: bool = False,
    per_episode: bool = False,
) -> dict[str, Any]:
    """Runs ``n_episodes`` episodes of ``algo`` and reports returns and success.

    Args:
        algo: a built ELMURDT / DiscreteELMURDT, or one of d3rlpy's algorithms (its Q-learning
            algorithms and Decision Transformers, greedy).
        env: a gymnasium VectorEnv (its sub-envs run in parallel), an Env (one at a time), or
            an env id (``make_eval_env`` of up to 100 sub-envs: observations in the dataset
            loader's layout, T-Maze goals balanced by sub-env). A passive TMazeEnv runs as a
            TMazeVectorEnv of up to 100 sub-envs, with the same episodes; use
            ``balanced_goal_options`` from ``d3rlpy_elmur.envs`` as ``reset_options`` to
            balance its goals.
        n_episodes: episodes to run.
        seed: episode i is reset with seed ``seed + i``; softmax sampling is seeded too.
        target_return: return-to-go at t=0 (models with return-to-go tokens only).
        greedy: argmax actions (discrete); False samples from the softmax.
        reset_options: options for ``env.reset``, or ``f(first_episode, num_envs) -> options``
            (e.g. balanced goal sides).
        max_steps: stop a round after this many steps (unfinished episodes are counted with
            the return so far and no success).
        show_progress: a progress bar over env steps.
        per_episode: also return each episode's return and success, in episode order
            (``"episode_returns"``, ``"episode_successes"``: None where the env reports none).

    Returns:
        ``{"return_mean", "return_std", "success_rate" (None when the env reports no
        ``info["success"]``), "episodes", "env_steps", "seconds", "env_steps_per_second"}``.
    """
    policy = make_batch_policy(algo, float(target_return), greedy, seed)
    if n_episodes <= 0:
        raise ValueError(f"n_episodes={n_episodes} must be positive")
    venv, owned = _as_vector_env(env, min(n_episodes, MAX_ENVS))
    try:
        check_spaces(algo, venv)
        return run_episodes(
            policy, venv, n_episodes, seed, reset_options, max_steps, show_progress, per_episode
        )
    finally:
        if owned:
            venv.close()


def check_spaces(algo: Any, env: gym.vector.VectorEnv) -> None:
    """ValueError when ``env``'s actions or observations are not the model's, naming both."""
    impl = algo.impl
    space = env.single_action_space
    discrete = algo.get_action_type().name == "DISCRETE"
    model = f"{'discrete' if discrete else 'continuous'} actions of size {impl.action_size}"
    if isinstance(space, gym.spaces.Discrete):
        fits = discrete and int(space.n) == impl.action_size
        have = f"Discrete({space.n})"
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        fits = not discrete and space.shape[0] == impl.action_size
        have = f"Box of shape {space.shape}"
    else:
        fits, have = True, str(space)  # other spaces: the model's own checks decide
    if not fits:
        raise ValueError(f"the environment's actions are {have}; the model takes {model}")
    shape = env.single_observation_space.shape
    wanted = tuple(impl.observation_shape)
    if shape is not None and not isinstance(wanted[0], (list, tuple)) and tuple(shape) != wanted:
        raise ValueError(
            f"the environment's observations have shape {tuple(shape)}; the model takes {wanted}"
        )
