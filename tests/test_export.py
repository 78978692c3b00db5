"""save_policy's stateful export: TorchScript and ONNX steps give the stateful wrapper's outputs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from d3rlpy.preprocessing import MinMaxActionScaler, MinMaxObservationScaler, MinMaxRewardScaler

from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig, load_onnx_policy
from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase
from d3rlpy_elmur.export import PolicyStep
from d3rlpy_elmur.models import GRUFactory
from tests.encoders import FlattenEncoderFactory

K = 4
STEPS = 3 * K + 2  # past three segment ends
SMALL = dict(context_size=K, num_segments=2, embed_dim=16, num_heads=2, memory_slots=2)


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


def _wrapper_run(algo: ELMURDTBase, episode: list[Any]) -> tuple[list[Any], np.ndarray]:
    sampler = RecordingSampler(algo.get_action_type().name == "DISCRETE")
    wrapper = algo.as_stateful_wrapper(1.5, sampler)  # type: ignore[arg-type]
    actions = [wrapper.predict(o, 0.25 * (t > 0)) for t, o in enumerate(episode)]
    return actions, np.stack(sampler.outputs)


CASES = [
    pytest.param(True, (3,), {}, id="discrete-vector"),
    pytest.param(False, (3,), {}, id="continuous-vector"),
    pytest.param(True, ((2,), (3,)), {}, id="discrete-tuple"),
    pytest.param(False, ((2,), (3,)), {"attention_window": 0}, id="continuous-tuple-W0"),
    pytest.param(True, (3,), {"sequence_encoder": GRUFactory()}, id="discrete-gru"),
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
    scripted = torch.jit.load(str(tmp_path / "policy.pt"))
    step = PolicyStep(algo)
    state = [step.initial_state(1)[name] for name in step.state_names]
    rtg = 1.5
    for t, observation in enumerate(episode):
        parts = observation if isinstance(observation, list) else [observation]
        rtg -= 0.25 * (t > 0)
        action, output, *state = scripted(
            *(torch.from_numpy(p)[None] for p in parts),
            torch.tensor([[rtg]]),
            torch.tensor([t == 0]),
            *state,
        )
        np.testing.assert_allclose(output[0].numpy(), outputs[t], atol=1e-4)
        np.testing.assert_allclose(action[0].numpy(), actions[t], atol=1e-4)

    # ONNX through onnxruntime, twice (reset() starts the episode again)
    algo.save_policy(str(tmp_path / "policy.onnx"))
    policy = load_onnx_policy(tmp_path / "policy.onnx", target_return=1.5)
    for _ in range(2):
        policy.reset()
        for t, observation in enumerate(episode):
            got, output = policy.step(
                [p[None] for p in observation]
                if isinstance(observation, list)
                else observation[None],
                np.array([0.25 * (t > 0)]),
            )
            np.testing.assert_allclose(output[0], outputs[t], atol=1e-4)
            np.testing.assert_allclose(got[0], actions[t], atol=1e-4)
    # the state it keeps is the graph's state inputs, one row each
    assert all(
        name.startswith("state.") and value.shape[0] == 1 for name, value in policy.state.items()
    )
    assert ("state.memory" in policy.state) == ("sequence_encoder" not in overrides)


def test_onnx_batch_restarts_one_row_without_touching_the_others(tmp_path: Path) -> None:
    algo = _algo(True, (3,), attention_window=2)
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
    with pytest.raises(ValueError, match="tuple observation of 2 parts"):
        load_onnx_policy(tmp_path / "parts.onnx").predict(np.zeros(5, np.float32), 0.0)
