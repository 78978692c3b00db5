from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.algos import (
    GreedyTransformerActionSampler,
    SoftmaxTransformerActionSampler,
    TransformerInput,
)
from d3rlpy.algos.transformer.inputs import TorchTransformerInput
from d3rlpy.logging import FileAdapterFactory, NoopAdapterFactory
from d3rlpy.preprocessing import MinMaxActionScaler, MinMaxObservationScaler, MinMaxRewardScaler

import d3rlpy_elmur
from d3rlpy_elmur import DiscreteELMURDTConfig, ELMURDTConfig, evaluate
from d3rlpy_elmur.algos import SegmentRecurrentView, plan_epochs
from d3rlpy_elmur.algos.stateful import StepInference
from d3rlpy_elmur.model_inputs import environment_actions, window_previous_actions
from d3rlpy_elmur.models import ELMURFactory, GRUFactory
from tests.helpers import CueRecallEnv, cue_recall_dataset, cue_recall_episode

K, S = 4, 3
SMALL = dict(
    context_size=K,
    num_segments=S,
    embed_dim=16,
    num_heads=2,
    batch_size=8,
    sequence_encoder=ELMURFactory(memory_slots=2),
)
QUIET = dict(show_progress=False, logger_adapter=NoopAdapterFactory())


def small_algo(**overrides: object) -> d3rlpy_elmur.DiscreteELMURDT:
    torch.manual_seed(0)
    return DiscreteELMURDTConfig(**{**SMALL, **overrides}).create()  # type: ignore[arg-type]


def built_algo(**overrides: object) -> d3rlpy_elmur.DiscreteELMURDT:
    algo = small_algo(**overrides)
    algo.create_impl((3,), 3)
    return algo


# ----------------------------------------------------------------------- registration, json
@pytest.mark.parametrize(
    "config",
    [
        DiscreteELMURDTConfig(**SMALL),  # type: ignore[arg-type]
        ELMURDTConfig(**{**SMALL, "sequence_encoder": GRUFactory()}),  # type: ignore[arg-type]
        DiscreteELMURDTConfig(
            **{  # type: ignore[arg-type]
                **SMALL,
                "sequence_encoder": ELMURFactory(
                    memory_slots=2, use_lru=False, norm="pre", ffn="moe", attention_window=1
                ),
            }
        ),
    ],
)
def test_config_round_trips_through_json(config: d3rlpy.base.LearnableConfig) -> None:
    restored = type(config).deserialize(config.serialize())
    assert restored == config
    payload = json.loads(config.serialize())
    assert payload["sequence_encoder"]["type"] in ("elmur", "gru")
    wrapped = d3rlpy.base.LearnableConfigWithShape((3,), 3, config)
    again = d3rlpy.base.LearnableConfigWithShape.deserialize(wrapped.serialize())
    assert again.config == config


def test_registered_with_d3rlpy() -> None:
    for cfg in (ELMURDTConfig(), DiscreteELMURDTConfig()):
        text = d3rlpy.base.LearnableConfigWithShape((4,), 2, cfg).serialize()
        assert type(d3rlpy.base.LearnableConfigWithShape.deserialize(text).config) is type(cfg)
    assert ELMURDTConfig.get_type() == "elmur_dt"
    assert DiscreteELMURDTConfig.get_type() == "discrete_elmur_dt"


@pytest.mark.parametrize(
    "field,value",
    [
        ("context_size", 0),
        ("memory_slots", 0),
        ("lru_blend", -0.1),
        ("lru_blend", 1.01),
        ("num_heads", 3),
        ("token_format", "act_only"),
        ("attention_window", -1),
        ("attention_window", "all"),
        ("memory_refresh_every", 0),
        ("sequence_encoder", "lstm"),
        ("encoder_factory", "vector"),
        ("compile_graph", True),  # inherited from d3rlpy and not honoured: refused
        ("max_timestep", 50),
    ],
)
def test_invalid_config_fails_at_create_naming_the_field(field: str, value: object) -> None:
    if field in ("memory_slots", "lru_blend", "attention_window"):  # ELMUR's own options
        encoder = ELMURFactory(**{field: value})  # type: ignore[arg-type]
        overrides: dict[str, object] = {"sequence_encoder": encoder}
    else:
        overrides = {field: value}
    with pytest.raises(ValueError, match=field):
        DiscreteELMURDTConfig(**{**SMALL, **overrides}).create()  # type: ignore[arg-type]


def test_a_gru_config_is_not_checked_on_attention_fields() -> None:
    """num_heads shapes attention only: a GRU with 3 heads of width 16 is fine, ELMUR not."""
    config = {**SMALL, "num_heads": 3}
    DiscreteELMURDTConfig(**{**config, "sequence_encoder": GRUFactory()}).create()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"invalid ELMUR config: num_heads=3"):
        DiscreteELMURDTConfig(**config).create()  # type: ignore[arg-type]
    # what the GRU does use is checked, in the algorithm's error
    gru = {**config, "sequence_encoder": GRUFactory(), "num_layers": 0, "dropout": 1.0}
    message = r"invalid DiscreteELMURDTConfig: invalid gru encoder config: num_layers=0, dropout"
    with pytest.raises(ValueError, match=message):
        DiscreteELMURDTConfig(**gru).create()  # type: ignore[arg-type]


def test_windows_longer_than_every_episode_fail_at_fit() -> None:
    dataset = cue_recall_dataset(6, 2, 5)  # at most 6 steps: 2 segments of 4
    with pytest.raises(ValueError, match="num_segments"):
        small_algo().fit(dataset, n_steps=1, **QUIET)


@pytest.mark.parametrize(
    "slots, max_delay, encoder, warns",
    [
        (1, 11, "elmur", False),  # episodes of 3 segments: M <= S - 2 = 1
        (2, 11, "elmur", True),  # ... no window blends and reads a second slot
        (2, 40, "elmur", False),  # longer episodes: windows start from written memory
        (2, 11, "gru", False),  # no slots at all
    ],
)
def test_warns_when_no_window_trains_the_blend(
    slots: int, max_delay: int, encoder: str, warns: bool
) -> None:
    dataset = cue_recall_dataset(20, max_delay - 2, max_delay)  # longest: max_delay + 1 steps
    factory = ELMURFactory(memory_slots=slots) if encoder == "elmur" else GRUFactory()
    algo = small_algo(sequence_encoder=factory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        algo.segment_view(dataset)
    messages = [str(w.message) for w in caught if "blended slot" in str(w.message)]
    assert bool(messages) == warns, messages
    if warns:
        assert f"memory_slots={slots}" in messages[0]


# ------------------------------------------------------------------------------ sampler
def test_sampler_windows_are_segment_aligned_and_right_padded() -> None:
    dataset = cue_recall_dataset(40, 1, 30, seed=3)  # episodes shorter than K and > S*K
    view = SegmentRecurrentView(dataset, K, S, seed=0)
    episodes = list(dataset.episodes)
    lengths = [ep.size() for ep in episodes]
    assert min(lengths) < K and max(lengths) > S * K
    batch = view.sample_trajectory_batch(256, K)
    T = (1 + S) * K
    assert batch.observations.shape == (256, T, 3) and batch.masks.shape == (256, T)
    assert batch.boundaries.shape == (256, S + 2)
    masks = batch.masks > 0
    steps = batch.timesteps.astype(np.int64)
    # boundary index -> (episode, segment): the view numbers boundaries episode by episode
    owner = [(e, j) for e, n in enumerate(lengths) for j in range(-(-n // K))]
    for row in range(256):
        real = np.flatnonzero(masks[row])
        # the training window starts on a segment boundary of its episode
        first_train = steps[row, K]
        assert first_train % K == 0
        assert masks[row, K]
        # real steps are contiguous and count up from an aligned step
        assert np.array_equal(real, np.arange(real[0], real[0] + len(real)))
        assert np.array_equal(steps[row, real], steps[row, real[0]] + np.arange(len(real)))
        assert steps[row, real[0]] % K == 0
        # the context is the one segment before the window, or padding at t = 0
        assert steps[row, real[0]] == max(first_train - K, 0)
        assert masks[row, :K].any() == (first_train > 0)
        assert (batch.observations[row, ~masks[row]] == 0).all()
        # the episode's first step carries the cue; no step after the end is real
        if steps[row, real[0]] == 0:
            assert abs(batch.observations[row, real[0], 0]) == 1.0
        if batch.terminals[row].any():
            assert batch.terminals[row, real[-1], 0] == 1.0
        # the real previous action of every step, also at the window's first step
        has = batch.has_previous[row]
        assert np.array_equal(has, masks[row] & (steps[row] > 0))
        shifted = batch.actions[row, real[:-1]]
        assert np.array_equal(batch.previous_actions[row, real[1:]], shifted)
        # boundaries name the segment starts the row crosses in its own episode
        first_segment = first_train // K - 1
        for column, index in enumerate(batch.boundaries[row]):
            j = first_segment + column
            if index < 0:
                continue
            episode, segment = owner[index]
            assert segment == j >= 1
            assert lengths[episode] > j * K
            if column * K < T and masks[row, column * K]:  # the segment's first step
                obs = episodes[episode].observations[j * K]
                assert np.array_equal(batch.observations[row, column * K], obs)
    # windows start mid-episode for long episodes, and then have a real previous action
    late = steps[:, K] >= K
    assert late.any() and batch.has_previous[late, K].all()


def numbered_dataset(lengths: list[int], terminated: list[bool]) -> d3rlpy.dataset.ReplayBuffer:
    """Episodes whose step i of episode e has observation, action and reward 100 e + i + 1."""
    episodes = []
    for e, (n, done) in enumerate(zip(lengths, terminated, strict=True)):
        values = (100 * e + np.arange(n) + 1).astype(np.float32)[:, None]
        episodes.append(d3rlpy.dataset.Episode(values.repeat(3, 1), values, values, done))
    return d3rlpy.dataset.ReplayBuffer(d3rlpy.dataset.InfiniteBuffer(), episodes=episodes)


def test_whole_episode_windows_hold_exactly_the_episode_and_zeros_after_it() -> None:
    view = SegmentRecurrentView(numbered_dataset([5, 9], [True, False]), K, S, seed=0)
    (batch,) = view.episode_batches(rows=2)  # both from t = 0, 3 segments of K = 4
    T = 3 * K
    assert batch.length == T and batch.previous_actions.dtype == np.float32
    for row, (e, n, done) in enumerate([(0, 5, True), (1, 9, False)]):
        real = np.arange(T) < n
        values = np.where(real, 100 * e + np.arange(T) + 1, 0).astype(np.float32)
        assert np.array_equal(batch.masks[row], real.astype(np.float32))
        assert np.array_equal(batch.timesteps[row], np.where(real, np.arange(T), 0))
        for name in ("actions", "rewards"):
            assert np.array_equal(getattr(batch, name)[row, :, 0], values), name
        assert np.array_equal(batch.observations[row], values[:, None].repeat(3, 1))
        # returns-to-go from each step to the episode's end
        rtg = np.where(real, np.cumsum(values[::-1])[::-1], 0)  # padding adds nothing
        assert np.allclose(batch.returns_to_go[row, :, 0], rtg)
        assert np.array_equal(batch.terminals[row, :, 0], (np.arange(T) == n - 1) & done)
        previous = np.where(real & (np.arange(T) >= 1), np.roll(values, 1), 0)
        assert np.array_equal(batch.previous_actions[row, :, 0], previous)
        assert np.array_equal(batch.has_previous[row], real & (np.arange(T) >= 1))
    # boundaries before segments 1.. of each episode; none at t = 0 or past the end
    assert batch.boundaries.tolist() == [[-1, 1, -1, -1], [-1, 3, 4, -1]]


@pytest.mark.parametrize("mixed", [False, True])
def test_view_is_a_replay_buffer_of_exactly_the_episodes_it_samples(mixed: bool) -> None:
    dataset: d3rlpy.dataset.ReplayBufferBase = numbered_dataset([5, 9], [True, False])
    if mixed:  # a mixed buffer's `buffer` is its primary part only
        dataset = d3rlpy.dataset.MixedReplayBuffer(
            numbered_dataset([7], [True]), dataset, secondary_mix_ratio=0.5
        )
    np.random.seed(3)
    view = SegmentRecurrentView(dataset, K, S, seed=0)
    after = np.random.random()
    np.random.seed(3)
    assert np.random.random() == after  # building it leaves numpy's global generator alone
    # d3rlpy reads the dataset through the view (build_with_dataset, scalers, logging)
    assert isinstance(view, d3rlpy.dataset.ReplayBuffer)
    assert [id(e) for e in view.episodes] == [id(e) for e in dataset.episodes]  # not copied
    assert view.dataset_info == dataset.dataset_info
    assert view.transition_picker is dataset.transition_picker
    assert view.trajectory_slicer is dataset.trajectory_slicer
    assert view.transition_count == dataset.transition_count
    # d3rlpy's slicer is not what it samples: every window has (1 + S) * K steps
    assert view.sample_trajectory_batch(8, K).observations.shape == (8, (1 + S) * K, 3)


def test_num_threads_holds_while_fit_runs_and_is_restored_after() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    algo = DiscreteELMURDTConfig(
        context_size=K, num_segments=S, embed_dim=16, batch_size=4, num_threads=before + 1
    ).create()
    algo.build_with_dataset(numbered_dataset([12], [True]))
    assert torch.get_num_threads() == before  # building the model sets nothing process-wide
    algo.fit(
        numbered_dataset([12], [True]),
        n_steps=2,
        n_steps_per_epoch=2,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
        callback=lambda *_: seen.append(torch.get_num_threads()),
    )
    assert seen == [before + 1] * 2
    assert torch.get_num_threads() == before


def test_sampler_starts_windows_at_every_segment_with_a_full_window_and_is_seeded() -> None:
    view = SegmentRecurrentView(numbered_dataset([20], [True]), K, S, seed=5)  # 5 segments
    batch = view.sample_trajectory_batch(300, K)
    assert set(batch.timesteps[:, K].astype(int)) == {0, K, 2 * K}  # first in 0..5 - S
    again = SegmentRecurrentView(numbered_dataset([20], [True]), K, S, seed=5)
    assert np.array_equal(again.sample_trajectory_batch(300, K).timesteps, batch.timesteps)


def test_view_refuses_an_empty_dataset_or_an_empty_episode() -> None:
    class Empty:
        episodes: list[object] = []

    with pytest.raises(ValueError, match=r"^the dataset holds no episodes$"):
        SegmentRecurrentView(Empty(), K, S)  # type: ignore[arg-type]

    class Steps:
        def __init__(self, size: int) -> None:
            self.size = lambda: size

    class OneEmpty:
        episodes = [Steps(3), Steps(0), Steps(2)]

    with pytest.raises(ValueError, match=r"^episode 1 of the dataset has no steps$"):
        SegmentRecurrentView(OneEmpty(), K, S)  # type: ignore[arg-type]


def test_sampler_picks_episodes_in_proportion_to_length() -> None:
    rng = np.random.default_rng(0)
    episodes = [cue_recall_episode(3, 1, rng), cue_recall_episode(29, -1, rng)]
    dataset = d3rlpy.dataset.ReplayBuffer(
        d3rlpy.dataset.InfiniteBuffer(),
        episodes=episodes,
        action_space=d3rlpy.constants.ActionSpace.DISCRETE,
        action_size=3,
    )
    batch = SegmentRecurrentView(dataset, K, 1, seed=1).sample_trajectory_batch(4000, K)
    # episode 2 (30 steps) vs episode 1 (4 steps): its cue is -1, its windows may start late
    from_long = np.isin(batch.timesteps[:, K], np.arange(4, 30)) | (
        batch.observations[:, K, 0] == -1
    )
    assert abs(from_long.mean() - 30 / 34) < 0.03


# --------------------------------------------------------------------------------- loss
def test_padding_never_counts_in_the_loss() -> None:
    algo = built_algo()
    view = algo.segment_view(cue_recall_dataset(20, 1, 13), seed=0)
    batch = view.sample_trajectory_batch(8, K)
    impl = algo.impl
    assert impl is not None and (batch.masks == 0).any()
    torch_batch = d3rlpy.torch_utility.TorchTrajectoryMiniBatch.from_batch(batch, "cpu:0")
    with torch.no_grad():
        base = impl.compute_loss(torch_batch)["loss"]
        pad = torch_batch.masks == 0
        torch_batch.actions[pad] = 2.0  # change every padded target
        changed = impl.compute_loss(torch_batch)["loss"]
        torch_batch.actions[~pad] = (torch_batch.actions[~pad] + 1) % 3  # a real target
        real_changed = impl.compute_loss(torch_batch)["loss"]
    assert torch.equal(base, changed)
    assert abs(base - real_changed) > 1e-3


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_loss_is_label_smoothed_cross_entropy_over_real_steps(smoothing: float) -> None:
    algo = built_algo(label_smoothing=smoothing)
    impl = algo.impl
    assert impl is not None
    view = algo.segment_view(cue_recall_dataset(20, 1, 13), seed=0)
    batch = d3rlpy.torch_utility.TorchTrajectoryMiniBatch.from_batch(
        view.sample_trajectory_batch(8, K), "cpu:0"
    )
    logits: list[torch.Tensor] = []  # the head's output; its last call is the window's
    hook = impl.policy.head.register_forward_hook(lambda m, i, o: logits.append(o))
    with torch.no_grad():
        loss = impl.compute_loss(batch)["loss"]
    hook.remove()
    log_p = logits[-1].log_softmax(-1)  # [B, S * K, A]
    target = batch.actions[:, K:, 0].long()
    mask = batch.masks[:, K:] > 0
    # (1 - e) * -log p(target) + e * mean_a -log p(a), averaged over the real steps
    nll = -log_p.gather(-1, target[..., None])[..., 0]
    uniform = -log_p.mean(-1)
    expected = ((1 - smoothing) * nll + smoothing * uniform)[mask].mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_previous_actions_mark_episode_starts_and_window_starts_as_none() -> None:
    actions = torch.tensor([[[1.0], [2.0], [0.0]]])
    # discrete "none" is -1: at the window's first step (unknown) and where t == 0
    mid_episode = window_previous_actions(actions, torch.tensor([[50, 51, 52]]), True)
    assert mid_episode[0, :, 0].tolist() == [-1.0, 1.0, 2.0]
    new_episode = window_previous_actions(actions, torch.tensor([[7, 0, 1]]), True)
    assert new_episode[0, :, 0].tolist() == [-1.0, -1.0, 2.0]
    # continuous "none" is zeros
    cont = torch.tensor([[[0.5, -0.5], [0.25, 1.0], [1.0, 1.0]]])
    got = window_previous_actions(cont, torch.tensor([[3, 0, 1]]), False)[0]
    assert got.tolist() == [[0.0, 0.0], [0.0, 0.0], [0.25, 1.0]]


def continuous_batch(rows: int, real: list[int]) -> d3rlpy.torch_utility.TorchTrajectoryMiniBatch:
    """S * K steps per row (no context segment), the first real[i] steps of row i real."""
    torch.manual_seed(3)
    T = S * K
    masks = (torch.arange(T)[None] < torch.tensor(real)[:, None]).float()
    return d3rlpy.torch_utility.TorchTrajectoryMiniBatch(
        observations=torch.randn(rows, T, 3),
        actions=torch.rand(rows, T, 2) * 2 - 1,
        rewards=torch.zeros(rows, T, 1),
        returns_to_go=torch.randn(rows, T, 1),
        terminals=torch.zeros(rows, T, 1),
        timesteps=torch.arange(T)[None].repeat(rows, 1).float(),
        masks=masks,
        device="cpu:0",
        numpy_batch=None,
    )


@pytest.mark.parametrize("real", [[S * K, 5], [1]])
def test_continuous_loss_is_the_squared_error_over_real_steps_plus_the_moe_loss(
    real: list[int],
) -> None:
    torch.manual_seed(0)
    algo = ELMURDTConfig(  # type: ignore[arg-type]
        **{**SMALL, "sequence_encoder": ELMURFactory(memory_slots=2, ffn="moe")},
        token_format="rtg_obs_act",
    ).create()
    algo.create_impl((3,), 2)
    impl = algo.impl
    assert impl is not None
    batch = continuous_batch(len(real), real)
    valid, steps = batch.masks > 0, batch.timesteps.long()
    with torch.no_grad():
        losses = impl.compute_loss(batch)
        out, _, _, aux = impl.policy(
            batch.observations,
            batch.returns_to_go,
            window_previous_actions(batch.actions, steps, False),
            valid,
            steps,
            impl.policy.sequence.initial_state(len(real)),
        )
    assert set(losses) == {"action_loss", "loss"} and aux is not None and float(aux) > 0
    expected = ((out - batch.actions) ** 2).sum(-1)[valid].mean()
    assert torch.allclose(losses["action_loss"], expected, atol=1e-6)
    assert torch.allclose(losses["loss"], expected + aux, atol=1e-6)


def test_stateless_predict_runs_the_given_window_from_t0() -> None:
    algo = built_algo(token_format="rtg_obs_act")
    impl = algo.impl
    assert impl is not None
    torch.manual_seed(4)
    n, pad = 6, 3  # d3rlpy left-pads a short history
    obs, rtg = torch.randn(1, n, 3), torch.randn(1, n, 1)
    actions = torch.tensor([[[2.0], [0.0], [1.0], [1.0], [2.0], [0.0]]])

    def padded(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros(1, pad, *x.shape[2:]), x], 1)

    inpt = TorchTransformerInput(
        observations=padded(obs),
        actions=padded(actions),
        rewards=padded(torch.zeros(1, n, 1)),
        returns_to_go=padded(rtg),
        timesteps=torch.cat([torch.zeros(1, pad), torch.arange(n)[None] + 40.0], 1).long(),
        masks=torch.cat([torch.zeros(1, pad), torch.ones(1, n)], 1),
        length=n + pad,
    )
    prev = torch.tensor([[[-1.0], [2.0], [0.0], [1.0], [1.0], [2.0]]])
    with torch.no_grad():
        got = impl.inner_predict(inpt)
        ref = impl.policy(
            obs,
            rtg,
            prev,
            torch.ones(1, n, dtype=torch.bool),
            torch.arange(n)[None],
            impl.policy.sequence.initial_state(1),
        ).outputs
    assert got.shape == ref[0, -1].shape and torch.allclose(got, ref[0, -1], atol=1e-6)
    assert not torch.allclose(got, ref[0, -2], atol=1e-3)


# ------------------------------------------------------------------ fit, steps, predict
@pytest.mark.parametrize("n_steps,per_epoch", [(7, 10000), (12, 5)])
def test_fit_trains_exactly_n_steps(n_steps: int, per_epoch: int) -> None:
    algo = small_algo()
    seen: list[int] = []
    algo.fit(
        cue_recall_dataset(20, 8, 13),
        n_steps=n_steps,
        n_steps_per_epoch=per_epoch,
        callback=lambda a, epoch, step: seen.append(step),
        **QUIET,
    )
    assert algo.grad_step == n_steps and seen[-1] == n_steps
    assert plan_epochs(12, 5) == 4
    with pytest.raises(ValueError, match="n_steps_per_epoch"):
        plan_epochs(101, 100)


def test_fit_refreshes_the_boundary_states_on_schedule_and_logs_their_staleness(
    tmp_path: Path,
) -> None:
    algo = small_algo(memory_refresh_every=3)
    refreshed: list[int] = []
    original = algo.refresh_boundary_states

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        refreshed.append(algo.grad_step)
        return original(*args, **kwargs)

    algo.refresh_boundary_states = spy  # type: ignore[method-assign]
    algo.fit(
        cue_recall_dataset(20, 20, 40),
        n_steps=7,
        n_steps_per_epoch=7,
        show_progress=False,
        logger_adapter=FileAdapterFactory(root_dir=str(tmp_path)),
        experiment_name="run",
        with_timestamp=False,
    )
    assert refreshed == [0, 3, 6]
    rows = (tmp_path / "run" / "memory_staleness.csv").read_text().splitlines()
    assert len(rows) == 1 and float(rows[0].split(",")[2]) > 0.0


def step_actions(
    algo: d3rlpy_elmur.DiscreteELMURDT, observations: np.ndarray, target_return: float = 1.0
) -> list[int]:
    wrapper = algo.as_stateful_wrapper(target_return)
    wrapper.reset()
    return [int(wrapper.predict(obs, 0.0)) for obs in observations]


def perturb_weights(algo: d3rlpy_elmur.algos.ELMURDTBase) -> None:
    """Random weights everywhere (the time biases start at zero), from torch's generator."""
    with torch.no_grad():
        for param in algo.impl.policy.parameters():  # type: ignore[union-attr]
            param.add_(torch.randn_like(param) * 0.3)


@pytest.mark.parametrize("window", [0, 2])
def test_stateful_wrapper_matches_segment_forward(window: int) -> None:
    algo = built_algo(
        token_format="rtg_obs_act",
        sequence_encoder=ELMURFactory(memory_slots=2, attention_window=window),
    )
    impl = algo.impl
    assert impl is not None
    torch.manual_seed(1)
    perturb_weights(algo)
    # the logits of every wrapper step
    logits: list[torch.Tensor] = []
    step = impl.step

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        out, state = step(*args, **kwargs)
        logits.append(out[0].clone())
        return out, state

    impl.step = spy  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    episode = cue_recall_episode(4 * K + 2, 1, rng)
    got = step_actions(algo, episode.observations, target_return=0.7)
    # the segment path over the same episode, feeding back the wrapper's own actions (no
    # reward is fed: the return-to-go stays at its target)
    T = episode.size()
    obs = torch.from_numpy(episode.observations)[None]
    actions = torch.tensor(got, dtype=torch.float32)[None, :, None]
    steps = torch.arange(T)[None]
    prev = window_previous_actions(actions, steps, True)
    with torch.no_grad():
        out = impl.policy(
            obs,
            torch.full((1, T, 1), 0.7),
            prev,
            torch.ones(1, T, dtype=torch.bool),
            steps,
            impl.policy.sequence.initial_state(1),
        ).outputs
    assert (torch.stack(logits) - out[0]).abs().max() <= 1e-5
    assert out[0].argmax(-1).tolist() == got


def test_stateful_wrapper_agrees_with_d3rlpy_predict_through_every_scaler() -> None:
    """Over one window from t = 0, the wrapper's actions (its own scaling of observations,
    return-to-go and previous actions, and back to the environment's units) are those of
    d3rlpy's predict, which scales with d3rlpy's code."""
    assert_wrapper_agrees_with_predict("cpu:0")


def assert_wrapper_agrees_with_predict(device: str) -> None:
    """The body of the test above on ``device`` (``tests/test_cuda.py`` runs it on CUDA)."""
    torch.manual_seed(0)
    algo = ELMURDTConfig(
        **{**SMALL, "sequence_encoder": ELMURFactory(memory_slots=1)},  # type: ignore[arg-type]
        token_format="rtg_obs_act",
        observation_scaler=MinMaxObservationScaler(minimum=-np.ones(3), maximum=3 * np.ones(3)),
        action_scaler=MinMaxActionScaler(minimum=-2 * np.ones(2), maximum=np.ones(2)),
        reward_scaler=MinMaxRewardScaler(minimum=0.0, maximum=4.0),
    ).create(device=device)
    algo.create_impl((3,), 2)
    perturb_weights(algo)
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(K, 3)).astype(np.float32)
    rewards = rng.random(K).astype(np.float32)
    wrapper = algo.as_stateful_wrapper(target_return=5.0)
    actions = np.array(
        [
            wrapper.predict(o, float(r))
            for o, r in zip(observations, [0.0, *rewards[:-1]], strict=True)
        ]
    )
    returns_to_go = 5.0 - np.concatenate([[0.0], np.cumsum(rewards[:-1])])
    window = TransformerInput(
        observations=observations,
        actions=actions,
        rewards=rewards[:, None],
        returns_to_go=returns_to_go[:, None].astype(np.float32),
        timesteps=np.arange(K),
    )
    assert np.abs(actions).min() > 1e-3  # real actions, not a constant
    np.testing.assert_allclose(algo.predict(window), actions[-1], atol=1e-5)


def constant_policy(bias: list[float]) -> d3rlpy_elmur.DiscreteELMURDT:
    """An algorithm whose logits are ``bias`` at every step, whatever it sees."""
    algo = built_algo()
    head = algo.impl.policy.head  # type: ignore[union-attr]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias))
    return algo


def test_greedy_takes_the_argmax_and_softmax_samples_the_softmax() -> None:
    bias = [0.0, 2.0, -2.0]
    algo = constant_policy(bias)
    obs = np.zeros(3, np.float32)
    greedy = algo.as_stateful_wrapper(action_sampler=GreedyTransformerActionSampler())
    assert {int(greedy.predict(obs, 0.0)) for _ in range(2 * K + 1)} == {1}
    assert greedy.step_count == 2 * K + 1
    greedy.reset()
    assert greedy.step_count == 0
    np.random.seed(0)  # d3rlpy's softmax sampler draws from numpy's global generator
    sampler = algo.as_stateful_wrapper(action_sampler=SoftmaxTransformerActionSampler())
    counts = np.zeros(3)
    for _ in range(30):
        sampler.reset()
        for _ in range(2 * K):
            counts[int(sampler.predict(obs, 0.0))] += 1
    expected = torch.tensor(bias).softmax(0).numpy()  # 0.117, 0.867, 0.016
    assert np.abs(counts / counts.sum() - expected).max() < 0.05
    assert counts[0] > 0


def test_stateful_wrapper_rejects_bad_observations() -> None:
    wrapper = built_algo().as_stateful_wrapper()
    with pytest.raises(ValueError, match="shape"):
        wrapper.predict(np.zeros(4, np.float32), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        wrapper.predict(np.array([np.nan, 0, 0], np.float32), 0.0)
    with pytest.raises(TypeError, match="dtype"):
        wrapper.predict(np.array(["a", "b", "c"]), 0.0)


def test_step_inference_needs_a_built_algorithm() -> None:
    message = r"^the algorithm is not built: fit it or call build_with_env first$"
    with pytest.raises(ValueError, match=message):
        StepInference(small_algo(), 0.0)


def test_environment_actions_undo_the_action_scaler() -> None:
    scaler = MinMaxActionScaler(minimum=np.array([-2.0, 0.0]), maximum=np.array([2.0, 10.0]))
    scaled = torch.tensor([[-1.0, 1.0], [0.0, 0.0]])
    want = torch.tensor([[-2.0, 10.0], [0.0, 5.0]])
    assert torch.allclose(environment_actions(scaled, scaler).float(), want)
    assert environment_actions(scaled, None) is scaled


def test_continuous_variant_trains_and_acts() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(10):
        obs = rng.normal(size=(14, 3)).astype(np.float32)
        act = np.tanh(obs[:, :2]).astype(np.float32)
        episodes.append(d3rlpy.dataset.Episode(obs, act, np.zeros((14, 1), np.float32), False))
    dataset = d3rlpy.dataset.ReplayBuffer(d3rlpy.dataset.InfiniteBuffer(), episodes=episodes)
    algo = ELMURDTConfig(**SMALL).create()  # type: ignore[arg-type]
    algo.fit(dataset, n_steps=3, **QUIET)
    action = algo.as_stateful_wrapper().predict(episodes[0].observations[0], 0.0)
    assert isinstance(action, np.ndarray) and action.shape == (2,)
    assert np.all(np.abs(action) <= 1.0)


# ------------------------------------------------------------------------- persistence
LOAD_SCRIPT = """
import sys, json, numpy as np, d3rlpy
import d3rlpy_elmur
algo = d3rlpy.load_learnable(sys.argv[1])
obs = np.load(sys.argv[2])
w = algo.as_stateful_wrapper()
print(json.dumps([int(w.predict(o, 0.0)) for o in obs]))
"""


def test_save_then_load_in_a_fresh_process_gives_identical_actions(tmp_path: Path) -> None:
    algo = small_algo()
    algo.fit(
        cue_recall_dataset(20, 8, 13),
        n_steps=20,
        experiment_name="run",
        with_timestamp=False,
        logger_adapter=FileAdapterFactory(root_dir=str(tmp_path / "logs")),
        show_progress=False,
    )
    rng = np.random.default_rng(5)
    observations = cue_recall_episode(3 * K - 1, 1, rng).observations
    np.save(tmp_path / "obs.npy", observations)
    algo.save(str(tmp_path / "model.d3"))
    expected = step_actions(algo, observations)
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model.d3"), str(tmp_path / "obs.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
    # from_json on the FileAdapter log folder, then the weights it saved
    log_dir = tmp_path / "logs" / "run"
    restored = d3rlpy_elmur.DiscreteELMURDT.from_json(str(log_dir / "params.json"))
    assert restored.config == algo.config
    checkpoint = d3rlpy.load_learnable(str(log_dir / "model_20.d3"))
    assert step_actions(checkpoint, observations) == expected


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_runs_batched_episodes_and_reports_success() -> None:
    algo = constant_policy([0.0, 1.0, -1.0])  # always "the cue was +1"
    import gymnasium as gym

    def cue_positive(seed: int) -> bool:  # what that policy scores on the episode of `seed`
        env = CueRecallEnv()
        obs, _ = env.reset(seed=seed)
        return bool(obs[0] > 0)

    venv = gym.vector.SyncVectorEnv([lambda: CueRecallEnv(delay=5) for _ in range(4)])
    result = evaluate(algo, venv, n_episodes=10, seed=0)
    assert result["episodes"] == 10
    assert result["env_steps"] == 10 * 6
    expected = np.mean([cue_positive(i) for i in range(10)])
    assert 0.0 < expected < 1.0 and result["success_rate"] == pytest.approx(expected)
    assert result["return_mean"] == pytest.approx(result["success_rate"])
    single = evaluate(algo, CueRecallEnv(delay=3), n_episodes=3, seed=1)
    assert single["episodes"] == 3 and single["env_steps"] == 12
    assert single["success_rate"] == pytest.approx(np.mean([cue_positive(1 + i) for i in range(3)]))


def test_every_parameter_gets_gradient() -> None:
    algo = built_algo()
    impl = algo.impl
    assert impl is not None
    view = algo.segment_view(cue_recall_dataset(30, 1, 30, seed=2), seed=0)
    batch = view.sample_trajectory_batch(32, K)
    torch_batch = d3rlpy.torch_utility.TorchTrajectoryMiniBatch.from_batch(batch, "cpu:0")
    impl.compute_loss(torch_batch)["loss"].backward()
    # the smallest real gradient measured is 6e-5 (the write's time bias); a gradient that is
    # zero in exact arithmetic comes out of rounding at 1e-8 or less
    silent = [
        n for n, p in impl.policy.named_parameters() if p.grad is None or p.grad.abs().max() <= 1e-6
    ]
    assert silent == []  # memory_init included: windows at t = 0 start from it


def test_without_previous_actions_the_loss_shifts_them_inside_the_window() -> None:
    """d3rlpy's own update path gives no previous actions: shifted inside the window they are
    the sampler's wherever a window starts its episode (episodes of at most S * K steps)."""
    algo = built_algo(token_format="rtg_obs_act", sequence_encoder=ELMURFactory(memory_slots=1))
    impl = algo.impl
    assert impl is not None
    view = algo.segment_view(cue_recall_dataset(10, 1, 8, seed=3), seed=0)
    batch = view.sample_trajectory_batch(16, K)
    assert (batch.boundaries[:, 0] == -1).all()
    torch_batch = algo._to_torch(batch)
    with torch.no_grad():
        shifted = impl.compute_loss(torch_batch)["loss"]
        sampled = impl.compute_loss(torch_batch, algo._sampled_previous_actions(batch))["loss"]
    assert torch.allclose(shifted, sampled)


@pytest.mark.parametrize("window", [0, 2])
def test_windows_start_from_the_memory_of_the_whole_episode(window: int) -> None:
    from d3rlpy_elmur.algos.replay_states import BoundaryStates

    algo = built_algo(
        sequence_encoder=ELMURFactory(memory_slots=2, attention_window=window),
        token_format="rtg_obs_act",
    )
    impl = algo.impl
    assert impl is not None
    view = algo.segment_view(cue_recall_dataset(30, 1, 30, seed=2), seed=0)
    states = BoundaryStates(view.num_boundaries)
    algo.refresh_boundary_states(view, states, rows=7)
    batch = view.sample_trajectory_batch(32, K)
    boundaries = torch.as_tensor(batch.boundaries)
    episodes = list(view.episodes)
    owner = [(e, j) for e, ep in enumerate(episodes) for j in range(-(-ep.size() // K))]
    rows = [r for r in range(32) if batch.boundaries[r, 0] >= 0][:4]
    assert rows  # some windows start two or more segments into their episode
    for row in rows:
        episode, j = owner[int(batch.boundaries[row, 0])]
        ep = episodes[episode]
        n = j * K  # the context segment starts at step j * K: run the episode up to there
        actions = torch.as_tensor(ep.actions[:n], dtype=torch.float32).reshape(1, n, 1)
        previous = torch.cat([torch.full((1, 1, 1), -1.0), actions[:, :-1]], 1)
        rtg = np.cumsum(ep.rewards[::-1].reshape(-1))[::-1][:n].copy()
        with torch.no_grad():
            real = impl.policy(
                torch.as_tensor(ep.observations[:n])[None],
                torch.as_tensor(rtg, dtype=torch.float32).reshape(1, n, 1),
                previous,
                torch.ones(1, n, dtype=torch.bool),
                torch.arange(n)[None],
                impl.policy.sequence.initial_state(1),
            ).state
        stored = states.read(boundaries[row : row + 1, 0], impl.policy.sequence.initial_state(1))
        assert set(stored) == set(real)
        for key in real:
            assert torch.allclose(stored[key].float(), real[key].float(), atol=1e-5), key
    # an update writes back the states its windows computed, at their own boundaries:
    # computed with the parameters of before the step, they equal the refreshed ones
    before = {key: value.clone() for key, value in states._table.items()}
    written = boundaries[:, 1:][boundaries[:, 1:] >= 0].unique()
    # spoil every entry the update must write and no window starts from: it must restore them
    spoilt = written[~torch.isin(written, boundaries[:, 0])]
    assert len(spoilt) > 0
    for value in states._table.values():
        value[spoilt] = ~value[spoilt] if value.dtype == torch.bool else value[spoilt] + 1
    algo._replay = (view, states)
    algo.set_grad_step(1)  # not a refresh step
    try:
        metrics = algo.update(batch)
    finally:
        algo._replay = None
    assert "memory_staleness" not in metrics
    for key, value in before.items():
        assert torch.allclose(
            states._table[key][written].float(), value[written].float(), atol=1e-4
        )
    # the update moved the parameters: recomputed states drift from the stored ones, a little
    fresh = BoundaryStates(view.num_boundaries)
    algo.refresh_boundary_states(view, fresh)
    assert fresh.staleness(fresh) == 0.0
    assert 0.0 < states.staleness(fresh) < 0.5


def plain_batch(T: int) -> d3rlpy.dataset.TrajectoryMiniBatch:
    """A d3rlpy batch of T steps from t = 0 (cue-recall episodes), 8 rows."""
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(8):
        episode = cue_recall_episode(T - 1, 1, rng)  # T steps
        rows.append(
            d3rlpy.dataset.PartialTrajectory(
                observations=episode.observations,
                actions=episode.actions,
                rewards=episode.rewards,
                returns_to_go=episode.rewards,
                terminals=np.zeros((T, 1), dtype=np.float32),
                timesteps=np.arange(T),
                masks=np.ones(T, dtype=np.float32),
                length=T,
            )
        )
    return d3rlpy.dataset.TrajectoryMiniBatch.from_partial_trajectories(rows)


@pytest.mark.parametrize("segments", [1, S, 1 + S, 2 + S])
def test_update_takes_whole_segments_with_a_context_segment_only_at_fits_length(
    segments: int,
) -> None:
    """n * K steps train n segments from the initial memory, except (1 + S) * K, fit's window,
    whose first segment is a context segment: its targets do not count."""
    algo = built_algo()
    impl = algo.impl
    assert impl is not None
    batch = plain_batch(segments * K)
    has_context = segments == 1 + S
    assert impl.context_steps(segments * K) == (K if has_context else 0)
    torch_batch = d3rlpy.torch_utility.TorchTrajectoryMiniBatch.from_batch(batch, "cpu:0")
    with torch.no_grad():
        base = impl.compute_loss(torch_batch)["loss"]
        torch_batch.actions[:, :K] = (torch_batch.actions[:, :K] + 1) % 3  # first segment
        first_changed = impl.compute_loss(torch_batch)["loss"]
        torch_batch.actions[:, -K:] = (torch_batch.actions[:, -K:] + 1) % 3  # last segment
        last_changed = impl.compute_loss(torch_batch)["loss"]
    if has_context:
        assert torch.equal(first_changed, base)
    else:
        assert abs(float(first_changed - base)) > 1e-2
    if segments > 1:
        assert abs(float(last_changed - first_changed)) > 1e-2
    # and the update itself
    loss = algo.update(batch)
    assert algo.grad_step == 1 and np.isfinite(loss["loss"]) and loss["loss"] > 0


def test_update_refuses_a_batch_that_is_not_whole_segments_naming_the_lengths() -> None:
    algo = built_algo()
    impl = algo.impl
    assert impl is not None
    lengths = f"{K}, {2 * K}, {3 * K}, "  # what the message offers
    with pytest.raises(ValueError, match=rf"{S * K - 1} steps.*{lengths}.*= {(1 + S) * K}"):
        algo.update(plain_batch(S * K - 1))
    assert algo.grad_step == 0
    for steps in (0, K + 1):
        with pytest.raises(ValueError, match=lengths):
            impl.context_steps(steps)
    # a segment window has a context segment and at least one more
    with pytest.raises(ValueError, match=f"{2 * K}, {3 * K}, {4 * K}"):
        impl.context_steps(K, context=True)
    assert impl.context_steps(2 * K, context=True) == K
    assert impl.context_steps((1 + S) * K, context=False) == 0


@pytest.mark.parametrize("segments", [1, S + 1])
def test_fit_trains_segment_windows_of_another_number_of_segments(segments: int) -> None:
    """A view of (1 + n) * K windows with n != S trains: a context segment and n segments,
    starting from (and writing back) the states at the view's own boundaries."""
    algo = small_algo()
    view = SegmentRecurrentView(cue_recall_dataset(20, 1, 30, seed=2), K, segments, seed=0)
    assert view.sample_trajectory_batch(4, K).observations.shape[1] == (1 + segments) * K
    algo.fit(view, n_steps=2, **QUIET)
    assert algo.grad_step == 2
