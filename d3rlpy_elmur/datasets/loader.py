"""Minari datasets -> d3rlpy ``ReplayBuffer``, aligned, validated, without an environment.

Minari stores N+1 observations per episode (the last is the observation after the final
action); d3rlpy's ``Episode`` stores N. Episode k therefore keeps observations ``[0, N)``
of its own episode. (d3rlpy's ``get_minari`` concatenates the N+1 observations of all
episodes against their N actions, which shifts episode k by k steps and destroys the
cue of memory tasks; we do not use it.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import h5py
import numpy as np
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import (
    BasicTrajectorySlicer,
    BasicTransitionPicker,
    Episode,
    InfiniteBuffer,
    ReplayBuffer,
    Signature,
    TrajectorySlicerProtocol,
    TransitionPickerProtocol,
)
from minari import MinariDataset

from .errors import DatasetFormatError, DatasetNotFoundError, RecipeError
from .recipes import find_recipe_by_id
from .spaces import (
    action_size_of,
    convert_actions,
    convert_observations,
    flatten_observation_space,
    is_discrete_action_space,
)
from .writer import datasets_root, local_dataset_ids

__all__ = ["NonFinitePolicy", "episodes_from_minari", "load_minari", "open_minari"]

NonFinitePolicy = Literal["error", "drop_episode"]


def open_minari(dataset_or_id: MinariDataset | str | os.PathLike[str]) -> MinariDataset:
    """Open a local dataset by id (under ``$MINARI_DATASETS_PATH``) or by folder path
    (``os.PathLike``: the dataset folder or its ``data`` folder); a ``MinariDataset`` is
    returned unchanged. Never downloads and never builds the environment.

    Raises:
        DatasetNotFoundError: unknown id or path.
        DatasetFormatError: unreadable metadata or data file.
    """
    if isinstance(dataset_or_id, MinariDataset):
        return dataset_or_id
    if isinstance(dataset_or_id, os.PathLike):
        path = Path(dataset_or_id)
        data_path = path if (path / "metadata.json").exists() else path / "data"
        name = str(path)
        if not data_path.is_dir():
            raise DatasetNotFoundError(name, str(path.parent))
    else:
        name = str(dataset_or_id)
        root = datasets_root()
        data_path = root / name / "data"
        if not data_path.is_dir():
            raise DatasetNotFoundError(name, str(root), _not_found_hint(name))
    try:
        return MinariDataset(data_path)
    except Exception as e:  # metadata.json missing or corrupt, data file missing, ...
        raise DatasetFormatError(name, f"cannot open {data_path}: {type(e).__name__}: {e}") from e


def _not_found_hint(dataset_id: str) -> str:
    hints = []
    try:
        recipe = find_recipe_by_id(dataset_id)
        if recipe is not None:
            hints.append(f"build it with `elmur dataset build {recipe.name}`")
    except RecipeError:  # no (valid) recipes folder: no hint
        pass
    local = local_dataset_ids()
    hints.append(f"local datasets: {', '.join(local) if local else 'none'}")
    return "; ".join(hints)


def episodes_from_minari(
    dataset_or_id: MinariDataset | str | os.PathLike[str],
    *,
    on_nonfinite: NonFinitePolicy = "error",
) -> list[Episode]:
    """Convert every episode of a Minari dataset to a d3rlpy ``Episode``.

    See :func:`load_minari` for the conversion and the errors.
    """
    if on_nonfinite not in ("error", "drop_episode"):
        raise ValueError(f"on_nonfinite must be 'error' or 'drop_episode', got {on_nonfinite!r}")
    dataset = open_minari(dataset_or_id)
    name = dataset.id
    obs_space = dataset.observation_space
    act_space = dataset.action_space
    flatten_observation_space(obs_space)  # unsupported spaces fail before any reading
    is_discrete_action_space(act_space)
    episodes: list[Episode] = []
    dropped: list[int] = []
    for index, raw in _read_episodes(dataset):
        episode = _convert_episode(name, index, raw, obs_space, act_space, on_nonfinite)
        if episode is None:
            dropped.append(index)
        else:
            episodes.append(episode)
    if dropped:
        warnings.warn(
            f"dataset {name!r}: dropped {len(dropped)} episode(s) with non-finite "
            f"values (on_nonfinite='drop_episode'): {dropped[:20]}",
            stacklevel=2,
        )
    if not episodes:
        raise DatasetFormatError(name, "no usable episodes")
    return episodes


def _check_hdf5_file(dataset: MinariDataset, indices: list[int]) -> None:
    """Fail on a corrupt/truncated HDF5 file or missing episodes before reading any."""
    storage = dataset.storage
    if getattr(storage, "FORMAT", None) != "hdf5":
        return
    path = storage.data_path / "main_data.hdf5"
    try:
        with h5py.File(path, "r") as file:
            missing = [i for i in indices if f"episode_{i}" not in file]
    except OSError as e:
        raise DatasetFormatError(dataset.id, f"corrupt or truncated HDF5 file {path}: {e}") from e
    if missing:
        raise DatasetFormatError(
            dataset.id,
            f"missing from {path} ({len(missing)} episode(s) listed in the metadata are absent)",
            episode=missing[0],
        )


def _read_episodes(dataset: MinariDataset) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (episode index, raw episode dict), naming the episode on read errors."""
    indices = [int(i) for i in dataset.episode_indices]
    _check_hdf5_file(dataset, indices)
    try:
        reader = iter(dataset.storage.get_episodes(indices))
    except Exception as e:
        raise DatasetFormatError(dataset.id, f"cannot read: {e}") from e
    for index in indices:
        try:
            raw = next(reader)
        except StopIteration:
            raise DatasetFormatError(
                dataset.id, "episode missing from the data file", episode=index
            ) from None
        except KeyError as e:  # a group or field absent from the HDF5 file
            raise DatasetFormatError(
                dataset.id, f"missing in the data file ({e})", episode=index
            ) from e
        except Exception as e:  # truncated / corrupt HDF5, undecodable data
            raise DatasetFormatError(
                dataset.id,
                f"cannot read the episode from {dataset.storage.data_path}: "
                f"{type(e).__name__}: {e}",
                episode=index,
            ) from e
        yield index, raw


def _first_nonfinite(values: np.ndarray) -> tuple[int, float] | None:
    """(step, value) of the first NaN/inf along axis 0, or None."""
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not bad.any():
        return None
    step = int(np.flatnonzero(bad)[0])
    row = values.reshape(len(values), -1)[step]
    return step, float(row[~np.isfinite(row)][0])


def _convert_episode(
    name: str,
    index: int,
    raw: dict[str, Any],
    obs_space: gym.Space[Any],
    act_space: gym.Space[Any],
    on_nonfinite: NonFinitePolicy,
) -> Episode | None:
    def fail(field: str, problem: str) -> DatasetFormatError:
        return DatasetFormatError(name, problem, episode=index, field=field)

    rewards = np.asarray(raw["rewards"])
    n = len(rewards)
    if n == 0:
        raise fail("actions", "episode of length 0 (no actions)")
    for field in ("terminations", "truncations"):
        if len(raw[field]) != n:
            raise fail(field, f"{len(raw[field])} entries for {n} rewards")
    try:
        observations = convert_observations(obs_space, raw["observations"])
    except ValueError as e:
        raise fail("observations", str(e)) from e
    if len(observations) != n + 1:
        raise fail(
            "observations",
            f"{len(observations)} observations for {n} steps (Minari stores N + 1)",
        )
    actions = np.asarray(raw["actions"])  # Discrete, MultiDiscrete or Box: checked on open
    if len(actions) != n:
        raise fail("actions", f"{len(actions)} actions for {n} rewards")

    for field, values in (
        ("observations", observations),
        ("actions", actions),
        ("rewards", rewards),
    ):
        found = _first_nonfinite(values)
        if found is not None:
            if on_nonfinite == "drop_episode":
                return None
            step, value = found
            raise fail(
                field,
                f"non-finite value {value} at step {step}; pass "
                "on_nonfinite='drop_episode' to skip such episodes",
            )
    try:
        d3_actions = convert_actions(act_space, actions)
    except ValueError as e:
        raise fail("actions", str(e)) from e

    terminations = np.asarray(raw["terminations"]).astype(bool)
    truncations = np.asarray(raw["truncations"]).astype(bool)
    for field, flags in (("terminations", terminations), ("truncations", truncations)):
        if flags[:-1].any():
            step = int(np.flatnonzero(flags[:-1])[0])
            raise fail(field, f"episode end flagged at step {step}, before the last step")
    return Episode(
        observations=observations[:n],
        actions=d3_actions,
        rewards=rewards.astype(np.float32).reshape(n, 1),
        terminated=bool(terminations[-1]),
    )


def load_minari(
    dataset_or_id: MinariDataset | str | os.PathLike[str],
    *,
    on_nonfinite: NonFinitePolicy = "error",
    trajectory_slicer: TrajectorySlicerProtocol | None = None,
    transition_picker: TransitionPickerProtocol | None = None,
) -> ReplayBuffer:
    """Load a Minari dataset into a d3rlpy ``ReplayBuffer`` (``InfiniteBuffer``).

    Works for any local dataset id, dataset folder or ``MinariDataset``, without
    recovering its environment and without network access.

    Alignment: each episode keeps its first N observations for its N actions (the
    trailing observation after the last action is dropped); ``terminated`` is the
    episode's last termination flag, so truncated (time-limit) episodes stay
    non-terminal.

    Observations (:mod:`d3rlpy_elmur.datasets.spaces`): ``Box`` as stored (float32;
    uint8 images keep their dtype and shape), ``Discrete`` one-hot, ``MultiDiscrete``
    concatenated one-hots, ``Dict`` flattened sub-observations concatenated in sorted key
    order, ``Tuple`` the same in order (all float32). Use
    :func:`~d3rlpy_elmur.datasets.spaces.convert_observation` to feed a model online.

    Actions: ``Discrete(n)`` gives int indices with ``action_size = n`` (even if the data
    never uses the last action); ``MultiDiscrete(nvec)`` (e.g. a board square) gives one
    int index per action, its row-major ravel, with ``action_size = prod(nvec)``
    (:func:`~d3rlpy_elmur.datasets.spaces.ravel_actions`); ``Box`` gives flat float32
    vectors. The buffer keeps no record of the stored space: ``open_minari(id).action_space``
    is it, and :func:`~d3rlpy_elmur.datasets.spaces.unravel_action` maps an index back
    (evaluation environments do so themselves).

    Note: d3rlpy stores no transition for a one-step truncated episode, so such episodes
    are absent from ``buffer.episodes`` (a warning says how many).

    Args:
        dataset_or_id: dataset id, folder, or ``MinariDataset``.
        on_nonfinite: ``"error"`` (default) raises on NaN/inf in observations, actions
            or rewards; ``"drop_episode"`` skips such episodes with a warning.
        trajectory_slicer / transition_picker: passed to ``ReplayBuffer``.

    Raises:
        DatasetNotFoundError: unknown id (names the id and the datasets root).
        DatasetFormatError: unreadable file, episode of length 0, mismatched lengths,
            non-finite values, actions outside the action space, ... (names the
            dataset, the episode and the field).
        UnsupportedSpaceError: a space d3rlpy cannot use (e.g. Text observations).
    """
    dataset = open_minari(dataset_or_id)
    episodes = episodes_from_minari(dataset, on_nonfinite=on_nonfinite)
    obs_shape, obs_dtype = flatten_observation_space(dataset.observation_space)
    act_space = dataset.action_space
    discrete = is_discrete_action_space(act_space)
    action_size = action_size_of(act_space)
    skipped = sum(1 for e in episodes if e.transition_count == 0)
    if skipped:
        warnings.warn(
            f"dataset {dataset.id!r}: {skipped} one-step truncated episode(s) hold no "
            "d3rlpy transition and are left out of the buffer",
            stacklevel=2,
        )
    return ReplayBuffer(
        InfiniteBuffer(),
        transition_picker=transition_picker or BasicTransitionPicker(),
        trajectory_slicer=trajectory_slicer or BasicTrajectorySlicer(),
        episodes=episodes,
        observation_signature=Signature(dtype=[obs_dtype], shape=[obs_shape]),
        action_signature=Signature(
            dtype=[np.dtype(np.int64) if discrete else np.dtype(np.float32)],
            shape=[(1,) if discrete else (action_size,)],
        ),
        reward_signature=Signature(dtype=[np.dtype(np.float32)], shape=[(1,)]),
        action_space=ActionSpace.DISCRETE if discrete else ActionSpace.CONTINUOUS,
        action_size=action_size,
    )
