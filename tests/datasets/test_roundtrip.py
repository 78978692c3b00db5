"""Build -> load_minari: cue, lengths and actions survive, for Box, Dict and image data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import minari
import numpy as np
import pytest
from d3rlpy.constants import ActionSpace

from d3rlpy_elmur.datasets import (
    datasets_root,
    load_minari,
    make_tmaze_dataset,
    tmaze_episode_plan,
)
from d3rlpy_elmur.envs import decode_tmaze_frame

DATASET = "d3rlpy_elmur/test-tmaze-v0"


def raw_episodes(dataset_id: str) -> list:
    ds = minari.load_dataset(dataset_id)
    meta = list(ds.storage.get_episode_metadata(ds.episode_indices))
    return list(zip(ds.iterate_episodes(), meta, strict=True))


def test_dataset_lands_under_the_temporary_root(minari_root: Path) -> None:
    path = make_tmaze_dataset(DATASET, 4, 3, seed=0)
    assert datasets_root() == minari_root.resolve()
    assert path == minari_root.resolve() / DATASET
    assert (path / "data" / "main_data.hdf5").is_file()
    assert [p.name for p in minari_root.iterdir() if p.name.startswith(".")] == []


def test_tmaze_box_roundtrip() -> None:
    n, max_length = 16, 6
    make_tmaze_dataset(DATASET, n, max_length, seed=1)
    buffer = load_minari(DATASET)
    raws = raw_episodes(DATASET)
    assert len(buffer.episodes) == n == len(raws)
    info = buffer.dataset_info
    assert info.action_space == ActionSpace.DISCRETE and info.action_size == 4
    assert info.observation_signature.shape == [(4,)]
    goals = []
    for episode, (raw, meta) in zip(buffer.episodes, raws, strict=True):
        goal = int(meta["options"]["goal"])
        length = int(meta["options"]["corridor_length"])
        goals.append(goal)
        assert 1 <= length <= max_length
        steps = len(raw.actions)
        assert steps == length + 1 == episode.size()
        # every episode starts with its own cue (the get_minari bug shifts episode k)
        assert episode.observations[0, 1] == goal
        np.testing.assert_array_equal(episode.observations, raw.observations[:steps])
        np.testing.assert_array_equal(episode.actions[:, 0], raw.actions)
        assert episode.actions.dtype == np.int64
        assert episode.actions[:-1, 0].tolist() == [0] * length
        assert episode.actions[-1, 0] == (1 if goal == 1 else 3)
        assert episode.rewards[:, 0].tolist() == [0.0] * length + [1.0]
        assert episode.terminated
    assert sorted(goals) == [-1] * (n // 2) + [1] * (n // 2)


def test_d3rlpy_can_sample_the_loaded_buffer() -> None:
    make_tmaze_dataset(DATASET, 6, 5, seed=0)
    buffer = load_minari(DATASET)
    batch = buffer.sample_trajectory_batch(3, length=4)
    assert batch.observations.shape == (3, 4, 4)
    assert batch.actions.shape == (3, 4, 1)


def test_tmaze_dict_roundtrip() -> None:
    make_tmaze_dataset(DATASET, 6, 4, seed=2, env_kwargs={"observation_format": "dict"})
    buffer = load_minari(DATASET)
    assert buffer.dataset_info.observation_signature.shape == [(6,)]
    for episode, (raw, meta) in zip(buffer.episodes, raw_episodes(DATASET), strict=True):
        obs = episode.observations
        steps = len(raw.actions)
        # sorted keys: cue (1), noise one-hot (3), position [y, flag] (2)
        assert obs[0, 0] == meta["options"]["goal"]
        np.testing.assert_array_equal(obs[:, 0], raw.observations["cue"][:steps, 0])
        np.testing.assert_array_equal(obs[:, 1:4].argmax(axis=1), raw.observations["noise"][:steps])
        assert np.all(obs[:, 1:4].sum(axis=1) == 1.0)
        np.testing.assert_array_equal(obs[:, 4:], raw.observations["position"][:steps])
        np.testing.assert_array_equal(episode.actions[:, 0], raw.actions)


def test_visual_tmaze_roundtrip_is_lossless() -> None:
    make_tmaze_dataset(DATASET, 4, 5, seed=3, visual=True)
    buffer = load_minari(DATASET)
    assert buffer.dataset_info.observation_signature.shape == [(3, 32, 32)]
    assert buffer.dataset_info.observation_signature.dtype == [np.dtype(np.uint8)]
    for episode, (raw, meta) in zip(buffer.episodes, raw_episodes(DATASET), strict=True):
        steps = len(raw.actions)
        assert episode.observations.dtype == np.uint8
        np.testing.assert_array_equal(episode.observations, raw.observations[:steps])
        assert decode_tmaze_frame(episode.observations[0])[1] == meta["options"]["goal"]
        assert all(decode_tmaze_frame(f)[1] == 0 for f in episode.observations[1:])
        assert episode.size() == meta["options"]["corridor_length"] + 1


def test_build_is_deterministic_and_records_metadata() -> None:
    make_tmaze_dataset(DATASET, 8, 5, seed=4)
    first = [e.observations for e in load_minari(DATASET).episodes]
    make_tmaze_dataset(DATASET, 8, 5, seed=4, overwrite=True)
    second = [e.observations for e in load_minari(DATASET).episodes]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    meta = minari.load_dataset(DATASET).storage.metadata["elmur"]
    assert meta["expert_return_mean"] == 1.0
    assert meta["expert_success_rate"] == 1.0
    assert meta["n_episodes"] == 8 and meta["seed"] == 4
    assert meta["max_corridor_length"] == 5


def test_episode_plan_balances_goals_and_spreads_lengths() -> None:
    plan = tmaze_episode_plan(2000, 28, seed=0)
    goals = [g for g, _ in plan]
    lengths = np.array([length for _, length in plan])
    assert goals.count(1) == goals.count(-1) == 1000
    assert lengths.min() == 1 and lengths.max() == 28
    counts = np.bincount(lengths, minlength=29)[1:]
    assert counts.min() > 40  # uniform: ~71 per length
    odd = tmaze_episode_plan(7, 3, seed=0)
    assert abs(sum(g for g, _ in odd)) == 1
    assert tmaze_episode_plan(7, 3, seed=0) == odd
    assert tmaze_episode_plan(7, 3, seed=1) != odd


def test_load_by_path_and_by_dataset_object(minari_root: Path) -> None:
    path = make_tmaze_dataset(DATASET, 3, 3, seed=0)
    by_path = load_minari(path)
    by_object = load_minari(minari.load_dataset(DATASET))
    assert len(by_path.episodes) == len(by_object.episodes) == 3


POPGYM_CASES = [
    # env id, flat observation size, one-hot groups, discrete actions, action size,
    # terminates (else truncated)
    ("popgym-RepeatPreviousEasy-v0", 4, 1, True, 4, True),  # Discrete obs
    ("popgym-AutoencodeEasy-v0", 6, 2, True, 4, True),  # Tuple(Discrete, Discrete)
    ("popgym-CountRecallEasy-v0", 4, 2, True, 27, True),  # MultiDiscrete
    ("popgym-PositionOnlyPendulumEasy-v0", 2, 0, False, 1, False),  # Box, continuous
]


@pytest.mark.parametrize("case", POPGYM_CASES, ids=[c[0] for c in POPGYM_CASES])
def test_popgym_roundtrip(case: tuple) -> None:
    pytest.importorskip("popgym")
    from d3rlpy_elmur.datasets import make_popgym_dataset

    env_id, obs_size, groups, discrete, action_size, terminates = case
    dataset_id = "d3rlpy_elmur/test-popgym-v0"
    make_popgym_dataset(dataset_id, env_id, 3, seed=0)
    buffer = load_minari(dataset_id)
    info = buffer.dataset_info
    assert info.observation_signature.shape == [(obs_size,)]
    assert info.action_size == action_size
    assert info.action_space == (ActionSpace.DISCRETE if discrete else ActionSpace.CONTINUOUS)
    for episode, (raw, _) in zip(buffer.episodes, raw_episodes(dataset_id), strict=True):
        assert episode.size() == len(raw.actions)
        assert episode.terminated == terminates
        if discrete:
            assert np.all(episode.observations.sum(axis=1) == groups)  # one-hots
            np.testing.assert_array_equal(episode.actions[:, 0], raw.actions)
            if groups == 1:
                np.testing.assert_array_equal(
                    episode.observations.argmax(axis=1),
                    raw.observations[: episode.size()],
                )
        else:
            np.testing.assert_array_equal(episode.actions, raw.actions)
            np.testing.assert_array_equal(episode.observations, raw.observations[: episode.size()])
    meta = minari.load_dataset(dataset_id).storage.metadata["elmur"]
    assert meta["expert_return_mean"] >= 0.8


def test_d3rlpy_get_minari_refuses_our_datasets_instead_of_misaligning_them() -> None:
    """The README's "Loading datasets": d3rlpy's get_minari would join each episode's N + 1
    observations to N actions; on our datasets it stops before that (T-Maze: no fixed episode
    limit in the env spec; POPGym: Discrete observations), so load_minari is the loader."""
    import d3rlpy

    make_tmaze_dataset(DATASET, 4, 3, seed=0)
    with pytest.raises(AssertionError, match="max_episode_steps"):
        d3rlpy.datasets.get_minari(DATASET)
    assert load_minari(DATASET).episodes[1].observations[0, 1] in (-1, 1)  # the cue, aligned
    if importlib.util.find_spec("popgym") is None:
        return
    from d3rlpy_elmur.datasets import make_popgym_dataset

    make_popgym_dataset("d3rlpy_elmur/test-popgym-v0", "popgym-RepeatPreviousEasy-v0", 2, seed=0)
    with pytest.raises(ValueError, match="Unsupported observation space"):
        d3rlpy.datasets.get_minari("d3rlpy_elmur/test-popgym-v0")
