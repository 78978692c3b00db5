"""Atomic creation of local Minari datasets.

Minari writes a dataset straight into ``$MINARI_DATASETS_PATH/<id>``; a failed or
interrupted write leaves a half-written folder that blocks the id. :class:`DatasetWriter`
instead writes into a hidden staging root next to it (``.elmur-staging-*``, same file
system, skipped by Minari's listing) and renames the finished dataset into place. On any
exception, KeyboardInterrupt included, the staging folder is deleted; staging folders left
by killed processes are removed by the next build.

The staging root is selected by pointing ``MINARI_DATASETS_PATH`` at it for the duration
of the ``create_dataset_from_buffers`` call (Minari reads the variable at call time), so
do not create datasets from several threads at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import gymnasium as gym
import numpy as np
from minari import MinariDataset, create_dataset_from_buffers
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.storage.datasets_root_dir import get_dataset_path

from .errors import DatasetExistsError

__all__ = [
    "ELMUR_METADATA_KEY",
    "DatasetWriter",
    "dataset_exists",
    "dataset_path",
    "datasets_root",
    "local_dataset_ids",
    "stack_space",
]

ELMUR_METADATA_KEY = "elmur"
_STAGING_PREFIX = ".elmur-staging-"


def datasets_root() -> Path:
    """The local Minari datasets root (``$MINARI_DATASETS_PATH``, read now)."""
    return Path(get_dataset_path()).resolve()


def dataset_path(dataset_id: str) -> Path:
    """Folder of dataset ``dataset_id`` under :func:`datasets_root`."""
    return datasets_root() / dataset_id


def dataset_exists(dataset_id: str) -> bool:
    """True if a dataset folder with this id exists locally."""
    return (dataset_path(dataset_id) / "data").is_dir()


def local_dataset_ids() -> list[str]:
    """Ids of the datasets under :func:`datasets_root` (hidden folders skipped)."""
    root = datasets_root()
    ids = []
    for metadata in root.glob("**/data/metadata.json"):
        dataset_id = metadata.parent.parent.relative_to(root).as_posix()
        if not any(part.startswith(".") for part in dataset_id.split("/")):
            ids.append(dataset_id)
    return sorted(ids)


def stack_space(space: gym.Space[Any], values: list[Any]) -> Any:
    """Stack per-step values of ``space`` the way Minari stores them (Dict -> dict of
    arrays, Tuple -> tuple of arrays, anything else -> one array)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: stack_space(sub, [v[k] for v in values]) for k, sub in space.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(stack_space(sub, [v[i] for v in values]) for i, sub in enumerate(space))
    return np.stack([np.asarray(v) for v in values])


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _remove_stale_staging(root: Path) -> None:
    """Delete staging folders of processes that no longer run (killed builds)."""
    for path in root.glob(_STAGING_PREFIX + "*"):
        try:
            pid = int(path.name[len(_STAGING_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            pass


class DatasetWriter:
    """Write episodes into a new Minari dataset (HDF5) that appears only on success.

    Usage::

        with DatasetWriter("ns/name-v0", env=env) as writer:
            for episode in episodes:
                writer.add_episode(episode)
            writer.commit(metadata={...})

    Leaving the block without :meth:`commit`, or with an exception, deletes everything
    written. Episodes are flushed to disk in chunks, so memory stays bounded.

    Args:
        dataset_id: Minari id ``namespace/name-vN``.
        env: environment the episodes come from (its spec and spaces go into the
            metadata; it must be registered with a string entry point).
        overwrite: replace an existing dataset with this id (only at commit, so a failed
            build leaves the old one intact).
        description / algorithm_name / requirements: Minari metadata.
        chunk_size: episodes buffered before each write.
    """

    def __init__(
        self,
        dataset_id: str,
        *,
        env: gym.Env[Any, Any],
        overwrite: bool = False,
        description: str | None = None,
        algorithm_name: str | None = None,
        requirements: list[str] | None = None,
        chunk_size: int = 64,
    ) -> None:
        parse_dataset_id(dataset_id)  # raises ValueError on a malformed id
        self.dataset_id = dataset_id
        self.env = env
        self.overwrite = overwrite
        self.description = description
        self.algorithm_name = algorithm_name
        self.requirements = requirements
        self.chunk_size = chunk_size
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self._pending: list[EpisodeBuffer] = []
        self._dataset: MinariDataset | None = None
        self._root: Path | None = None
        self._staging: Path | None = None
        self._committed = False

    # ------------------------------------------------------------ context manager
    def __enter__(self) -> DatasetWriter:
        self._root = datasets_root()
        self._check_free()
        _remove_stale_staging(self._root)
        self._staging = Path(
            tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=self._root)
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    # ------------------------------------------------------------ writing
    def add_episode(self, episode: EpisodeBuffer) -> None:
        """Queue one episode (observations N+1, actions/rewards/flags N)."""
        if self._staging is None:
            raise RuntimeError("use DatasetWriter inside a `with` block")
        if len(episode.rewards) == 0:
            raise ValueError("cannot write an episode of length 0")
        self.returns.append(float(np.sum(episode.rewards)))
        self.lengths.append(len(episode.rewards))
        self._pending.append(episode)
        if len(self._pending) >= self.chunk_size:
            self._flush()

    def commit(self, metadata: dict[str, Any] | None = None) -> Path:
        """Finish writing, store ``metadata`` (plus return statistics) under the
        ``"elmur"`` metadata key, and move the dataset into place. Returns its path."""
        if self._staging is None or self._root is None:
            raise RuntimeError("use DatasetWriter inside a `with` block")
        self._flush()
        if self._dataset is None:
            raise ValueError(f"dataset {self.dataset_id!r}: no episodes were written")
        returns = np.asarray(self.returns, dtype=np.float64)
        info = {
            "n_episodes": len(self.returns),
            "total_steps": int(np.sum(self.lengths)),
            "expert_return_mean": float(returns.mean()),
            "expert_return_std": float(returns.std()),
            "expert_return_min": float(returns.min()),
            "expert_return_max": float(returns.max()),
            **(metadata or {}),
        }
        self._dataset.storage.update_metadata({ELMUR_METADATA_KEY: info})

        final = self._root / self.dataset_id
        staged = self._staging / self.dataset_id
        final.parent.mkdir(parents=True, exist_ok=True)
        replaced = self._staging / ".replaced"
        if final.exists():
            if not self.overwrite:
                raise DatasetExistsError(self.dataset_id, str(final))
            os.replace(final, replaced)
        try:
            os.replace(staged, final)
        except BaseException:
            if replaced.exists():  # put the old dataset back
                os.replace(replaced, final)
            raise
        self._committed = True
        self._ensure_namespace()
        return final

    # ------------------------------------------------------------ internals
    def _check_free(self) -> None:
        assert self._root is not None
        final = self._root / self.dataset_id
        if final.exists() and not self.overwrite:
            raise DatasetExistsError(self.dataset_id, str(final))

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk, self._pending = self._pending, []
        if self._dataset is None:
            assert self._staging is not None
            with _minari_root(self._staging), warnings.catch_warnings():
                # Minari nags about unset author e-mail, code permalink and eval env.
                warnings.filterwarnings("ignore", message=".*is set to None.*")
                self._dataset = create_dataset_from_buffers(
                    self.dataset_id,
                    buffer=chunk,
                    env=self.env,
                    algorithm_name=self.algorithm_name,
                    author="d3rlpy-elmur",
                    description=self.description,
                    data_format="hdf5",
                    requirements=self.requirements,
                    # lossless frames: JPEG would blur the cue colour of image tasks
                    jpeg_encoding=False,
                )
        else:
            self._dataset.storage.update_episodes(chunk)

    def _ensure_namespace(self) -> None:
        namespace = parse_dataset_id(self.dataset_id)[0]
        if namespace is None or self._root is None:
            return
        # Minari marks namespace folders with this file; copy the staged one.
        name = "namespace_metadata.json"
        for part in _namespace_hierarchy(namespace):
            target = self._root / part / name
            source = self._staging / part / name if self._staging else None
            if not target.exists() and source is not None and source.exists():
                shutil.copyfile(source, target)

    def _cleanup(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


def _namespace_hierarchy(namespace: str) -> list[str]:
    parts = namespace.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
