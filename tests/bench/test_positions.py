"""position_errors: the error profile over positions in a segment, from replayed episodes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from d3rlpy_elmur_cli.bench import position_errors


@dataclasses.dataclass
class Episode:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray

    def size(self) -> int:
        return len(self.actions)


def make_episode(length: int, discrete: bool, offset: float) -> Episode:
    steps = np.arange(length, dtype=np.float32)
    actions = (
        (np.arange(length) % 3)[:, None] if discrete else np.stack([steps, -steps], axis=1) / 10
    )
    # the observation holds the episode's id and step, so the policy can look the answer up
    observations = np.stack([np.full(length, offset), steps], axis=1).astype(np.float32)
    return Episode(observations, actions, (steps + offset)[:, None])


class Oracle:
    """The dataset's action, off by ``miss`` at the positions t mod K in ``wrong``, and
    always wrong on padding (an observation repeated after the episode's end)."""

    def __init__(self, episodes: list[Episode], context: int, wrong: set[int], miss: float):
        self.answers = {float(e.observations[0, 0]): e.actions for e in episodes}
        self.context, self.wrong, self.miss = context, wrong, miss
        self.rewards_seen: list[np.ndarray] = []

    def reset(self, n_envs: int) -> None:
        self.rewards_seen = []
        self.previous = [None] * n_envs

    def act(self, observations: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        self.rewards_seen.append(rewards.copy())
        rows = []
        for i, (episode_id, t) in enumerate(observations):
            answers = self.answers[float(episode_id)]
            action = answers[min(int(t), len(answers) - 1)].astype(np.float64)
            padding = self.previous[i] == (episode_id, t)
            self.previous[i] = (episode_id, t)
            wrong = padding or int(t) % self.context in self.wrong
            rows.append(action + (self.miss if wrong else 0) + (1e6 if padding else 0))
        actions = np.stack(rows)
        return actions[:, 0].astype(np.int64) if actions.shape[1] == 1 else actions


def test_discrete_errors_land_on_their_positions_and_padding_is_not_counted() -> None:
    episodes = [make_episode(7, True, 0.0), make_episode(12, True, 1.0)]
    policy = Oracle(episodes, context=5, wrong={0, 3}, miss=1)
    result = position_errors(policy, episodes, context_size=5)
    assert result["metric"] == "error rate"
    assert result["by_position"] == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert result["steps"] == 19  # 7 + 12, not 2 x 12
    # wrong steps: t in {0, 3, 5} of the first, {0, 3, 5, 8, 10} of the second
    assert result["overall"] == pytest.approx(8 / 19)
    # the reward that came with each observation: 0 first, then the previous step's
    seen = np.stack(policy.rewards_seen)  # [T, N]
    assert seen[0].tolist() == [0.0, 0.0]
    assert seen[1:7, 0].tolist() == list(range(6))
    assert seen[1:, 1].tolist() == [float(t + 1) for t in range(11)]


def test_continuous_actions_report_mean_squared_error() -> None:
    episodes = [make_episode(8, False, 0.0), make_episode(8, False, 1.0)]
    result = position_errors(Oracle(episodes, 4, {2}, miss=0.5), episodes, context_size=4)
    assert result["metric"] == "mean squared error"
    assert result["by_position"] == pytest.approx([0.0, 0.0, 0.25, 0.0])
    assert result["overall"] == pytest.approx(0.25 / 4)


def test_positions_no_episode_reaches_are_none() -> None:
    episodes = [make_episode(3, True, 0.0)]
    result = position_errors(Oracle(episodes, 5, set(), 1), episodes, context_size=5)
    assert result["by_position"] == [0.0, 0.0, 0.0, None, None]


def test_bad_input_is_refused() -> None:
    episodes = [make_episode(4, True, 0.0)]
    with pytest.raises(ValueError, match="context_size"):
        position_errors(Oracle(episodes, 2, set(), 0), episodes, context_size=0)
    with pytest.raises(ValueError, match="no episodes"):
        position_errors(Oracle(episodes, 2, set(), 0), [], context_size=2)
