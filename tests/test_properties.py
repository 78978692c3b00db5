"""Property-based tests of every input a user gives: observations fed to the stateful wrapper,
Minari datasets fed to ``load_minari``, algorithm configs, and damaged model files.

Each property states the contract: either a valid result (checked against an independent
oracle) or a documented error type whose message names the problem; never a hang, never a
silently wrong result.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import hypothesis.extra.numpy as hnp
import minari
import numpy as np
import pytest
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from minari.data_collector import EpisodeBuffer

from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig, ONNXPolicy
from d3rlpy_elmur.datasets import DatasetFormatError, UnsupportedSpaceError, load_minari
from d3rlpy_elmur.io import ModelFileError, load_learnable
from d3rlpy_elmur.models import ELMURFactory

SMALL = dict(context_size=4, num_segments=2, embed_dim=8, num_heads=2, batch_size=4)
# CI runs a fixed (derandomized) set of examples; ELMUR_EXPLORE=<n> runs n random ones instead.
_EXPLORE = int(os.environ.get("ELMUR_EXPLORE", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 30, deadline=None, derandomize=not _EXPLORE)
OBS_SHAPE = (3,)
NUMERIC_KINDS = "biuf"  # bool, int, uint, float: what an observation may be made of


@functools.cache
def _algo(kind: str) -> Any:
    """A tiny untrained model per kind, built once (predictions need no training)."""
    config = DiscreteELMURDTConfig if kind == "discrete" else ELMURDTConfig
    algo = config(**SMALL, token_format="rtg_obs_act").create()  # type: ignore[arg-type]
    algo.create_impl(OBS_SHAPE, 3 if kind == "discrete" else 2)
    return algo


# ============================================================ the stateful wrapper's inputs
def _finite(dtype: np.dtype) -> st.SearchStrategy[Any]:
    if dtype.kind == "f":
        return hnp.from_dtype(
            dtype, allow_nan=False, allow_infinity=False, min_value=-1e3, max_value=1e3
        )
    return hnp.from_dtype(dtype)


NUMERIC_DTYPES = st.sampled_from(
    [np.dtype(t) for t in ("float16", "float32", "float64", "int8", "int64", "uint8", "bool")]
)
VALID_OBS = st.one_of(
    NUMERIC_DTYPES.flatmap(lambda d: hnp.arrays(d, OBS_SHAPE, elements=_finite(d))),
    st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    st.lists(st.integers(-100, 100), min_size=3, max_size=3),
)
WRONG_SHAPE_OBS = NUMERIC_DTYPES.flatmap(
    lambda d: hnp.arrays(
        d,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4).filter(
            lambda s: s != OBS_SHAPE
        ),
        elements=_finite(d),
    )
)


@st.composite
def _nonfinite_obs(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    array = draw(hnp.arrays(dtype, OBS_SHAPE, elements=_finite(np.dtype(dtype))))
    array[draw(st.integers(0, 2))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array


NOT_NUMBERS = st.one_of(
    st.text(max_size=3),
    st.binary(max_size=3),
    st.none(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    hnp.arrays(
        st.one_of(hnp.unicode_string_dtypes(), hnp.byte_string_dtypes(), hnp.datetime64_dtypes()),
        OBS_SHAPE,
    ),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=2), st.none()), min_size=3, max_size=3),
    st.just(np.array([1.0, None, 2.0], dtype=object)),
    st.just(2**80),  # too large for any integer dtype: numpy makes an object array
)
NESTED_LISTS = st.recursive(
    st.floats(-10, 10), lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=6
)
ANY_OBS = st.one_of(VALID_OBS, WRONG_SHAPE_OBS, _nonfinite_obs(), NOT_NUMBERS, NESTED_LISTS)


def _expected_error(observation: Any) -> tuple[type[Exception], tuple[str, ...]] | None:
    """The contract: (error type, words of which the message must contain one), or None for an
    observation that must give an action."""
    try:
        array = np.asarray(observation)
    except ValueError:  # ragged nesting: numpy says "inhomogeneous shape"
        return TypeError, ("shape", "array")
    if array.dtype.kind not in NUMERIC_KINDS:
        return TypeError, ("dtype",)
    if array.shape != OBS_SHAPE:
        return ValueError, ("shape",)
    if not np.isfinite(array.astype(np.float64)).all():
        return ValueError, ("NaN",)
    return None


def _check_action(kind: str, action: Any) -> None:
    if kind == "discrete":
        assert isinstance(action, (int, np.integer)) and 0 <= int(action) < 3
    else:
        assert isinstance(action, np.ndarray) and action.shape == (2,)
        assert np.isfinite(action).all() and (np.abs(action) <= 1).all()


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
@SETTINGS
@given(observation=ANY_OBS)
def test_wrapper_gives_an_action_or_names_the_problem(kind: str, observation: Any) -> None:
    wrapper = _algo(kind).as_stateful_wrapper()
    expected = _expected_error(observation)
    if expected is None:
        _check_action(kind, wrapper.predict(observation, 0.0))
        return
    error, words = expected
    with pytest.raises((TypeError, ValueError)) as info:
        wrapper.predict(observation, 0.0)
    assert type(info.value) is error or isinstance(info.value, error), info.value
    assert any(w in str(info.value) for w in words), str(info.value)
    assert wrapper.step_count == 0  # a rejected input is not a step


@SETTINGS
@given(observations=st.lists(ANY_OBS, min_size=1, max_size=12))
def test_rejected_inputs_leave_the_episode_untouched(observations: list[Any]) -> None:
    # Memory, caches and step counter after valid+invalid inputs equal those after the valid
    # inputs alone: the continuous model's raw outputs (its actions) must match exactly.
    algo = _algo("continuous")
    mixed, clean = algo.as_stateful_wrapper(), algo.as_stateful_wrapper()
    got = []
    for observation in observations:
        try:
            got.append((observation, mixed.predict(observation, 0.0)))
        except (TypeError, ValueError):
            assert _expected_error(observation) is not None
    for observation, action in got:
        np.testing.assert_array_equal(clean.predict(observation, 0.0), action)
    assert mixed.step_count == clean.step_count == len(got)


@pytest.mark.parametrize(
    "observation",
    [np.array([1 + 2j, 0, 0]), np.array([1, 2, 3], dtype="timedelta64[s]")],
    ids=["complex", "timedelta"],
)
def test_complex_and_timedelta_observations_are_rejected(observation: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning is not a rejection
        with pytest.raises(TypeError, match="dtype"):
            _algo("discrete").as_stateful_wrapper().predict(observation, 0.0)


@pytest.mark.parametrize("reward", [math.nan, math.inf])
def test_nonfinite_reward_is_rejected(reward: float) -> None:
    wrapper = _algo("discrete").as_stateful_wrapper(target_return=1.0)
    wrapper.predict(np.zeros(3, np.float32), 0.0)
    with pytest.raises(ValueError, match="reward"):
        wrapper.predict(np.zeros(3, np.float32), reward)


# ============================================================ the ONNX policy's inputs
@functools.cache
def _onnx_session() -> Any:
    """The continuous model (it reads the return-to-go) exported to ONNX once, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.onnx"
        _algo("continuous").save_policy(str(path))
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


REWARDS = st.one_of(st.floats(-1, 1), st.sampled_from([math.nan, math.inf, -math.inf]))


@SETTINGS
@given(calls=st.lists(st.tuples(ANY_OBS, REWARDS), min_size=1, max_size=12))
def test_the_onnx_policy_refuses_what_the_wrapper_refuses_and_keeps_its_episode(
    calls: list[tuple[Any, float]],
) -> None:
    # The wrapper's two guarantees above, for the ONNX policy, with rewards: a rejected call
    # names the problem in one line and takes nothing in (its reward included: the model reads
    # the return-to-go), so the accepted calls give exactly a clean episode's actions.
    mixed, clean = ONNXPolicy(_onnx_session()), ONNXPolicy(_onnx_session())
    taken = []
    for observation, reward in calls:
        expected = _expected_error(observation)
        if expected is None and not math.isfinite(reward):
            expected = ValueError, ("reward",)
        if expected is None:
            taken.append((observation, reward, mixed.predict(observation, reward)))
            continue
        error, words = expected
        with pytest.raises((TypeError, ValueError)) as info:
            mixed.predict(observation, reward)
        message = str(info.value)
        assert isinstance(info.value, error), message
        assert any(w in message for w in words) and "\n" not in message, message
    for observation, reward, action in taken:
        np.testing.assert_array_equal(clean.predict(observation, reward), action)


# ==================================================================== load_minari's inputs
_BOX_SHAPES = st.sampled_from([(1,), (2,), (2, 2)])
LEAF_SPACES = st.one_of(
    _BOX_SHAPES.map(lambda s: gym.spaces.Box(-1.0, 1.0, s, np.float32)),
    st.just(gym.spaces.Box(-1.0, 1.0, (2,), np.float64)),
    st.just(gym.spaces.Box(-3, 3, (2,), np.int64)),
    st.builds(gym.spaces.Discrete, st.integers(1, 4), start=st.integers(-2, 2)),
    st.builds(
        lambda nvec, start: gym.spaces.MultiDiscrete(nvec, start=[start] * len(nvec)),
        st.lists(st.integers(1, 3), min_size=1, max_size=3),
        st.integers(-1, 1),
    ),
    st.builds(gym.spaces.MultiBinary, st.integers(1, 3)),
)
OBS_SPACES = st.one_of(
    st.just(gym.spaces.Box(0, 255, (2, 3), np.uint8)),  # an image: kept as uint8 (2, 3)
    st.recursive(
        LEAF_SPACES,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda s: gym.spaces.Tuple(s)),
            st.dictionaries(st.sampled_from("dcba"), inner, min_size=1, max_size=3).map(
                gym.spaces.Dict
            ),
        ),
        max_leaves=4,
    ),
)
ACTION_SPACES = st.one_of(
    st.builds(gym.spaces.Discrete, st.integers(1, 4), start=st.integers(-1, 1)),
    st.sampled_from([(1,), (2,), (2, 1)]).map(lambda s: gym.spaces.Box(-1.0, 1.0, s, np.float32)),
)
NONFINITE = ("nan_observation", "nonfinite_action", "nonfinite_reward")
CORRUPTIONS = (
    *NONFINITE,
    "observation_outside_space",
    "action_outside_space",
    "early_end",
    "missing_final_observation",
    "wrong_observation_shape",
    "empty_episode",
)
_dataset_numbers = itertools.count()

Path_ = tuple[Any, ...]


def _leaves(space: gym.Space[Any], path: Path_ = ()) -> list[tuple[Path_, gym.Space[Any]]]:
    if isinstance(space, gym.spaces.Dict):
        return [leaf for k, sub in space.spaces.items() for leaf in _leaves(sub, (*path, k))]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in _leaves(sub, (*path, i))]
    return [(path, space)]


def _stack(space: gym.Space[Any], values: list[Any]) -> Any:
    """Per-step samples -> the batched layout Minari stores (dict / tuple of arrays)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: _stack(sub, [v[k] for v in values]) for k, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_stack(sub, [v[i] for v in values]) for i, sub in enumerate(space.spaces))
    if isinstance(space, gym.spaces.Text):
        return list(values)  # Minari stores strings from a list, not a unicode array
    return np.stack([np.asarray(v) for v in values])


def _edit(data: Any, path: Path_, edit: Callable[[np.ndarray], np.ndarray]) -> Any:
    """A copy of batched ``data`` whose leaf at ``path`` is ``edit(leaf)``."""
    if not path:
        return edit(np.array(data))
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {**data, head: _edit(data[head], rest, edit)}
    return tuple(_edit(v, rest, edit) if i == head else v for i, v in enumerate(data))


def _map_leaves(data: Any, edit: Callable[[np.ndarray], np.ndarray]) -> Any:
    if isinstance(data, dict):
        return {k: _map_leaves(v, edit) for k, v in data.items()}
    if isinstance(data, tuple):
        return tuple(_map_leaves(v, edit) for v in data)
    return edit(np.asarray(data))


def _oracle_observations(space: gym.Space[Any], values: list[Any]) -> np.ndarray:
    """What the buffer must hold, from gymnasium's own flatten (images keep their shape)."""
    if isinstance(space, gym.spaces.Box):
        dtype = np.uint8 if space.dtype == np.uint8 else np.float32
        return np.stack([np.asarray(v, dtype=dtype) for v in values])
    return np.stack([gym.spaces.flatten(space, v).astype(np.float32) for v in values])


class _Case:
    """One generated dataset: clean episodes, then at most one corruption of one episode."""

    def __init__(self, draw: st.DrawFn, corruption: str | None) -> None:
        self.obs_space = draw(OBS_SPACES)
        self.act_space = draw(ACTION_SPACES)
        seed = draw(st.integers(0, 2**16))
        self.obs_space.seed(seed)
        self.act_space.seed(seed + 1)
        self.lengths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
        self.ends = [
            draw(st.sampled_from(["terminated", "truncated", "both"])) for _ in self.lengths
        ]
        self.samples = [[self.obs_space.sample() for _ in range(n + 1)] for n in self.lengths]
        self.episodes = [self._episode(i) for i in range(len(self.lengths))]
        self.corruption = corruption
        self.victim = draw(st.integers(0, len(self.lengths) - 1))
        self.on_nonfinite = draw(st.sampled_from(["error", "drop_episode"]))
        self.lenient = False  # True: the corrupted value sits where no error is required
        self.field: str | None = None
        self.words: tuple[str, ...] = ()
        if corruption is not None:
            assume(self._corrupt(draw))  # False: not applicable to these spaces or lengths

    def _episode(self, i: int) -> dict[str, Any]:
        n, end = self.lengths[i], self.ends[i]
        last = np.arange(n) == n - 1
        return {
            "observations": _stack(self.obs_space, self.samples[i]),
            "actions": np.stack([np.asarray(self.act_space.sample()) for _ in range(n)]),
            "rewards": np.random.default_rng(i).normal(size=n),
            "terminations": last & (end != "truncated"),
            "truncations": last & (end != "terminated"),
        }

    def _corrupt(self, draw: st.DrawFn) -> bool:
        episode, n = self.episodes[self.victim], self.lengths[self.victim]
        kind = self.corruption
        step = draw(st.integers(0, n - 1))
        bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        if kind == "nan_observation":
            floats = [p for p, s in _leaves(self.obs_space) if s.dtype.kind == "f"]
            if not floats:
                return False
            step = draw(st.integers(0, n))  # also the trailing observation, which is dropped
            self.lenient = step == n
            episode["observations"] = _edit(
                episode["observations"], draw(st.sampled_from(floats)), _set(step, bad)
            )
            return self._expect("observations", "non-finite")
        if kind == "observation_outside_space":
            discrete = [
                (p, s)
                for p, s in _leaves(self.obs_space)
                if isinstance(s, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
            ]
            if not discrete:
                return False
            path, space = draw(st.sampled_from(discrete))
            value = int(np.max(space.start + (space.n if hasattr(space, "n") else space.nvec)))
            episode["observations"] = _edit(episode["observations"], path, _set(step, value))
            return self._expect("observations", "outside")
        if kind == "action_outside_space":
            if isinstance(self.act_space, gym.spaces.Discrete):
                low, n_actions = int(self.act_space.start), int(self.act_space.n)
                value = draw(st.sampled_from([low - 1, low + n_actions, low + 0.5]))
                episode["actions"] = episode["actions"].astype(np.float64)
            else:
                value = draw(st.sampled_from([1.5, -1.5]))
            episode["actions"] = _set(step, value)(episode["actions"])
            return self._expect("actions", "outside")
        if kind == "nonfinite_action":
            episode["actions"] = _set(step, bad)(episode["actions"].astype(np.float64))
            return self._expect("actions", "non-finite")
        if kind == "nonfinite_reward":
            episode["rewards"] = _set(step, bad)(episode["rewards"])
            return self._expect("rewards", "non-finite")
        if kind == "early_end":
            if n < 2:
                return False
            field = draw(st.sampled_from(["terminations", "truncations"]))
            episode[field] = episode[field].copy()
            episode[field][draw(st.integers(0, n - 2))] = True
            return self._expect(field, "before the last step")
        if kind == "missing_final_observation":
            episode["observations"] = _map_leaves(episode["observations"], lambda a: a[:-1])
            return self._expect("observations", "N + 1")
        if kind == "wrong_observation_shape":
            boxes = [p for p, s in _leaves(self.obs_space) if isinstance(s, gym.spaces.Box)]
            if not boxes:
                return False
            pad = lambda a: np.concatenate([a, a[..., :1]], axis=-1)  # noqa: E731
            episode["observations"] = _edit(
                episode["observations"], draw(st.sampled_from(boxes)), pad
            )
            return self._expect("observations", "shape")
        assert kind == "empty_episode"  # written by editing the HDF5 file after creation
        return self._expect("actions", "length 0")

    def _expect(self, field: str, *words: str) -> bool:
        self.field, self.words = field, words
        return True

    # -------------------------------------------------------------- writing and the oracle
    def write(self) -> str:
        dataset_id = f"props/case{next(_dataset_numbers)}-v0"
        buffers = [EpisodeBuffer(**episode) for episode in self.episodes]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari nags about unset author and permalink
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                observation_space=self.obs_space,
                action_space=self.act_space,
                data_format="hdf5",
                jpeg_encoding=False,
            )
        if self.corruption == "empty_episode":
            _empty_hdf5_episode(dataset.storage.data_path / "main_data.hdf5", self.victim)
        return dataset_id

    def kept(self) -> list[int]:
        """Episodes the buffer must hold: d3rlpy stores no transition for one-step truncated
        episodes, and ``drop_episode`` skips the non-finite one."""
        dropped = self.corruption in NONFINITE and self.on_nonfinite == "drop_episode"
        return [
            i
            for i, (n, end) in enumerate(zip(self.lengths, self.ends, strict=True))
            if (n > 1 or end != "truncated") and not (dropped and i == self.victim)
        ]

    def check_buffer(self, buffer: ReplayBuffer) -> None:
        kept = self.kept()
        assert len(buffer.episodes) == len(kept)
        discrete = isinstance(self.act_space, gym.spaces.Discrete)
        info = buffer.dataset_info
        assert info.action_space == (ActionSpace.DISCRETE if discrete else ActionSpace.CONTINUOUS)
        assert info.action_size == (self.act_space.n if discrete else np.prod(self.act_space.shape))
        for episode, i in zip(buffer.episodes, kept, strict=True):
            self._check_episode(episode, i, discrete)

    def _check_episode(self, episode: Episode, i: int, discrete: bool) -> None:
        raw, n = self.episodes[i], self.lengths[i]
        # aligned: episode i's own first n observations, nothing shifted from another episode
        expected = _oracle_observations(self.obs_space, self.samples[i][:n])
        assert episode.observations.dtype == expected.dtype
        np.testing.assert_array_equal(episode.observations, expected)
        if discrete:
            want = (raw["actions"].reshape(n, 1) - self.act_space.start).astype(np.int64)
            assert episode.actions.dtype == np.int64
        else:
            want = raw["actions"].reshape(n, -1).astype(np.float32)
        np.testing.assert_array_equal(episode.actions, want)
        np.testing.assert_array_equal(episode.rewards, raw["rewards"].astype(np.float32)[:, None])
        assert episode.terminated == (self.ends[i] != "truncated")


def _set(step: int, value: Any) -> Callable[[np.ndarray], np.ndarray]:
    def edit(array: np.ndarray) -> np.ndarray:
        array = np.array(array)
        array.reshape(len(array), -1)[step, 0] = value
        return array

    return edit


def _empty_hdf5_episode(path: Path, index: int) -> None:
    """Episode ``index`` with no steps: one observation, zero actions/rewards/flags."""
    with h5py.File(path, "a") as file:
        group = file[f"episode_{index}"]
        names: list[str] = []
        group.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in names:
            data = group[name][()]
            del group[name]
            group.create_dataset(
                name, data=data[:1] if name.startswith("observations") else data[:0]
            )
        group.attrs["total_steps"] = 0


@st.composite
def _cases(draw: st.DrawFn, corruption: str | None) -> _Case:
    return _Case(draw, corruption)


@pytest.fixture
def minari_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # one root for all examples of a test (each example writes a new dataset id)
    root = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.mark.parametrize("corruption", [None, *CORRUPTIONS])
@settings(
    SETTINGS,
    max_examples=_EXPLORE or 10,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_load_minari_gives_the_right_buffer_or_names_the_problem(
    minari_root: Path, corruption: str | None, data: st.DataObject
) -> None:
    case = data.draw(_cases(corruption))
    dataset_id = case.write()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            buffer = load_minari(dataset_id, on_nonfinite=case.on_nonfinite)  # type: ignore[arg-type]
    except DatasetFormatError as error:
        assert dataset_id in str(error)
        if case.corruption is None or (
            case.corruption in NONFINITE and case.on_nonfinite != "error"
        ):
            # dropping may leave nothing: the only acceptable failure here
            assert not case.kept() and "no usable episodes" in str(error), error
            return
        assert error.episode == case.victim, error
        assert error.field == case.field, error
        assert any(w in str(error) for w in case.words), error
        return
    assert (
        case.corruption is None
        or case.lenient
        or (case.corruption in NONFINITE and case.on_nonfinite == "drop_episode")
    ), f"{case.corruption} in episode {case.victim} was loaded without an error"
    case.check_buffer(buffer)
    if len(case.kept()) < len(case.lengths):
        assert caught, "episodes left out without a warning"


TEXT_SPACES = st.one_of(
    st.just(gym.spaces.Text(4)),
    LEAF_SPACES.map(lambda s: gym.spaces.Dict({"leaf": s, "text": gym.spaces.Text(4)})),
)


@settings(
    SETTINGS,
    max_examples=_EXPLORE or 10,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    spaces=st.tuples(
        st.one_of(TEXT_SPACES, LEAF_SPACES),
        # MultiDiscrete actions load (raveled to one index): Text actions stay unsupported
        st.sampled_from([gym.spaces.Text(4), gym.spaces.Discrete(2)]),
    ).filter(lambda s: _has_text(s[0]) or isinstance(s[1], gym.spaces.Text))
)
def test_unsupported_spaces_fail_with_unsupported_space_error(
    minari_root: Path, spaces: tuple[gym.Space[Any], gym.Space[Any]]
) -> None:
    obs_space, act_space = spaces
    obs_space.seed(0)
    act_space.seed(0)
    buffer = EpisodeBuffer(
        observations=_stack(obs_space, [obs_space.sample() for _ in range(3)]),
        actions=_stack(act_space, [act_space.sample() for _ in range(2)]),
        rewards=np.zeros(2),
        terminations=np.array([False, True]),
        truncations=np.zeros(2, bool),
    )
    dataset_id = f"props/case{next(_dataset_numbers)}-v0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id,
            [buffer],
            observation_space=obs_space,
            action_space=act_space,
            data_format="hdf5",
        )
    with pytest.raises(UnsupportedSpaceError) as info:
        load_minari(dataset_id)
    assert "Text" in str(info.value)


def _has_text(space: gym.Space[Any]) -> bool:
    return any(isinstance(s, gym.spaces.Text) for _, s in _leaves(space))


# ============================================================================ configs
FIELD_RULES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "context_size": lambda c: c["context_size"] > 0,
    "num_segments": lambda c: c["num_segments"] > 0,
    "memory_slots": lambda c: c["memory_slots"] >= 1,
    "lru_blend": lambda c: 0.0 <= c["lru_blend"] <= 1.0,
    "num_heads": lambda c: c["num_heads"] > 0 and c["embed_dim"] % c["num_heads"] == 0,
}


@SETTINGS
@given(
    context_size=st.integers(-3, 5),
    num_segments=st.integers(-2, 3),
    memory_slots=st.integers(-2, 3),
    lru_blend=st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 1.0, math.nan, math.inf])),
    embed_dim=st.sampled_from([6, 8, 12]),
    num_heads=st.integers(0, 5),
    discrete=st.booleans(),
)
def test_invalid_configs_fail_at_create_naming_every_bad_field(
    discrete: bool, memory_slots: int, lru_blend: float, **fields: Any
) -> None:
    """The algorithm's fields and its encoder's, named in one error."""
    config_type = DiscreteELMURDTConfig if discrete else ELMURDTConfig
    encoder = ELMURFactory(memory_slots=memory_slots, lru_blend=lru_blend)
    config = config_type(  # type: ignore[arg-type]
        **{**SMALL, **fields, "batch_size": 2, "sequence_encoder": encoder}
    )
    fields.update(memory_slots=memory_slots, lru_blend=lru_blend)
    bad = {name for name, ok in FIELD_RULES.items() if not ok(fields)}
    if not bad:
        algo = config.create()
        algo.create_impl(OBS_SHAPE, 2)  # the model accepts what create() accepted
        return
    with pytest.raises(ValueError) as info:
        config.create()
    for name in FIELD_RULES:
        assert (f"{name}=" in str(info.value)) == (name in bad), (name, str(info.value))


@SETTINGS
@given(
    context_size=st.integers(1, 5),
    num_segments=st.integers(1, 4),
    lengths=st.lists(st.integers(1, 16), min_size=1, max_size=4),
)
def test_windows_past_every_episode_fail_naming_num_segments(
    context_size: int, num_segments: int, lengths: list[int]
) -> None:
    # Windows are right-padded, so an episode must reach into the S-th segment:
    # longest > (S - 1) * K. Otherwise fit() (through segment_view) refuses.
    algo = DiscreteELMURDTConfig(  # type: ignore[arg-type]
        **{**SMALL, "context_size": context_size, "num_segments": num_segments}
    ).create()
    episodes = [
        Episode(np.zeros((n, 3), np.float32), np.zeros((n, 1), np.int64), np.zeros((n, 1)), True)
        for n in lengths
    ]
    dataset = ReplayBuffer(
        InfiniteBuffer(), episodes=episodes, action_space=ActionSpace.DISCRETE, action_size=3
    )
    if max(lengths) > (num_segments - 1) * context_size:
        algo.segment_view(dataset, seed=0)
        return
    with pytest.raises(ValueError, match="num_segments") as info:
        algo.segment_view(dataset, seed=0)
    assert "context_size" in str(info.value) and str(max(lengths)) in str(info.value)


@pytest.mark.parametrize(
    "field,value", [("context_size", "4"), ("context_size", 2.5), ("memory_slots", True)]
)
def test_wrong_types_fail_at_create_naming_the_field(field: str, value: Any) -> None:
    if field == "memory_slots":  # ELMUR's own option
        overrides = {"sequence_encoder": ELMURFactory(memory_slots=value)}
    else:
        overrides = {field: value}
    with pytest.raises(ValueError, match=field):
        DiscreteELMURDTConfig(**{**SMALL, **overrides}).create()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "factory,field",
    [(ELMURFactory(norm="mid"), "norm"), (ELMURFactory(time_buckets=3), "time_buckets")],
)
def test_sequence_encoder_fields_fail_at_create(factory: ELMURFactory, field: str) -> None:
    config = DiscreteELMURDTConfig(**SMALL, sequence_encoder=factory)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        config.create()


def test_sequence_encoder_fields_do_fail_when_the_model_is_built() -> None:
    config = DiscreteELMURDTConfig(**SMALL, sequence_encoder=ELMURFactory(norm="mid"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm"):
        config.create().create_impl(OBS_SHAPE, 2)


# ======================================================================== model files
@functools.cache
def _genuine_d3() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.d3"
        _algo("discrete").save(str(path))
        return path.read_bytes()


@st.composite
def _damaged_d3(draw: st.DrawFn) -> bytes:
    """A genuine .d3 truncated, or with a few bytes overwritten, mostly where structure lives
    (pickle opcodes, the JSON config, the zip directory of the weights) rather than in the
    tensor data, where a flipped byte is just another weight."""
    data = bytearray(_genuine_d3())
    # d3rlpy pickles the weights first: their zip directory ends right before the config
    config_at = data.index(b'{"observation_shape"')
    regions = [(0, 64), (config_at - 700, config_at), (config_at, len(data)), (0, len(data))]
    region = draw(st.sampled_from(regions))
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(*region))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(region[0], region[1] - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data)


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_damaged_d3())
def test_damaged_model_files_load_or_raise_model_file_error(tmp_path: Path, content: bytes) -> None:
    # A damaged file either still loads (a changed weight or a changed but valid config) or
    # gives ModelFileError; never another exception type (all examples share tmp_path).
    path = tmp_path / "damaged.d3"
    path.write_bytes(content)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a changed version string warns
            algo = load_learnable(path)
    except ModelFileError as error:
        assert str(path) in str(error)
        return
    assert algo.impl is not None
