"""Each POPGym expert meets its documented return bound (seeds 0..19); the observation-only
experts act on their observations alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from d3rlpy_elmur.envs import (
    EXPERT_RETURN_BOUNDS,
    POPGYM_EXPERT_NAMES,
    describe_popgym_expert,
    expert_name_for_popgym,
    make_expert,
    make_popgym_env,
)
from d3rlpy_elmur.extras import available

pytest.importorskip("popgym")

FAMILIES = sorted(POPGYM_EXPERT_NAMES)
LEVELS = ("Easy", "Medium", "Hard")
TASKS = [f"popgym-{family}{level}-v0" for family in FAMILIES for level in LEVELS]
# popgym registers the labyrinths only where mazelib is installed
NEEDS_MAZELIB = pytest.mark.skipif(not available("mazelib"), reason="mazelib is not installed")
# experts that must not read hidden state (their module docstrings say why)
OBSERVATION_ONLY = {
    "Battleship",
    "Concentration",
    "HigherLower",
    "LabyrinthEscape",
    "LabyrinthExplore",
    "MineSweeper",
    "MultiarmedBandit",
}


def task_param(env_id: str) -> Any:
    return pytest.param(env_id, marks=NEEDS_MAZELIB) if "Labyrinth" in env_id else env_id


def mean_return(env_id: str, policy: str, episodes: int = 20) -> float:
    env = make_popgym_env(env_id)
    expert = make_expert(expert_name_for_popgym(env_id), env)
    env.action_space.seed(0)
    returns = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        total = 0.0
        while True:
            action = expert.act(obs) if policy == "expert" else env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.parametrize("env_id", [task_param(t) for t in TASKS])
def test_expert_meets_its_bound(env_id: str) -> None:
    assert mean_return(env_id, "expert") >= EXPERT_RETURN_BOUNDS[env_id]


@pytest.mark.parametrize("env_id", [task_param(f"popgym-{family}Easy-v0") for family in FAMILIES])
def test_bounds_are_far_above_a_random_policy(env_id: str) -> None:
    assert mean_return(env_id, "random", episodes=10) < EXPERT_RETURN_BOUNDS[env_id] - 0.3


def test_every_task_has_a_bound_and_an_expert() -> None:
    assert len(FAMILIES) == 16 and set(EXPERT_RETURN_BOUNDS) == set(TASKS)
    assert expert_name_for_popgym("popgym-VelocityOnlyCartpoleHard-v0") == (
        "popgym-velocity-only-cartpole"  # popgym spells this family with a lower-case p
    )
    with pytest.raises(LookupError, match="supported families"):
        expert_name_for_popgym("popgym-VelocityOnlyCartPoleEasy-v0")


def test_each_expert_says_whether_it_reads_the_hidden_state() -> None:
    for family, name in POPGYM_EXPERT_NAMES.items():
        kind = "observation-only" if family in OBSERVATION_ONLY else "privileged"
        assert describe_popgym_expert(name).startswith(f"{kind} expert {name}")


def play(env_id: str, seed: int) -> tuple[list[Any], list[Any]]:
    """Observations and actions of one expert episode."""
    env = make_popgym_env(env_id)
    expert = make_expert(expert_name_for_popgym(env_id), env)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    observations, actions = [], []
    while True:
        observations.append(obs)
        actions.append(expert.act(obs))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        if terminated or truncated:
            return observations, actions


@pytest.mark.parametrize(
    "env_id",
    [
        "popgym-BattleshipEasy-v0",
        "popgym-ConcentrationHard-v0",
        "popgym-HigherLowerMedium-v0",
        "popgym-MineSweeperMedium-v0",
        "popgym-MultiarmedBanditEasy-v0",
    ],
)
def test_observation_only_experts_act_the_same_on_a_twin_environment(env_id: str) -> None:
    """Bound to another game (another seed), fed the first game's observations, the expert
    makes the same moves: it reads nothing of its environment but the task's constants."""
    observations, actions = play(env_id, seed=1)
    twin = make_popgym_env(env_id)
    twin.reset(seed=2)
    expert = make_expert(expert_name_for_popgym(env_id), twin)
    expert.reset()
    replayed = [expert.act(obs) for obs in observations]
    assert len(actions) > 5
    assert all(np.array_equal(a, b) for a, b in zip(actions, replayed, strict=True))


@NEEDS_MAZELIB
def test_labyrinth_explore_expert_visits_every_free_cell() -> None:
    env = make_popgym_env("popgym-LabyrinthExploreHard-v0")
    expert = make_expert(expert_name_for_popgym("popgym-LabyrinthExploreHard-v0"), env)
    obs, _ = env.reset(seed=0)
    expert.reset()
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
    assert terminated and not truncated  # all free cells visited before the time limit
