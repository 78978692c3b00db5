"""Safe ``.d3`` loading and atomic writes (d3rlpy_elmur.io)."""

from __future__ import annotations

import builtins
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.logging import NoopAdapterFactory

import d3rlpy_elmur
from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig
from d3rlpy_elmur.io import (
    ModelFileError,
    ModelVersionWarning,
    UnsafeModelFileError,
    atomic_path,
    atomic_write,
    load_learnable,
    read_d3,
    save_learnable,
)
from tests.helpers import cue_recall_dataset

QUIET = dict(show_progress=False, logger_adapter=NoopAdapterFactory())
SMALL = dict(context_size=4, num_segments=2, embed_dim=16, num_heads=2, batch_size=4)


# ------------------------------------------------------------------------------ helpers
def _elmur_discrete() -> Any:
    return DiscreteELMURDTConfig(**SMALL).create()  # type: ignore[arg-type]


def _elmur_continuous() -> Any:
    algo = ELMURDTConfig(**SMALL).create()  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    episodes = [
        d3rlpy.dataset.Episode(
            rng.normal(size=(9, 3)).astype(np.float32),
            rng.uniform(-1, 1, size=(9, 2)).astype(np.float32),
            np.zeros((9, 1), np.float32),
            True,
        )
        for _ in range(4)
    ]
    return algo, d3rlpy.dataset.ReplayBuffer(d3rlpy.dataset.InfiniteBuffer(), episodes=episodes)


def _d3rlpy_dt() -> Any:
    return d3rlpy.algos.DiscreteDecisionTransformerConfig(
        batch_size=4,
        context_size=4,
        num_heads=1,
        num_layers=1,
        encoder_factory=d3rlpy.models.VectorEncoderFactory([8]),
    ).create()


def _d3rlpy_bc() -> Any:
    return d3rlpy.algos.DiscreteBCConfig(
        batch_size=4, encoder_factory=d3rlpy.models.VectorEncoderFactory([8])
    ).create()


def _trained(name: str) -> Any:
    """A few updates, so that the optimizer state is not empty."""
    torch.manual_seed(0)
    if name == "elmur_continuous":
        algo, dataset = _elmur_continuous()
    else:
        algo = {"elmur": _elmur_discrete, "dt": _d3rlpy_dt, "bc": _d3rlpy_bc}[name]()
        dataset = cue_recall_dataset(8, 8, 11)
    algo.fit(dataset, n_steps=2, n_steps_per_epoch=2, **QUIET)
    return algo


def _same(a: Any, b: Any) -> bool:
    """Deep equality for state dicts (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _states(algo: Any) -> dict[str, Any]:
    modules = algo.impl.modules.create_checkpointer(algo.impl.device).modules
    return {name: module.state_dict() for name, module in modules.items()}


def _greedy_actions(algo: Any, observations: np.ndarray) -> list[int]:
    if isinstance(algo, d3rlpy_elmur.algos.elmur_dt.ELMURDTBase):
        wrapper = algo.as_stateful_wrapper()
        return [np.asarray(wrapper.predict(obs, 0.0)).tolist() for obs in observations]
    if isinstance(algo, d3rlpy.algos.DiscreteDecisionTransformer):
        wrapper = algo.as_stateful_wrapper(0.0, d3rlpy.algos.GreedyTransformerActionSampler())
        return [int(wrapper.predict(obs, 0.0)) for obs in observations]
    return algo.predict(observations).tolist()  # type: ignore[no-any-return]


def _repickle(path: Path, **fields: Any) -> None:
    """Rewrites a genuine .d3 with some fields replaced (a plain pickle without our checksum,
    like d3rlpy's own files, so the checks behind the checksum are reached)."""
    with open(path, "rb") as f:
        payload = pickle.load(f)  # our own genuine file
    payload.pop("sha256")
    payload.update(fields)
    path.write_bytes(pickle.dumps(payload))


class _WritesMarker:
    """Unpickling this calls ``func(marker)``-like code: the marker file appears if it runs."""

    def __init__(self, marker: Path, via: str) -> None:
        self.marker = marker
        self.via = via

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.via == "exec":
            return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)
        if self.via == "system":
            return os.system, (f"touch {self.marker}",)
        return builtins.open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("genuine") / "elmur.d3"
    algo = _elmur_discrete()
    algo.create_impl((3,), 3)
    algo.save(str(path))
    return path


# --------------------------------------------------------------------- genuine round trips
@pytest.mark.parametrize("name", ["elmur", "elmur_continuous", "dt", "bc"])
def test_genuine_files_load_like_d3rlpy(name: str, tmp_path: Path) -> None:
    algo = _trained(name)
    path = tmp_path / "model.d3"
    algo.save(str(path))
    ours = load_learnable(path)
    theirs = d3rlpy.load_learnable(str(path))
    assert type(ours) is type(algo) and ours.config == algo.config
    # the JSON gives the shape back as a list, in d3rlpy's loader too
    assert ours.impl.observation_shape == theirs.impl.observation_shape
    assert tuple(ours.impl.observation_shape) == tuple(algo.impl.observation_shape)
    assert ours.impl.action_size == algo.impl.action_size
    # every module and the optimizer (with its moments and step counts) as saved
    assert _same(_states(ours), _states(algo))
    assert _same(_states(ours), _states(theirs))
    observations = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
    assert _greedy_actions(ours, observations) == _greedy_actions(algo, observations)


def test_exported_from_the_package_and_reads_the_fields(genuine: Path) -> None:
    assert d3rlpy_elmur.load_learnable is load_learnable
    payload = read_d3(genuine)
    assert set(payload) == {"torch", "config", "version", "sha256"}
    assert payload["version"] == d3rlpy.__version__


def test_another_d3rlpy_version_loads_with_a_warning(genuine: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.d3"
    path.write_bytes(genuine.read_bytes())
    _repickle(path, version="2.0.0")
    with pytest.warns(ModelVersionWarning, match="2.0.0"):
        algo = load_learnable(path)
    assert isinstance(algo, d3rlpy_elmur.DiscreteELMURDT)


# ----------------------------------------------------------------------- hostile files
@pytest.mark.parametrize("via", ["exec", "system", "open"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_code_in_the_pickle_is_refused_and_never_runs(
    via: str, protocol: int, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.d3"
    payload = {"torch": _WritesMarker(marker, via), "config": "{}", "version": "2.8.1"}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafeModelFileError, match="nothing from it was executed") as info:
        load_learnable(path)
    # the global as the file spells it (protocols < 3 say __builtin__, os.system is posix's)
    assert info.value.refused.endswith(f".{via}") and str(path) in str(info.value)
    assert not marker.exists()


def test_the_payload_is_live_under_d3rlpys_loader(tmp_path: Path) -> None:
    # The same kind of file does run code under d3rlpy.load_learnable (pickle.load).
    marker = tmp_path / "marker"
    path = tmp_path / "evil.d3"
    path.write_bytes(pickle.dumps(_WritesMarker(marker, "exec")))
    with pytest.raises(UnsafeModelFileError):
        load_learnable(path)
    assert not marker.exists()
    with pytest.raises(TypeError):  # exec returned None, d3rlpy then indexes it
        d3rlpy.load_learnable(str(path))
    assert marker.exists()


def test_handwritten_inst_opcode_is_refused(tmp_path: Path) -> None:
    # protocol-0 INST imports and calls in one opcode
    marker = tmp_path / "marker"
    path = tmp_path / "inst.d3"
    path.write_bytes(f"(S'touch {marker}'\nios\nsystem\n.".encode())
    with pytest.raises(UnsafeModelFileError, match=r"os\.system"):
        load_learnable(path)
    assert not marker.exists()


def test_code_hidden_in_the_weights_is_refused(genuine: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    weights = io.BytesIO()
    torch.save({"policy": _WritesMarker(marker, "exec"), "optim": {}}, weights)
    path = tmp_path / "evil_weights.d3"
    path.write_bytes(genuine.read_bytes())
    _repickle(path, torch=weights.getvalue())
    with pytest.raises(UnsafeModelFileError, match="its weights") as info:
        load_learnable(path)
    assert "exec" in info.value.refused
    assert not marker.exists()


# ---------------------------------------------------------------------- corrupt files
@pytest.mark.parametrize("keep", [0.0, 0.001, 0.3, 0.5, 0.999])
def test_truncated_files_give_model_file_error(genuine: Path, tmp_path: Path, keep: float) -> None:
    data = genuine.read_bytes()
    path = tmp_path / "cut.d3"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError) as info:
        load_learnable(path)
    assert type(info.value) is ModelFileError and str(path) in str(info.value)


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"not a pickle at all", "not a readable .d3"),
        (pickle.dumps([1, 2, 3]), "holds a list"),
        (pickle.dumps({"torch": b"", "config": "{}"}), "'version'"),
        (pickle.dumps({"torch": "str", "config": "{}", "version": "2.8.1"}), "'torch'"),
    ],
)
def test_files_that_are_not_d3_give_model_file_error(
    content: bytes, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.d3"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=problem):
        load_learnable(path)


def _with_config(genuine: Path, tmp_path: Path, edit: Callable[[str], str]) -> Path:
    path = tmp_path / "edited.d3"
    path.write_bytes(genuine.read_bytes())
    _repickle(path, config=edit(read_d3(genuine)["config"]))
    return path


def test_unknown_algorithm_names_the_type_and_hints_at_the_plugin(
    genuine: Path, tmp_path: Path
) -> None:
    path = _with_config(genuine, tmp_path, lambda c: c.replace("discrete_elmur_dt", "my_algo"))
    with pytest.raises(ModelFileError, match=r"unknown algorithm type 'my_algo'.*import"):
        load_learnable(path)


@pytest.mark.parametrize(
    "edit,problem",
    [
        (lambda c: c[:-5], "config is not d3rlpy JSON"),
        (lambda c: c.replace('"type": "elmur"', '"type": "nope"'), "invalid 'discrete_elmur_dt'"),
        (lambda c: c.replace('"embed_dim": 16', '"embed_dim": 32'), "do not fit"),
        (lambda c: c.replace('"context_size": 4', '"context_size": 0'), "context_size"),
    ],
)
def test_bad_configs_give_model_file_error(
    genuine: Path, tmp_path: Path, edit: Callable[[str], str], problem: str
) -> None:
    path = _with_config(genuine, tmp_path, edit)
    assert path.read_bytes() != genuine.read_bytes()
    with pytest.raises(ModelFileError, match=problem):
        load_learnable(path)


def test_corrupt_weights_give_model_file_error(genuine: Path, tmp_path: Path) -> None:
    blob = read_d3(genuine)["torch"]
    path = tmp_path / "w.d3"
    for broken in (blob[: len(blob) // 2], b"junk" * 10, _torch_bytes({"optim": {}})):
        path.write_bytes(genuine.read_bytes())
        _repickle(path, torch=broken)
        with pytest.raises(ModelFileError) as info:
            load_learnable(path)
        assert type(info.value) is ModelFileError


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_missing_file_is_a_plain_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_learnable(tmp_path / "nope.d3")


# ------------------------------------------------------------------------ atomic writes
def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    with atomic_write(path, "w") as f:
        f.write("new")
        assert path.read_text() == "old"  # nothing visible until the block ends
    assert path.read_text() == "new"
    assert _leftovers(tmp_path, {"results.json"}) == []


def test_an_exception_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"data.bin"}) == []


def test_atomic_path_keeps_the_suffix_for_writers_that_append_it(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "array.npy") as temp:
        assert temp.parent == tmp_path and temp.suffix == ".npy"
        np.save(temp, np.arange(3))
    assert np.load(tmp_path / "array.npy").tolist() == [0, 1, 2]
    assert _leftovers(tmp_path, {"array.npy"}) == []


def test_new_files_get_the_usual_permissions(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    with atomic_write(tmp_path / "atomic") as f:
        f.write(b"")
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_atomic_write_refuses_read_and_append_modes(tmp_path: Path) -> None:
    for mode in ("r", "ab", "r+b"):
        with pytest.raises(ValueError, match="mode"):
            with atomic_write(tmp_path / "x", mode):
                pass
    assert _leftovers(tmp_path, set()) == []


def test_save_learnable_writes_a_loadable_model(genuine: Path, tmp_path: Path) -> None:
    algo = load_learnable(genuine)
    path = save_learnable(algo, tmp_path / "model.d3")
    assert _same(_states(load_learnable(path)), _states(algo))
    assert _leftovers(tmp_path, {"model.d3"}) == []


def test_a_failed_save_keeps_the_old_model(
    genuine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.d3"
    path.write_bytes(genuine.read_bytes())
    algo = load_learnable(genuine)

    def crash(obj: object, f: Any) -> None:  # a save that dies half-way
        f.write(genuine.read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr("d3rlpy_elmur.io.pickle.dump", crash)
    with pytest.raises(KeyboardInterrupt):
        save_learnable(algo, path)
    assert path.read_bytes() == genuine.read_bytes()
    assert _leftovers(tmp_path, {"model.d3"}) == []
    load_learnable(path)


def test_damage_inside_the_weights_or_config_is_detected(tmp_path: Path) -> None:
    torch.manual_seed(0)
    algo = d3rlpy_elmur.DiscreteELMURDTConfig(context_size=4, embed_dim=16, num_heads=2).create()
    algo.create_impl((3,), 3)
    path = tmp_path / "model.d3"
    algo.save(str(path))
    assert isinstance(d3rlpy.load_learnable(str(path)), d3rlpy_elmur.DiscreteELMURDT)  # d3rlpy's
    load_learnable(path)
    data = path.read_bytes()
    payload = pickle.loads(data)
    weights = data.find(payload["torch"])
    config = data.find(payload["config"].encode())
    assert weights > 0 and config > 0
    n = len(payload["torch"])
    # inside the weights (zip headers, tensor data) and inside the config's values
    offsets = [weights + 40, weights + n // 3, weights + n // 2, weights + n - 30]
    offsets += [config + payload["config"].index('"embed_dim": ') + 13]
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 0x04  # one bit: still a readable file, often loadable weights
        target = tmp_path / f"damaged_{offset}.d3"
        target.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError, match="damaged") as info:
            load_learnable(target)
        assert str(target) in str(info.value)
