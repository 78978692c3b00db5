"""Safe loading of ``.d3`` model files and atomic writes.

``d3rlpy.load_learnable`` runs ``pickle.load`` on the file, so a ``.d3`` from a stranger can run
any code. :func:`load_learnable` gives the same algorithm for genuine files (ours and d3rlpy's) but
never executes code from the file: a ``.d3`` is a pickled ``{"torch": bytes, "config": str,
"version": str}`` whose opcodes never import anything, so our unpickler refuses every global, and
the weights inside are read with ``torch.load(weights_only=True)``.

Files we write (:func:`save_learnable`) also carry ``"sha256"``, a digest of the weights and the
config, checked at load: damage anywhere in them raises :class:`ModelFileError` instead of
loading changed weights. d3rlpy ignores the extra key, and files without it (d3rlpy's own)
load as before.

:func:`atomic_write`, :func:`atomic_path` and :func:`save_learnable` write to a temporary
file next to the target and rename it over the target, so a crash or an exception mid-write never
leaves a half-written file behind (readers see the old file or the new one).
:func:`exclusive_folder` lets one process at a time work in a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeAlias, Union

import torch
from d3rlpy import __version__ as d3rlpy_version
from d3rlpy.base import (
    DeviceArg,
    ImplBase,
    LearnableBase,
    LearnableConfig,
    LearnableConfigWithShape,
)
from d3rlpy.serializable_config import CONFIG_STORAGE
from d3rlpy.torch_utility import map_location

__all__ = [
    "exclusive_folder",
    "ModelFileError",
    "UnsafeModelFileError",
    "ModelVersionWarning",
    "load_learnable",
    "read_d3",
    "save_learnable",
    "atomic_path",
    "atomic_write",
    "remove_stale_temps",
]

PathLike: TypeAlias = Union[str, "os.PathLike[str]"]
Learnable: TypeAlias = LearnableBase[ImplBase, LearnableConfig]

# the keys d3rlpy's dump_learnable writes, with the type each value must have
_D3_FIELDS: dict[str, type] = {"torch": bytes, "config": str, "version": str}


class ModelFileError(ValueError):
    """A ``.d3`` file that cannot be loaded: truncated, corrupt, not a ``.d3``, or a config this
    process cannot build (unknown algorithm, weights that do not fit)."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot load model file {self.path}: {problem}")


class UnsafeModelFileError(ModelFileError):
    """The file asks to import ``refused`` while loading, which no genuine ``.d3`` does.

    Nothing from the file was executed.
    """

    def __init__(self, path: PathLike, refused: str, where: str = "the file") -> None:
        self.refused = refused
        super().__init__(
            path,
            f"refused: {where} asks to import {refused!r}, which a genuine .d3 never does "
            "(it was crafted, or is not a d3rlpy model); nothing from it was executed",
        )


class ModelVersionWarning(UserWarning):
    """The file was written by another d3rlpy version (d3rlpy logs the same warning)."""


# ------------------------------------------------------------------------- reading a .d3
class _NoGlobalsUnpickler(pickle.Unpickler):
    """Admits only what a ``.d3`` holds: dicts, str and bytes need no global at all.

    Every way a pickle runs code (REDUCE, BUILD, INST/OBJ, NEWOBJ, extension codes) first needs
    a callable from ``find_class``; refusing all of them leaves only plain containers.
    """

    def __init__(self, file: IO[bytes], path: PathLike) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeModelFileError(self._path, f"{module}.{name}")


def read_d3(path: PathLike) -> dict[str, Any]:
    """The ``{"torch", "config", "version"}`` dict of a ``.d3``, read without running code.

    Raises:
        UnsafeModelFileError: the pickle asks for a global (e.g. ``os.system``).
        ModelFileError: truncated, corrupt or not a ``.d3``.
        OSError: the file cannot be opened.
    """
    with open(path, "rb") as f:
        try:
            payload = _NoGlobalsUnpickler(f, path).load()
        except ModelFileError:
            raise
        except Exception as exc:  # the unpickler raises many types on corrupt data
            raise ModelFileError(path, f"not a readable .d3 pickle ({_describe(exc)})") from exc
    return _check_payload(payload, path)


def _check_payload(payload: Any, path: PathLike) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ModelFileError(path, f"holds a {type(payload).__name__}, not a .d3 dict")
    for key, kind in _D3_FIELDS.items():
        if not isinstance(payload.get(key), kind):
            got = type(payload[key]).__name__ if key in payload else "nothing"
            raise ModelFileError(path, f"field {key!r} should be {kind.__name__}, got {got}")
    return payload


def _digest(weights: bytes, config: str) -> str:
    return hashlib.sha256(weights + b"\0" + config.encode()).hexdigest()


def _check_digest(payload: dict[str, Any], path: PathLike) -> None:
    if "sha256" not in payload:  # written by d3rlpy itself
        return
    if payload["sha256"] != _digest(payload["torch"], payload["config"]):
        raise ModelFileError(
            path, "damaged: the weights or config do not match the checksum written with them"
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ------------------------------------------------------------------------ load_learnable
def load_learnable(path: PathLike, device: DeviceArg = None) -> Learnable:
    """Like ``d3rlpy.load_learnable`` (same algorithm, weights and optimizer state), but safe.

    Nothing in the file is executed: the outer pickle may hold only dict/str/bytes and the
    weights are read with ``torch.load(weights_only=True)``. A file written by another d3rlpy
    version loads with a :class:`ModelVersionWarning`. Note that a hostile config can still ask
    for a very large model (memory use), but it cannot run code.

    Args:
        path: a file written by ``algo.save`` / ``d3rlpy.base.dump_learnable``.
        device: as in d3rlpy (None or False: CPU, True or an int: that CUDA device, or a str).

    Raises:
        UnsafeModelFileError: the file (or the weights inside) asks to import something.
        ModelFileError: truncated or corrupt file, unknown algorithm type, invalid config, or
            weights that do not fit the config.
    """
    if device is not None and not isinstance(device, (bool, int, str)):
        raise TypeError(f"device must be None, bool, int or str, got {type(device).__name__}")
    payload = read_d3(path)
    _check_digest(payload, path)
    _warn_on_version(payload["version"], path)
    algo = _build(_parse_config(payload["config"], path), device, path)
    _load_weights(algo, payload["torch"], path)
    return algo


def _warn_on_version(saved: str, path: PathLike) -> None:
    if saved != d3rlpy_version:
        warnings.warn(
            f"{path} was saved by d3rlpy {saved}, this is d3rlpy {d3rlpy_version}: "
            "there might be incompatibilities",
            ModelVersionWarning,
            stacklevel=3,
        )


def _parse_config(text: str, path: PathLike) -> LearnableConfigWithShape:
    # Look the algorithm type up first: d3rlpy would only say KeyError('<type>').
    try:
        data = json.loads(text)
        type_name = data["config"]["type"]
    except Exception as exc:
        raise ModelFileError(path, f"config is not d3rlpy JSON ({_describe(exc)})") from exc
    registered = CONFIG_STORAGE[LearnableConfig].config_list
    if not isinstance(type_name, str) or type_name not in registered:
        raise ModelFileError(
            path,
            f"unknown algorithm type {type_name!r}; if it comes from a plugin, import the plugin "
            f"first (e.g. `import d3rlpy_elmur`). Registered: {', '.join(sorted(registered))}",
        )
    try:
        return LearnableConfigWithShape.deserialize(text)
    except Exception as exc:  # a nested unknown factory type, a malformed field, ...
        raise ModelFileError(path, f"invalid {type_name!r} config ({_describe(exc)})") from exc


def _build(config: LearnableConfigWithShape, device: DeviceArg, path: PathLike) -> Learnable:
    try:
        return config.create(device)
    except (ValueError, TypeError, KeyError) as exc:  # validation of the stored values
        name = config.config.get_type()
        raise ModelFileError(path, f"cannot build {name!r} ({_describe(exc)})") from exc


def _load_weights(algo: Learnable, blob: bytes, path: PathLike) -> None:
    # Mirrors d3rlpy's Checkpointer.load: one state_dict per nn.Module / optimizer wrapper.
    impl = algo.impl
    assert impl is not None
    modules = impl.modules.create_checkpointer(impl.device).modules
    states = _read_states(blob, path, impl.device)
    missing = sorted(set(modules) - set(states))
    if missing:
        raise ModelFileError(path, f"weights lack {missing} (has {sorted(map(str, states))})")
    for name, module in modules.items():
        if not isinstance(states[name], Mapping):
            raise ModelFileError(path, f"weights of {name!r} are not a state dict")
        try:
            module.load_state_dict(states[name])
        except Exception as exc:  # size or key mismatch, optimizer group mismatch
            raise ModelFileError(
                path, f"weights of {name!r} do not fit ({_describe(exc)})"
            ) from exc


_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_WEIGHTS_ERROR = re.compile(r"WeightsUnpickler error:\s*(.+?)\n\n", re.S)


def _read_states(blob: bytes, path: PathLike, device: str) -> dict[str, Any]:
    try:
        states = torch.load(io.BytesIO(blob), map_location=map_location(device), weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        refused = _REFUSED_GLOBAL.search(text)
        if refused:
            raise UnsafeModelFileError(path, refused.group(1), "its weights") from exc
        detail = _WEIGHTS_ERROR.search(text)
        problem = detail.group(1).strip() if detail else _describe(exc)
        raise ModelFileError(path, f"weights are not a plain state dict ({problem})") from exc
    except Exception as exc:  # truncated or corrupt zip archive
        raise ModelFileError(path, f"weights are unreadable ({_describe(exc)})") from exc
    if not isinstance(states, dict):
        raise ModelFileError(path, f"weights hold a {type(states).__name__}, not a dict")
    return states


# ------------------------------------------------------------------------ atomic writes
@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A fresh temporary path next to ``path``, renamed over ``path`` when the block succeeds.

    For writers that take a file name (``algo.save``, ``np.save``, ...). The temporary name
    keeps ``path``'s suffix, so writers that append a missing suffix write where we expect.
    On success the data is fsynced, then ``os.replace``d (atomic on POSIX and Windows), then the
    directory is fsynced; on any exception the temporary file is removed and ``path`` is
    untouched. The new file gets the default permissions (umask), not the old file's.
    """
    target = Path(path)
    temp = _create_temp(target)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, target)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_write(
    path: PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """An open file (``mode`` "wb" or "w") whose content replaces ``path`` atomically.

    .. code-block:: python

        with atomic_write("results.json", "w") as f:
            json.dump(results, f)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as temp, open(temp, mode, encoding=encoding) as f:
        yield f


def save_learnable(algo: Learnable, path: PathLike) -> Path:
    """What ``algo.save(path)`` writes (d3rlpy's ``.d3``), plus a checksum of the weights and
    config that :func:`load_learnable` checks; through a temporary file, so ``path`` is the old
    model or the new one."""
    impl = algo.impl
    if impl is None:
        raise ValueError("the algorithm is not built: fit it or call create_impl first")
    buffer = io.BytesIO()
    impl.save_model(buffer)
    weights = buffer.getvalue()
    config = LearnableConfigWithShape(
        observation_shape=impl.observation_shape, action_size=impl.action_size, config=algo.config
    ).serialize()
    payload = {
        "torch": weights,
        "config": config,
        "version": d3rlpy_version,
        "sha256": _digest(weights, config),
    }
    with atomic_write(path) as f:
        pickle.dump(payload, f)
    return Path(path)


def remove_stale_temps(path: PathLike) -> list[Path]:
    """Delete the temporary files a killed writer of ``path`` left behind (a SIGKILL skips the
    cleanup of :func:`atomic_path`). Only for a target that no other process is writing now."""
    target = Path(path)
    stale = sorted(target.parent.glob(f".{target.stem}.????????.tmp{target.suffix}"))
    for temp in stale:
        temp.unlink(missing_ok=True)
    return stale


def _create_temp(target: Path) -> Path:
    # O_EXCL: never reuse a name another writer holds; mode 0o666 lets the umask apply as
    # for a plain open() (mkstemp would make the final file 0600).
    while True:
        temp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on Windows or some filesystems.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_folder(
    folder: PathLike, lock_name: str, busy: Callable[[str], Exception]
) -> Iterator[None]:
    """Hold ``folder/lock_name`` locked (``flock``) for the block, its holder's pid inside;
    while another process holds it, raise ``busy(pid)``. Where there is no ``flock``
    (Windows), one process per folder is up to the user."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / lock_name, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise busy(handle.read().strip() or "?") from None
        handle.truncate(0)  # the holder's pid, for whoever finds the folder busy
        handle.write(str(os.getpid()))
        handle.flush()
        yield
