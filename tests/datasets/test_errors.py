"""Bad input gets a clear error naming dataset, episode and field; nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer
from minari.dataset._storages.hdf5_storage import HDF5Storage

from d3rlpy_elmur.datasets import (
    DatasetExistsError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetWriter,
    load_minari,
    make_tmaze_dataset,
)
from d3rlpy_elmur.envs import TMazeExpert

DATASET = "d3rlpy_elmur/broken-v0"


def hdf5_file(root: Path, dataset_id: str = DATASET) -> Path:
    return root / dataset_id / "data" / "main_data.hdf5"


def edit_episode(root: Path, episode: int, edit: Callable[[h5py.Group], None]) -> None:
    with h5py.File(hdf5_file(root), "a") as file:
        edit(file[f"episode_{episode}"])


def replace(group: h5py.Group, key: str, data: np.ndarray) -> None:
    del group[key]
    group.create_dataset(key, data=data)


@pytest.fixture
def built(minari_root: Path) -> Path:
    make_tmaze_dataset(DATASET, 6, 4, seed=0)
    return minari_root


def staging_dirs(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


# ------------------------------------------------------------------ unknown id
def test_unknown_id_names_the_id_and_the_root(minari_root: Path, monkeypatch) -> None:
    monkeypatch.delenv("ELMUR_RECIPES_DIR", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        load_minari("d3rlpy_elmur/nothing-v0")
    message = str(info.value)
    assert "'d3rlpy_elmur/nothing-v0'" in message
    assert str(minari_root.resolve()) in message
    assert "local datasets: none" in message
    assert isinstance(info.value, LookupError)
    # an id a recipe can build says how
    with pytest.raises(DatasetNotFoundError, match="elmur dataset build tmaze-c28-small"):
        load_minari("d3rlpy_elmur/tmaze-c28-small-v0")


def test_unknown_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_minari(tmp_path / "nowhere")


# ------------------------------------------------------------------ atomic builds
def test_existing_id_asks_for_overwrite(built: Path) -> None:
    before = hdf5_file(built).read_bytes()
    with pytest.raises(DatasetExistsError, match="overwrite=True to replace it") as info:
        make_tmaze_dataset(DATASET, 6, 4, seed=1)
    assert isinstance(info.value, FileExistsError)
    assert hdf5_file(built).read_bytes() == before
    make_tmaze_dataset(DATASET, 8, 4, seed=1, overwrite=True)
    assert len(load_minari(DATASET).episodes) == 8
    assert staging_dirs(built) == []


def crash_expert_after(monkeypatch, calls: int, error: BaseException) -> None:
    original = TMazeExpert.act
    count = {"n": 0}

    def act(self: TMazeExpert, observation: object) -> int:
        count["n"] += 1
        if count["n"] > calls:
            raise error
        return original(self, observation)

    monkeypatch.setattr(TMazeExpert, "act", act)


@pytest.mark.parametrize("error", [RuntimeError("simulated crash"), KeyboardInterrupt()])
def test_failure_mid_build_leaves_the_id_free(
    minari_root: Path, monkeypatch, error: BaseException
) -> None:
    # 100 episodes of ~3.5 steps: the crash comes after the first chunk hit the disk
    crash_expert_after(monkeypatch, 300, error)
    with pytest.raises(type(error)):
        make_tmaze_dataset(DATASET, 100, 5, seed=0)
    assert not (minari_root / DATASET).exists()
    assert staging_dirs(minari_root) == []
    monkeypatch.undo()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    make_tmaze_dataset(DATASET, 10, 5, seed=0)  # no overwrite needed
    assert len(load_minari(DATASET).episodes) == 10


def test_failure_inside_minari_write_leaves_the_id_free(minari_root: Path, monkeypatch) -> None:
    original = HDF5Storage.update_episodes
    count = {"n": 0}

    def update_episodes(self: HDF5Storage, episodes: object) -> None:
        count["n"] += 1
        if count["n"] == 2:
            raise OSError("simulated: disk full")
        original(self, episodes)

    monkeypatch.setattr(HDF5Storage, "update_episodes", update_episodes)
    with pytest.raises(OSError, match="disk full"):
        make_tmaze_dataset(DATASET, 100, 5, seed=0)
    assert count["n"] == 2
    assert not (minari_root / DATASET).exists()
    assert staging_dirs(minari_root) == []


def test_failed_overwrite_keeps_the_old_dataset(built: Path, monkeypatch) -> None:
    before = hdf5_file(built).read_bytes()
    crash_expert_after(monkeypatch, 10, RuntimeError("simulated crash"))
    with pytest.raises(RuntimeError):
        make_tmaze_dataset(DATASET, 50, 5, seed=3, overwrite=True)
    assert hdf5_file(built).read_bytes() == before
    assert len(load_minari(DATASET).episodes) == 6


def test_stale_staging_of_a_dead_process_is_removed(minari_root: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    minari_root.mkdir(parents=True)
    stale = minari_root / f".elmur-staging-{process.pid}-abc"
    (stale / DATASET / "data").mkdir(parents=True)
    make_tmaze_dataset(DATASET, 2, 2, seed=0)
    assert not stale.exists()


def test_writer_without_commit_writes_nothing(minari_root: Path) -> None:
    env = gym.make("d3rlpy_elmur/TMaze-v0")
    with DatasetWriter(DATASET, env=env, chunk_size=1) as writer:
        with pytest.raises(ValueError, match="length 0"):
            writer.add_episode(EpisodeBuffer(observations=np.zeros((1, 4))))
        writer.add_episode(
            EpisodeBuffer(
                observations=np.zeros((2, 4), np.float32),
                actions=np.array([0]),
                rewards=[0.0],
                terminations=[False],
                truncations=[True],
            )
        )
    assert not (minari_root / DATASET).exists()
    assert staging_dirs(minari_root) == []


# ------------------------------------------------------------------ corrupt files
def test_truncated_hdf5(built: Path) -> None:
    path = hdf5_file(built)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match="truncated HDF5 file") as info:
        load_minari(DATASET)
    assert DATASET in str(info.value) and "main_data.hdf5" in str(info.value)


def test_garbage_hdf5(built: Path) -> None:
    hdf5_file(built).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DatasetFormatError, match="corrupt or truncated"):
        load_minari(DATASET)


def test_corrupt_metadata(built: Path) -> None:
    (built / DATASET / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="cannot open") as info:
        load_minari(DATASET)
    assert DATASET in str(info.value)


def test_missing_episode_group(built: Path) -> None:
    with h5py.File(hdf5_file(built), "a") as file:
        del file["episode_3"]
    with pytest.raises(DatasetFormatError, match="episode 3"):
        load_minari(DATASET)


# ------------------------------------------------------------------ bad contents
def test_episode_of_length_zero(built: Path) -> None:
    def empty(group: h5py.Group) -> None:
        replace(group, "observations", group["observations"][:1])
        for key in ("actions", "rewards", "terminations", "truncations"):
            replace(group, key, group[key][:0])

    edit_episode(built, 2, empty)
    with pytest.raises(DatasetFormatError) as info:
        load_minari(DATASET)
    assert (info.value.episode, info.value.field) == (2, "actions")
    assert "length 0" in str(info.value) and DATASET in str(info.value)


def test_observation_count_must_be_actions_plus_one(built: Path) -> None:
    edit_episode(built, 1, lambda g: replace(g, "observations", g["observations"][:-1]))
    with pytest.raises(DatasetFormatError, match="N \\+ 1") as info:
        load_minari(DATASET)
    assert (info.value.episode, info.value.field) == (1, "observations")


def set_value(key: str, index: tuple, value: float) -> Callable[[h5py.Group], None]:
    def edit(group: h5py.Group) -> None:
        data = group[key][()].astype(np.float64 if key == "rewards" else group[key].dtype)
        data[index] = value
        replace(group, key, data)

    return edit


def test_nan_observation_errors_by_default(built: Path) -> None:
    edit_episode(built, 1, set_value("observations", (1, 2), np.nan))
    with pytest.raises(DatasetFormatError, match="on_nonfinite='drop_episode'") as info:
        load_minari(DATASET)
    assert (info.value.episode, info.value.field) == (1, "observations")
    assert "step 1" in str(info.value) and "nan" in str(info.value)


def test_nan_episode_can_be_dropped(built: Path) -> None:
    edit_episode(built, 1, set_value("observations", (0, 3), np.nan))
    with pytest.warns(UserWarning, match=r"dropped 1 episode.*\[1\]"):
        buffer = load_minari(DATASET, on_nonfinite="drop_episode")
    assert len(buffer.episodes) == 5
    assert all(abs(e.observations[0, 1]) == 1.0 for e in buffer.episodes)


def test_infinite_reward(built: Path) -> None:
    edit_episode(built, 0, set_value("rewards", (0,), np.inf))
    with pytest.raises(DatasetFormatError, match="inf") as info:
        load_minari(DATASET)
    assert (info.value.episode, info.value.field) == (0, "rewards")


def test_on_nonfinite_is_validated(built: Path) -> None:
    with pytest.raises(ValueError, match="on_nonfinite"):
        load_minari(DATASET, on_nonfinite="ignore")  # type: ignore[arg-type]


def test_discrete_action_outside_the_space(built: Path) -> None:
    edit_episode(built, 2, set_value("actions", (0,), 7))
    with pytest.raises(DatasetFormatError, match="outside Discrete\\(4\\)") as info:
        load_minari(DATASET)
    assert (info.value.episode, info.value.field) == (2, "actions")


def test_termination_before_the_last_step(built: Path) -> None:
    edit_episode(built, 4, set_value("terminations", (0,), True))
    with pytest.raises(DatasetFormatError, match="before the last step") as info:
        load_minari(DATASET)
    assert (info.value.episode, info.value.field) == (4, "terminations")


def test_continuous_action_outside_the_space(minari_root: Path) -> None:
    dataset_id = "test/pendulum-v0"
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    with DatasetWriter(dataset_id, env=env) as writer:
        for _ in range(3):
            writer.add_episode(
                EpisodeBuffer(
                    observations=rng.uniform(-1, 1, (5, 3)).astype(np.float32),
                    actions=rng.uniform(-2, 2, (4, 1)).astype(np.float32),
                    rewards=[0.0] * 4,
                    terminations=[False] * 4,
                    truncations=[False] * 3 + [True],
                )
            )
        writer.commit()
    buffer = load_minari(dataset_id)
    assert buffer.dataset_info.action_size == 1
    assert not any(e.terminated for e in buffer.episodes)  # truncations stay non-terminal
    with h5py.File(hdf5_file(minari_root, dataset_id), "a") as file:
        set_value("actions", (2, 0), 3.0)(file["episode_1"])
    with pytest.raises(DatasetFormatError, match="step 2") as info:
        load_minari(dataset_id)
    assert (info.value.episode, info.value.field) == (1, "actions")


def test_metadata_is_plain_json(built: Path) -> None:
    meta = json.loads((built / DATASET / "data" / "metadata.json").read_text())
    assert meta["elmur"]["expert_return_mean"] == 1.0
    assert meta["jpeg_encoding"] is False
