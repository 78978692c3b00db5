"""Each privileged POPGym expert meets its documented return bound over 20 episodes."""

from __future__ import annotations

import numpy as np
import pytest

from d3rlpy_elmur.envs import (
    EXPERT_RETURN_BOUNDS,
    expert_name_for_popgym,
    make_expert,
    make_popgym_env,
)

pytest.importorskip("popgym")


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


@pytest.mark.parametrize("env_id", sorted(EXPERT_RETURN_BOUNDS))
def test_expert_meets_its_bound(env_id: str) -> None:
    assert mean_return(env_id, "expert") >= EXPERT_RETURN_BOUNDS[env_id]


@pytest.mark.parametrize(
    "env_id", ["popgym-RepeatPreviousEasy-v0", "popgym-PositionOnlyPendulumEasy-v0"]
)
def test_bounds_are_far_above_a_random_policy(env_id: str) -> None:
    assert mean_return(env_id, "random") < EXPERT_RETURN_BOUNDS[env_id] - 0.3


def test_required_tasks_are_covered() -> None:
    required = {
        f"popgym-{name}-v0"
        for name in (
            "RepeatPreviousEasy",
            "RepeatPreviousMedium",
            "RepeatPreviousHard",
            "AutoencodeEasy",
            "AutoencodeMedium",
            "CountRecallEasy",
            "PositionOnlyCartPoleEasy",
            "PositionOnlyCartPoleMedium",
            "PositionOnlyPendulumEasy",
        )
    }
    assert required <= set(EXPERT_RETURN_BOUNDS)
