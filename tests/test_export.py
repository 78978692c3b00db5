"""save_policy's stateful export: TorchScript and ONNX steps give the stateful wrapper's outputs."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.preprocessing import MinMaxActionScaler, MinMaxObservationScaler, MinMaxRewardScaler
from torch import nn

from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig, ONNXPolicy, load_onnx_policy
from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase
from d3rlpy_elmur.defaults import DEFAULT_TARGET_RETURN
from d3rlpy_elmur.evaluation import evaluate, evaluate_model, evaluate_popgym, evaluate_tmaze
from d3rlpy_elmur.export import PolicyStep
from d3rlpy_elmur.models import ELMURFactory, GRUFactory
from d3rlpy_elmur_cli import build_parser
from d3rlpy_elmur_cli.bench.suite_config import Suite
from d3rlpy_elmur_cli.bench.sweep import run_sweep
from tests.encoders import FlattenEncoderFactory
from tests.helpers import cue_recall_dataset, cue_recall_episode

K = 4
STEPS = 3 * K + 2  # past three segment ends
SMALL = dict(
    context_size=K,
    num_segments=2,
    embed_dim=16,
    num_heads=2,
    sequence_encoder=ELMURFactory(memory_slots=2),
)


class RecordingSampler:
    """Greedy (discrete) or identity (continuous), keeping every output it was given."""

    def __init__(self, discrete: bool):
        self.discrete = discrete
        self.outputs: list[np.ndarray] = []

    def __call__(self, output: np.ndarray) -> Any:
        self.outputs.append(output.copy())
        return int(output.argmax()) if self.discrete else output


def _algo(discrete: bool, shape: Any, **overrides: Any) -> ELMURDTBase:
    torch.manual_seed(0)
    config_class = DiscreteELMURDTConfig if discrete else ELMURDTConfig
    scalers: dict[str, Any] = {"reward_scaler": MinMaxRewardScaler(minimum=0.0, maximum=2.0)}
    if not isinstance(shape[0], tuple):
        scalers["observation_scaler"] = MinMaxObservationScaler(
            minimum=-np.ones(shape), maximum=np.ones(shape)
        )
    if not discrete:
        scalers["action_scaler"] = MinMaxActionScaler(minimum=-2 * np.ones(2), maximum=np.ones(2))
    params = {**SMALL, "token_format": "rtg_obs_act", **scalers, **overrides}
    if isinstance(shape[0], tuple):
        params["encoder_factory"] = FlattenEncoderFactory()
    algo = config_class(**params).create()  # type: ignore[arg-type]
    algo.create_impl(shape, 3 if discrete else 2)
    with torch.no_grad():  # weights far from init, so every path matters
        for p in algo.impl.policy.parameters():  # type: ignore[union-attr]
            p.normal_(0.0, 0.3)
    return algo  # type: ignore[no-any-return]


def _episode(shape: Any, rng: np.random.Generator) -> list[Any]:
    def one() -> Any:
        if isinstance(shape[0], tuple):
            return [rng.standard_normal(part).astype(np.float32) for part in shape]
        return rng.standard_normal(shape).astype(np.float32)

    return [one() for _ in range(STEPS)]


def _wrapper_run(
    algo: ELMURDTBase, episode: list[Any], target_return: float = 1.5
) -> tuple[list[Any], np.ndarray]:
    sampler = RecordingSampler(algo.get_action_type().name == "DISCRETE")
    wrapper = algo.as_stateful_wrapper(target_return, sampler)  # type: ignore[arg-type]
    actions = [wrapper.predict(o, 0.25 * (t > 0)) for t, o in enumerate(episode)]
    return actions, np.stack(sampler.outputs)


def _scripted_run(
    algo: ELMURDTBase, path: Path, episode: list[Any], target_return: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Actions and outputs of the TorchScript step over ``episode``, the state threaded
    through by the caller (rewards as ``_wrapper_run`` gives them)."""
    scripted = torch.jit.load(str(path))
    step = PolicyStep(algo)
    state = [step.initial_state(1)[name] for name in step.state_names]
    rtg, actions, outputs = target_return, [], []
    for t, observation in enumerate(episode):
        parts = observation if isinstance(observation, list) else [observation]
        rtg -= 0.25 * (t > 0)
        action, output, *state = scripted(
            *(torch.from_numpy(p)[None] for p in parts),
            torch.tensor([[rtg]]),
            torch.tensor([t == 0]),
            *state,
        )
        actions.append(action[0].numpy())
        outputs.append(output[0].numpy())
    return np.stack(actions), np.stack(outputs)


def _onnx_run(policy: ONNXPolicy, episode: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Actions and outputs of a new episode of ``policy`` (rewards as ``_wrapper_run``)."""
    policy.reset()
    actions, outputs = [], []
    for t, observation in enumerate(episode):
        got, output = policy.step(
            [p[None] for p in observation] if isinstance(observation, list) else observation[None],
            np.array([0.25 * (t > 0)]),
        )
        actions.append(got[0])
        outputs.append(output[0])
    return np.stack(actions), np.stack(outputs)


CASES = [
    pytest.param(True, (3,), {}, id="discrete-vector"),
    pytest.param(False, (3,), {}, id="continuous-vector"),
    pytest.param(True, ((2,), (3,)), {}, id="discrete-tuple"),
    pytest.param(
        False,
        ((2,), (3,)),
        {"sequence_encoder": ELMURFactory(memory_slots=2, attention_window=0)},
        id="continuous-tuple-W0",
    ),
    pytest.param(True, (3,), {"sequence_encoder": GRUFactory()}, id="discrete-gru"),
    pytest.param(
        True,
        (3,),
        {"sequence_encoder": ELMURFactory(memory_slots=2, write_gate=0.5, write_gate_empty=False)},
        id="discrete-write-gate-not-empty",
    ),
    pytest.param(
        True,
        (3,),
        # the POPGym preset's encoder: W = K, no gate (the defaults have W = 2 and the gate)
        {"sequence_encoder": ELMURFactory(memory_slots=2, attention_window=None, write_gate=0.0)},
        id="discrete-WK-no-gate",
    ),
]


@pytest.mark.parametrize(("discrete", "shape", "overrides"), CASES)
def test_exported_policies_act_like_the_stateful_wrapper(
    discrete: bool, shape: Any, overrides: dict[str, Any], tmp_path: Path
) -> None:
    algo = _algo(discrete, shape, **overrides)
    episode = _episode(shape, np.random.default_rng(1))
    actions, outputs = _wrapper_run(algo, episode)

    # TorchScript: the state is threaded through by the caller
    algo.save_policy(str(tmp_path / "policy.pt"))
    got, output = _scripted_run(algo, tmp_path / "policy.pt", episode)
    np.testing.assert_allclose(output, outputs, atol=1e-4)
    np.testing.assert_allclose(got, np.stack(actions), atol=1e-4)

    # ONNX through onnxruntime, twice (reset() starts the episode again)
    algo.save_policy(str(tmp_path / "policy.onnx"))
    policy = load_onnx_policy(tmp_path / "policy.onnx", target_return=1.5)
    for _ in range(2):
        got, output = _onnx_run(policy, episode)
        np.testing.assert_allclose(output, outputs, atol=1e-4)
        np.testing.assert_allclose(got, np.stack(actions), atol=1e-4)
    # the state it keeps is the graph's state inputs, one row each
    assert all(
        name.startswith("state.") and value.shape[0] == 1 for name, value in policy.state.items()
    )
    is_gru = isinstance(overrides.get("sequence_encoder"), GRUFactory)
    assert ("state.memory" in policy.state) == (not is_gru)


def test_onnx_batch_restarts_one_row_without_touching_the_others(tmp_path: Path) -> None:
    algo = _algo(True, (3,), sequence_encoder=ELMURFactory(memory_slots=2, attention_window=2))
    rng = np.random.default_rng(2)
    episodes = [_episode((3,), rng) for _ in range(3)]
    expected = [_wrapper_run(algo, episode)[1] for episode in episodes]
    algo.save_policy(str(tmp_path / "policy.onnx"))
    policy = load_onnx_policy(tmp_path / "policy.onnx", target_return=1.5)
    policy.reset(2)
    # row 0 runs episode 0 throughout; row 1 runs episode 1 for 5 steps, then episode 2 anew
    restart = 5
    for t in range(STEPS):
        second, t1 = (episodes[1], t) if t < restart else (episodes[2], t - restart)
        _, output = policy.step(
            np.stack([episodes[0][t], second[t1]]),
            np.array([0.25 * (t > 0), 0.25 * (t1 > 0)]),
            first=np.array([False, t == restart]),
        )
        np.testing.assert_allclose(output[0], expected[0][t], atol=1e-4)
        np.testing.assert_allclose(
            output[1], (expected[1] if t < restart else expected[2])[t1], atol=1e-4
        )


def test_onnx_rows_out_of_phase_follow_every_memory_write(tmp_path: Path) -> None:
    """The read cache in the state (the memory folded into the read, its time biases) is
    refreshed at each row's own segment ends only: rows that restart at different steps, so
    that the graph's segment end runs while other rows are mid-segment, give the wrapper's
    outputs over up to six segments (blends into used slots among the writes, M = 2). Each
    restarted row starts from the windows of keys, values and outputs, and the context, that
    its earlier episode left."""
    algo = _algo(True, (3,), sequence_encoder=ELMURFactory(memory_slots=2, attention_window=2))
    rng = np.random.default_rng(9)
    starts = [0, 1, K + 2]  # the last after a first segment: its context must be hidden again
    T = 6 * K
    episodes = [[rng.standard_normal(3).astype(np.float32) for _ in range(T)] for _ in starts]
    expected = [_wrapper_run(algo, episode)[1] for episode in episodes]
    algo.save_policy(str(tmp_path / "policy.onnx"))
    policy = load_onnx_policy(tmp_path / "policy.onnx", target_return=1.5)
    policy.reset(len(starts))
    for t in range(T):
        local = [t - start for start in starts]
        # before its start a row runs another episode (random observations)
        observations = [
            episode[i] if i >= 0 else rng.standard_normal(3).astype(np.float32)
            for episode, i in zip(episodes, local, strict=True)
        ]
        _, output = policy.step(
            np.stack(observations),
            np.array([0.25 * (i > 0 or (i < 0 and t > 0)) for i in local]),
            first=np.array([i == 0 for i in local]),
        )
        for row, i in enumerate(local):
            if i >= 0:
                np.testing.assert_allclose(output[row], expected[row][i], atol=1e-4)


def test_the_onnx_token_path_reads_neither_the_memory_nor_a_shape(tmp_path: Path) -> None:
    """Outside the segment end (the graph's If), the action depends on the state's read
    cache, not on the memory or its anchors, and computes no time bucket (a Log); the shape
    arithmetic of the batch axis is folded out of the graph (no Shape op)."""
    import onnx

    _algo(True, (3,)).save_policy(str(tmp_path / "policy.onnx"))
    graph = onnx.load(str(tmp_path / "policy.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    needed, seen, todo = set(), set(), ["action", "output"]
    while todo:  # every value the action and the output are computed from
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None:
            needed.add(node.op_type)
            todo.extend(node.input)
    assert "state.read_A.0" in seen and "state.read_c.1" in seen
    assert not {"state.memory", "state.anchors"} & seen
    assert "If" not in needed and "Log" not in needed
    assert not any(node.op_type == "Shape" for node in graph.node)
    branches = [a.g for node in graph.node if node.op_type == "If" for a in node.attribute]
    assert any(node.op_type == "Log" for g in branches for node in g.node)


def test_the_onnx_policy_runs_without_torch_and_d3rlpy(tmp_path: Path) -> None:
    algo = _algo(True, (3,))
    episode = _episode((3,), np.random.default_rng(3))
    actions, _ = _wrapper_run(algo, episode)
    algo.save_policy(str(tmp_path / "policy.onnx"))
    np.save(tmp_path / "episode.npy", np.stack(episode))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch or d3rlpy now fails
        sys.modules["d3rlpy"] = None
        import numpy as np
        import d3rlpy_elmur
        assert not hasattr(d3rlpy_elmur, "ELMURDTConfig")
        policy = d3rlpy_elmur.load_onnx_policy({str(tmp_path / "policy.onnx")!r}, 1.5)
        episode = np.load({str(tmp_path / "episode.npy")!r})
        print([policy.predict(o, 0.25 * (t > 0)) for t, o in enumerate(episode)])
        assert "torch" not in sys.modules or sys.modules["torch"] is None
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == str(actions)


def test_save_policy_names_the_formats_it_writes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.pt.*\.onnx"):
        _algo(True, (3,)).save_policy(str(tmp_path / "policy.bin"))


def test_the_onnx_policy_takes_a_list_as_one_observation_and_names_missing_parts(
    tmp_path: Path,
) -> None:
    vector = _algo(True, (3,))
    vector.save_policy(str(tmp_path / "vector.onnx"))
    episode = _episode((3,), np.random.default_rng(4))
    as_arrays, as_lists = (load_onnx_policy(tmp_path / "vector.onnx", 1.5) for _ in range(2))
    for t, observation in enumerate(episode):
        reward = 0.25 * (t > 0)
        assert as_lists.predict(observation.tolist(), reward) == as_arrays.predict(
            observation, reward
        )
    parts = _algo(True, ((2,), (3,)))
    parts.save_policy(str(tmp_path / "parts.onnx"))
    # the stateful wrapper's checks and messages
    with pytest.raises(
        TypeError, match=r"expected a tuple of 2 arrays of shapes \[\(2,\), \(3,\)\]"
    ):
        load_onnx_policy(tmp_path / "parts.onnx").predict(np.zeros(5, np.float32), 0.0)


# ------------------------------------------------ straight out of training: fit, update, evaluation
QUIET = dict(show_progress=False, logger_adapter=NoopAdapterFactory())
ENCODERS = [
    pytest.param(
        ELMURFactory(memory_slots=2, ffn="moe"), id="elmur-moe"
    ),  # the MoE has an auxiliary loss
    pytest.param(GRUFactory(), id="gru"),
]


def _autograd_tensors(module: nn.Module) -> list[str]:
    """Where tensors with autograd history (requires_grad or a grad_fn) are reachable from the
    attributes of ``module`` and its submodules (containers and this package's objects walked
    through), parameters aside: a module holding one cannot be deep-copied, which export does."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(value: Any, where: str) -> None:
        if id(value) in seen or isinstance(value, (nn.Parameter, nn.Module)):
            return  # parameters are meant to; modules are walked by named_modules
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if value.requires_grad or value.grad_fn is not None:
                found.append(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}[{key!r}]")
        elif isinstance(value, (list, tuple, set)):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif type(value).__module__.startswith("d3rlpy_elmur") and hasattr(value, "__dict__"):
            walk(vars(value), where)  # e.g. ELMUR's step path

    for name, submodule in module.named_modules():
        for key, value in vars(submodule).items():
            if key not in ("_parameters", "_modules"):
                walk(value, f"{name or 'policy'}.{key}")
    return found


def _episodes(discrete: bool, n: int = 4) -> ReplayBuffer:
    """Random episodes of 3K + 1 steps for ``_algo``'s vector models."""
    rng = np.random.default_rng(5)
    T = 3 * K + 1

    def episode() -> Episode:
        actions = rng.integers(0, 3, (T, 1)) if discrete else rng.uniform(-2, 1, (T, 2))
        rewards = rng.uniform(0, 0.5, (T, 1)).astype(np.float32)
        observations = rng.standard_normal((T, 3)).astype(np.float32)
        return Episode(observations, actions.astype(np.float32), rewards, True)

    return ReplayBuffer(
        InfiniteBuffer(),
        episodes=[episode() for _ in range(n)],
        action_space=ActionSpace.DISCRETE if discrete else ActionSpace.CONTINUOUS,
        action_size=3 if discrete else 2,
    )


@pytest.mark.parametrize("encoder", ENCODERS)
def test_fit_then_save_policy_acts_like_the_wrapper(encoder: Any, tmp_path: Path) -> None:
    """The deploy flow as a user runs it: fit, save_policy, load_onnx_policy, act."""
    torch.manual_seed(0)
    algo = DiscreteELMURDTConfig(  # type: ignore[arg-type]
        **{**SMALL, "sequence_encoder": encoder}, token_format="rtg_obs_act", batch_size=4
    ).create()
    algo.fit(cue_recall_dataset(10, 8, 11), n_steps=10, n_steps_per_epoch=10, **QUIET)
    algo.save_policy(str(tmp_path / "policy.onnx"))
    algo.save_policy(str(tmp_path / "policy.pt"))
    episode = list(cue_recall_episode(STEPS - 1, 1, np.random.default_rng(6)).observations)
    # both sides with their default target return: the same one
    actions, outputs = _wrapper_run(algo, episode, DEFAULT_TARGET_RETURN)
    got, output = _onnx_run(load_onnx_policy(tmp_path / "policy.onnx"), episode)
    assert got.tolist() == actions
    np.testing.assert_allclose(output, outputs, atol=1e-4)
    got, output = _scripted_run(algo, tmp_path / "policy.pt", episode, DEFAULT_TARGET_RETURN)
    assert got.tolist() == actions
    np.testing.assert_allclose(output, outputs, atol=1e-4)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_an_update_leaves_no_autograd_tensor_on_the_policy(discrete: bool, encoder: Any) -> None:
    algo = _algo(discrete, (3,), sequence_encoder=encoder)
    # a segment window, as fit samples (its update keeps the state after every segment)
    view = algo.segment_view(_episodes(discrete), seed=0)
    algo.update(view.sample_trajectory_batch(4, K))
    algo.update(_episodes(discrete).sample_trajectory_batch(4, SMALL["num_segments"] * K))
    assert algo.impl is not None
    assert _autograd_tensors(algo.impl.policy) == []


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_save_policy_works_after_update_and_after_evaluation(
    discrete: bool, encoder: Any, tmp_path: Path
) -> None:
    algo = _algo(discrete, (3,), sequence_encoder=encoder)
    algo.update(algo.segment_view(_episodes(discrete), seed=0).sample_trajectory_batch(4, K))
    for suffix in (".pt", ".onnx"):  # straight after the update
        algo.save_policy(str(tmp_path / f"updated{suffix}"))
    episode = _episode((3,), np.random.default_rng(7))
    actions, outputs = _wrapper_run(algo, episode)  # evaluation: the step path has run
    algo.save_policy(str(tmp_path / "policy.pt"))
    algo.save_policy(str(tmp_path / "policy.onnx"))
    for got, output in (
        _scripted_run(algo, tmp_path / "policy.pt", episode),
        _onnx_run(load_onnx_policy(tmp_path / "policy.onnx", 1.5), episode),
    ):
        np.testing.assert_allclose(output, outputs, atol=1e-4)
        np.testing.assert_allclose(got, np.stack(actions), atol=1e-4)


def test_every_entry_point_has_the_same_default_target_return(tmp_path: Path) -> None:
    """The library's one default serves the wrapper, evaluation, suites, sweeps and the ONNX
    policy; the command line parses none of its own (None: the library's applies)."""
    algo = _algo(True, (3,))
    algo.save_policy(str(tmp_path / "policy.onnx"))
    assert load_onnx_policy(tmp_path / "policy.onnx").target_return == DEFAULT_TARGET_RETURN
    entry_points = (
        *(load_onnx_policy, ONNXPolicy, ELMURDTBase.as_stateful_wrapper),
        *(evaluate, evaluate_model, evaluate_tmaze, evaluate_popgym, Suite, run_sweep),
    )
    for function in entry_points:
        default = inspect.signature(function).parameters["target_return"].default
        assert default == DEFAULT_TARGET_RETURN, function
    sweep = ["sweep", "cfg", "--space", "s", "--out", "o", "--trials", "1"]
    for argv in (["eval", "m.d3", "--env", "e"], sweep):
        assert build_parser().parse_args(argv).target_return is None, argv[0]


# --------------------------------------------------------------------- the ONNX policy's inputs
OBS = np.array([0.5, -0.5, 1.0], np.float32)
ONE = np.array([0.75])  # a reward: were it taken in, the return-to-go would change
# a call the ONNX policy must refuse, the error, words of its message
BAD_CALLS: dict[str, tuple[Callable[[ONNXPolicy], Any], type[Exception], str]] = {
    "obs-shape": (lambda p: p.predict(np.zeros(4), 0.75), ValueError, "observation has shape"),
    "obs-batched": (lambda p: p.predict(OBS[None], 0.75), ValueError, "observation has shape"),
    "obs-text": (lambda p: p.predict(np.array(["a", "b", "c"]), 0.75), TypeError, "has dtype"),
    "obs-none": (lambda p: p.predict([1.0, None, 2.0], 0.75), TypeError, "has dtype"),
    "obs-nan": (lambda p: p.predict(OBS * np.nan, 0.75), ValueError, "observation contains NaN"),
    "obs-inf": (lambda p: p.predict(OBS * np.inf, 0.75), ValueError, "observation contains NaN"),
    "reward-nan": (lambda p: p.predict(OBS, math.nan), ValueError, "reward is nan"),
    "reward-text": (lambda p: p.predict(OBS, "one"), ValueError, "reward is not a number"),  # type: ignore[arg-type]
    "reward-shape": (lambda p: p.step(OBS[None], np.zeros(2)), ValueError, "reward has shape"),
    "step-unbatched": (lambda p: p.step(OBS, ONE), ValueError, "observation has shape (3,)"),
    "step-rows": (
        lambda p: p.step(np.stack([OBS, OBS]), ONE),
        ValueError,
        "observation has 2 rows",
    ),
    "first-shape": (
        lambda p: p.step(OBS[None], ONE, np.ones(2, bool)),
        ValueError,
        "first has shape",
    ),
    "first-float": (lambda p: p.step(OBS[None], ONE, np.ones(1)), ValueError, "dtype float64"),
}


@pytest.fixture(scope="module")
def onnx_rtg_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A discrete model with return-to-go (and previous action) tokens, exported once."""
    path = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    _algo(True, (3,)).save_policy(str(path))
    return path


@pytest.mark.parametrize("bad", BAD_CALLS)
def test_the_onnx_policy_refuses_bad_input_in_one_line_and_keeps_its_state(
    bad: str, onnx_rtg_policy: Path
) -> None:
    """A rejected call, at an episode's first step and in its middle, leaves the state as it
    was, the return-to-go included (the model reads it): the episode gives the clean one's
    outputs exactly."""
    episode = _episode((3,), np.random.default_rng(8))
    _, clean = _onnx_run(load_onnx_policy(onnx_rtg_policy, 1.5), episode)
    policy = load_onnx_policy(onnx_rtg_policy, 1.5)
    outputs = []
    for t, observation_t in enumerate(episode):
        if t in (0, 3):
            call, error, words = BAD_CALLS[bad]
            with pytest.raises(error) as info:
                call(policy)
            message = str(info.value)
            assert words in message and "\n" not in message, message
        outputs.append(policy.step(observation_t[None], np.array([0.25 * (t > 0)]))[1][0])
    np.testing.assert_array_equal(np.stack(outputs), clean)
