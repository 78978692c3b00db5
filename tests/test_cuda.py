"""The CPU suite's equivalence, training, save/load, export and evaluation checks on cuda:0.

Marked ``cuda`` (``pytest -m cuda``, ``make gpu-check``) and skipped where CUDA is absent. The
model-level checks are the CPU tests themselves, run with cuda:0 as torch's default device (their
helpers build every model and tensor on it); the algorithm-level ones build with
``device=DEVICE`` and reuse the CPU tests' helpers. float32 matmuls are pinned to full precision
(no TF32), so the tolerances mean what they mean on CPU. To run these bodies on a machine without
CUDA, set DEVICE to "cpu:0" and drop the skipif in a scratch copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.logging import NoopAdapterFactory
from d3rlpy.models import VectorEncoderFactory
from d3rlpy.preprocessing import MinMaxActionScaler, MinMaxObservationScaler, MinMaxRewardScaler

import d3rlpy_elmur
from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig, evaluate, load_onnx_policy
from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase
from d3rlpy_elmur.envs import TMazeVectorEnv, balanced_goal_options
from d3rlpy_elmur.io import load_learnable
from d3rlpy_elmur.model_inputs import window_previous_actions
from d3rlpy_elmur.models import ELMURFactory
from tests.algos import test_elmur_dt as algo_tests
from tests.helpers import cue_recall_dataset, cue_recall_episode
from tests.models import test_elmur as model_tests
from tests.test_export import _episodes, _onnx_run, _wrapper_run
from tests.test_io import _greedy_actions, _same, _states

DEVICE = "cuda:0"
DEVICE_TYPE = torch.device(DEVICE).type

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
]

K = algo_tests.K
QUIET = dict(show_progress=False, logger_adapter=NoopAdapterFactory())


@pytest.fixture(autouse=True)
def full_precision() -> Iterator[None]:
    """float32 matmuls in full float32 (no TF32) while a test runs, whatever the process set:
    the CPU suite's tolerances assume it. (No test here runs a convolution.)"""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(saved)


@pytest.fixture
def on_device() -> Iterator[None]:
    """Factory functions without a device (the model tests' helpers) build on DEVICE."""
    with torch.device(DEVICE):
        yield


def on(module: torch.nn.Module) -> bool:
    return all(p.device.type == DEVICE_TYPE for p in module.parameters())


def to_cpu(value: Any) -> Any:
    """A state dict with every tensor on the CPU (to compare across devices)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


# ------------------------------------------------------------ step == segment (the model tests)
def test_the_model_tests_helpers_build_on_the_device(on_device: None) -> None:
    """What makes running the CPU tests under ``on_device`` a test on the device."""
    assert on(model_tests.make())
    assert all(t.device.type == DEVICE_TYPE for t in model_tests.inputs(2, K))


@pytest.mark.parametrize("overrides", [*model_tests.VARIANTS, {"context_size": 1}])
def test_step_inference_equals_segment_forward(
    overrides: dict[str, object], on_device: None
) -> None:
    model_tests.test_step_inference_equals_segment_forward(overrides)


@pytest.mark.parametrize("window", [0, 2, K])
def test_step_rows_at_different_positions_match_their_own_episodes(
    window: int, on_device: None
) -> None:
    model_tests.test_step_rows_at_different_positions_match_their_own_episodes(window)


@pytest.mark.parametrize("overrides", model_tests.VARIANTS)
def test_export_step_equals_segment_forward(overrides: dict[str, object], on_device: None) -> None:
    model_tests.test_export_step_equals_segment_forward(overrides)


def test_gru_step_equals_forward(on_device: None) -> None:
    model_tests.test_gru_step_equals_forward()


@pytest.mark.parametrize("overrides", model_tests.VARIANTS)
def test_segment_forward_on_the_device_equals_the_cpus(overrides: dict[str, object]) -> None:
    """Same weights, same inputs: the device computes what the CPU computes."""
    model = model_tests.make(**overrides)  # on the CPU
    tokens, valid, steps = model_tests.inputs(3, 5 * K + 3)
    with torch.no_grad():
        cpu = model(tokens, valid, steps, model.initial_state(3)).outputs
        model.to(DEVICE)
        moved = [t.to(DEVICE) for t in (tokens, valid, steps)]
        got = model(*moved, model.initial_state(3)).outputs
    assert got.device.type == DEVICE_TYPE
    assert (got.cpu() - cpu).abs().max() <= 1e-4


# -------------------------------------------------------------------- the policy, step by step
def discrete_algo(**overrides: Any) -> d3rlpy_elmur.DiscreteELMURDT:
    torch.manual_seed(0)
    params = {**algo_tests.SMALL, **overrides}
    return DiscreteELMURDTConfig(**params).create(device=DEVICE)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [0, 2])
def test_stateful_wrapper_matches_segment_forward(window: int) -> None:
    algo = discrete_algo(
        token_format="rtg_obs_act",
        sequence_encoder=ELMURFactory(memory_slots=2, attention_window=window),
    )
    algo.create_impl((3,), 3)
    impl = algo.impl
    assert impl is not None and on(impl.policy)
    torch.manual_seed(1)
    algo_tests.perturb_weights(algo)
    logits: list[torch.Tensor] = []
    step = impl.step

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        out, state = step(*args, **kwargs)
        logits.append(out[0].clone())
        return out, state

    impl.step = spy  # type: ignore[method-assign]
    episode = cue_recall_episode(4 * K + 2, 1, np.random.default_rng(0))
    got = algo_tests.step_actions(algo, episode.observations, target_return=0.7)
    T = episode.size()
    obs = torch.from_numpy(episode.observations)[None].to(DEVICE)
    actions = torch.tensor(got, dtype=torch.float32, device=DEVICE)[None, :, None]
    steps = torch.arange(T, device=DEVICE)[None]
    with torch.no_grad():
        out = impl.policy(
            obs,
            torch.full((1, T, 1), 0.7, device=DEVICE),
            window_previous_actions(actions, steps, True),
            torch.ones(1, T, dtype=torch.bool, device=DEVICE),
            steps,
            impl.policy.sequence.initial_state(1),
        ).outputs
    assert logits[0].device.type == DEVICE_TYPE
    assert (torch.stack(logits) - out[0]).abs().max() <= 1e-5
    assert out[0].argmax(-1).tolist() == got


def test_stateful_wrapper_agrees_with_d3rlpy_predict_through_every_scaler() -> None:
    """The wrapper's own scaling (observations, return-to-go, actions back to the env's
    units) equals d3rlpy's predict on the device. d3rlpy's action scaler keeps its tensors on
    the device of its first input, here the wrapper's: a host tensor there breaks predict."""
    algo_tests.assert_wrapper_agrees_with_predict(DEVICE)


# ------------------------------------------------------------------------------------ training
def continuous_dataset() -> d3rlpy.dataset.ReplayBuffer:
    """As the CPU suite's continuous training test: actions tanh of the observations."""
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(10):
        obs = rng.normal(size=(14, 3)).astype(np.float32)
        act = np.tanh(obs[:, :2]).astype(np.float32)
        rewards = np.zeros((14, 1), np.float32)
        episodes.append(d3rlpy.dataset.Episode(obs, act, rewards, False))
    return d3rlpy.dataset.ReplayBuffer(d3rlpy.dataset.InfiniteBuffer(), episodes=episodes)


def trained(discrete: bool, n_steps: int = 12) -> tuple[ELMURDTBase, list[dict[str, float]]]:
    """A short fit on DEVICE (boundary states refreshed every 4 updates) and every update's
    losses; the continuous model learns through observation and action scalers. Checks that
    the stored boundary states live on DEVICE and that the parameters moved."""
    torch.manual_seed(0)
    params: dict[str, Any] = {**algo_tests.SMALL, "memory_refresh_every": 4}
    if discrete:
        algo: ELMURDTBase = DiscreteELMURDTConfig(**params).create(device=DEVICE)
        dataset = cue_recall_dataset(20, 8, 13)
    else:
        params["observation_scaler"] = MinMaxObservationScaler()
        params["action_scaler"] = MinMaxActionScaler()
        algo = ELMURDTConfig(**params).create(device=DEVICE)
        dataset = continuous_dataset()
    losses: list[dict[str, float]] = []
    table_devices: set[str] = set()
    before: list[torch.Tensor] = []
    update = algo.update

    def spy(batch: Any) -> dict[str, float]:
        if not before:  # built by fit, not yet updated
            assert algo.impl is not None
            before.extend(p.detach().clone() for p in algo.impl.policy.parameters())
        out = update(batch)
        losses.append(out)
        if algo._replay is not None:  # the stored boundary states, on the model's device
            table_devices.update(t.device.type for t in algo._replay[1]._table.values())
        return out

    algo.update = spy  # type: ignore[method-assign]
    algo.fit(dataset, n_steps=n_steps, n_steps_per_epoch=n_steps, seed=0, **QUIET)
    del algo.update  # the class's own again
    assert table_devices == {DEVICE_TYPE}
    assert algo.impl is not None
    after = list(algo.impl.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    return algo, losses


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_fit_gives_finite_losses_and_keeps_everything_on_the_device(discrete: bool) -> None:
    algo, losses = trained(discrete)
    assert len(losses) == 12
    assert all(np.isfinite(v) for loss in losses for v in loss.values())
    assert sum("memory_staleness" in loss for loss in losses) == 2  # refreshed at 4 and 8
    impl = algo.impl
    assert impl is not None and on(impl.policy) and impl.device == DEVICE
    assert all(torch.isfinite(p).all() for p in impl.policy.parameters())
    moments = [
        v
        for state in impl.modules.optim.optim.state.values()
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and k != "step"  # Adam keeps its step on the host
    ]
    assert moments and all(v.device.type == DEVICE_TYPE for v in moments)
    # and it acts, through the scalers for the continuous model, past two segment ends
    wrapper = algo.as_stateful_wrapper()
    observations = continuous_dataset().episodes[0].observations
    for obs in observations[: 2 * K + 1]:
        action = wrapper.predict(obs, 0.0)
        assert np.all(np.isfinite(action))
    if not discrete:  # the tanh head's range, in the environment's units
        scaler = algo.config.action_scaler
        assert np.all(action >= scaler.minimum - 1e-5) and np.all(action <= scaler.maximum + 1e-5)


# ----------------------------------------------------------------------------------- save/load
@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_save_then_load_gives_the_same_model_on_the_device_and_on_the_cpu(
    discrete: bool, tmp_path: Path
) -> None:
    algo, _ = trained(discrete, n_steps=4)
    path = tmp_path / "model.d3"
    algo.save(str(path))
    observations = np.random.default_rng(1).normal(size=(2 * K + 1, 3)).astype(np.float32)
    expected = _greedy_actions(algo, observations)
    for loaded in (load_learnable(path, device=DEVICE), d3rlpy.load_learnable(str(path), DEVICE)):
        assert loaded.impl.device == DEVICE and on(loaded.impl.policy)
        assert loaded.config.serialize() == algo.config.serialize()  # scalers hold arrays
        assert _same(_states(loaded), _states(algo))  # weights and optimizer, bit for bit
        assert _greedy_actions(loaded, observations) == expected
    on_cpu = load_learnable(path, device="cpu:0")
    assert all(p.device.type == "cpu" for p in on_cpu.impl.policy.parameters())
    assert _same(_states(on_cpu), to_cpu(_states(algo)))


# -------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_fit_then_save_policy_onnx_acts_like_the_wrapper(discrete: bool, tmp_path: Path) -> None:
    """Trained on the device, exported (traced on the device), run by onnxruntime on the CPU:
    the wrapper's outputs on the device, within 1e-4, through every scaler."""
    torch.manual_seed(0)
    scalers: dict[str, Any] = {
        "observation_scaler": MinMaxObservationScaler(minimum=-np.ones(3), maximum=np.ones(3)),
        "reward_scaler": MinMaxRewardScaler(minimum=0.0, maximum=2.0),
    }
    if not discrete:
        scalers["action_scaler"] = MinMaxActionScaler(minimum=-2 * np.ones(2), maximum=np.ones(2))
    config = DiscreteELMURDTConfig if discrete else ELMURDTConfig
    algo = config(  # type: ignore[arg-type]
        **{**algo_tests.SMALL, "batch_size": 4}, token_format="rtg_obs_act", **scalers
    ).create(device=DEVICE)
    algo.fit(_episodes(discrete), n_steps=10, n_steps_per_epoch=10, seed=0, **QUIET)
    assert algo.impl is not None and on(algo.impl.policy)
    algo.save_policy(str(tmp_path / "policy.onnx"))
    episode = list(np.random.default_rng(6).standard_normal((3 * K + 2, 3)).astype(np.float32))
    actions, outputs = _wrapper_run(algo, episode, 1.5)
    got, output = _onnx_run(load_onnx_policy(tmp_path / "policy.onnx", target_return=1.5), episode)
    np.testing.assert_allclose(output, outputs, atol=1e-4)
    np.testing.assert_allclose(got, np.stack(actions), atol=1e-4)


# ---------------------------------------------------------------------------------- evaluation
def tmaze_algo(kind: str) -> Any:
    """A model for T-Maze observations (4,) and 4 actions on DEVICE, random weights."""
    torch.manual_seed(0)
    if kind == "dt":
        algo = d3rlpy.algos.DiscreteDecisionTransformerConfig(
            context_size=8,
            max_timestep=64,
            num_heads=1,
            num_layers=1,
            encoder_factory=VectorEncoderFactory([16]),
        ).create(device=DEVICE)
        algo.create_impl((4,), 4)
        return algo
    algo = DiscreteELMURDTConfig(**algo_tests.SMALL).create(device=DEVICE)
    algo.create_impl((4,), 4)
    algo_tests.perturb_weights(algo)
    return algo


@pytest.mark.parametrize(
    ("kind", "greedy"), [("elmur", True), ("elmur", False), ("dt", True)], ids=str
)
def test_evaluate_on_tmaze_gives_what_the_cpu_gives(
    kind: str, greedy: bool, tmp_path: Path
) -> None:
    """``evaluate`` on a small T-Maze (4 sub-envs, 8 goal-balanced episodes) on the device,
    and the same model loaded on the CPU: the same episodes (softmax draws are seeded)."""
    algo = tmaze_algo(kind)
    algo.save(str(tmp_path / "model.d3"))
    on_cpu = load_learnable(tmp_path / "model.d3", device="cpu:0")
    results = [
        evaluate(
            model,
            TMazeVectorEnv(4, corridor_length=6),
            n_episodes=8,
            seed=0,
            greedy=greedy,
            reset_options=balanced_goal_options(6),
            max_steps=40,
        )
        for model in (algo, on_cpu)
    ]
    got, cpu = results
    assert got["episodes"] == 8 and got["env_steps"] > 0 and got["success_rate"] is not None
    for key in ("env_steps", "return_mean", "success_rate"):
        assert got[key] == cpu[key], key
