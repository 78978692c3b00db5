"""The example scripts whose numbers the README quotes still measure what it says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_every_example_imports(path: Path) -> None:
    # a module moved inside the package must not break a script no other test runs
    assert callable(load_example(path.stem).main)


def test_repeat_previous_counts_beat_chance_without_recall() -> None:
    pytest.importorskip("popgym")
    example = load_example("repeat_previous_counting")
    env_id = "popgym-RepeatPreviousMedium-v0"

    def score(policy: object) -> float:
        mean, sem = example.mean_return(env_id, policy, episodes=100, seed=0)
        assert 0.0 < sem < 0.02
        return mean

    chance = score(example.uniform)
    window = score(example.make_window(30))
    totals = score(example.totals)
    both = score(example.make_totals_minus_window(30))
    # one suit in four: 1/4 right, 3/4 wrong
    assert -0.55 < chance < -0.45
    # counts help, more counts more (window < totals < totals - window), and none comes near
    # what recalling the card 32 back scores (1.0): the README's reading of BC-GRU on Medium
    assert chance + 0.03 < window < totals - 0.01
    assert totals + 0.05 < both < -0.25


def test_episode_phase_errors_bins_the_misses_by_step() -> None:
    pytest.importorskip("popgym")
    import numpy as np
    import torch
    from d3rlpy.dataset import Episode

    from d3rlpy_elmur import DiscreteELMURDTConfig

    example = load_example("episode_phase_errors")
    torch.manual_seed(0)
    algo = DiscreteELMURDTConfig(context_size=4, num_segments=2, embed_dim=16).create()
    algo.create_impl((2,), 2)
    head = algo.impl.policy.head  # type: ignore[union-attr]
    with torch.no_grad():  # always action 1
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 1.0]))
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, (n, 1)) for n in (15, 90)]
    episodes = [
        Episode(np.zeros((len(a), 2), np.float32), a, np.zeros((len(a), 1), np.float32), True)
        for a in actions
    ]
    replay = example.replay_errors(algo, episodes)
    # a miss wherever the dataset's action is 0, grouped by step of the episode
    zeros = [a[:, 0] == 0 for a in actions]
    assert replay["0-10"] == round(float(np.mean([z[:10] for z in zeros])), 3)
    assert replay["10-20"] == round(float(np.mean(np.concatenate([z[10:20] for z in zeros]))), 3)
    assert replay["80-"] == round(float(np.mean(zeros[1][80:])), 3)
    loop, median = example.closed_loop_errors(algo, "popgym-PositionOnlyCartPoleEasy-v0", 2, 0)
    assert 1 <= median < 200  # pushing one way drops the pole
    assert set(loop) == set(replay) and 0.0 < loop["0-10"] <= 1.0  # type: ignore[operator]


def test_the_readme_snippet_runs_twice(tmp_path: Path) -> None:
    """The Usage snippet, with a small budget, run twice in one folder (the second run finds
    the dataset the first built, as it would after `make demo`)."""
    import os
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", readme, re.S)
    assert snippet is not None
    code = snippet.group(1)
    small = {
        "n_episodes=2000": "n_episodes=40",
        "n_steps=2000": "n_steps=4",
        "n_steps_per_epoch=500": "n_steps_per_epoch=2",
        "corridor_length=1000": "corridor_length=12",
        "n_episodes=10": "n_episodes=2",
    }
    for big, little in small.items():
        assert big in code, big
        code = code.replace(big, little)
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "datasets")}
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "tmaze.d3").is_file()


def test_popgym_presets_sweeps_each_task_from_the_config_the_suite_trains_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("popgym")
    pytest.importorskip("optuna")
    import yaml

    from d3rlpy_elmur_cli.bench.configs import load_run_config

    from .toy_roots import make_toy_roots

    roots = make_toy_roots(tmp_path, monkeypatch)
    (roots / "recipes" / "rp.yaml").write_text(
        "name: rp\nid: test/rp-v0\nkind: popgym\nenv: popgym-RepeatPreviousEasy-v0\n"
        "expert: popgym-repeat-previous\nn_episodes: 4\nseed: 0\nexpected_return: 1.0\n"
        "description: tiny\n"
    )
    (roots / "configs" / "toy_elmur_k6.yaml").write_text(
        "base: toy_elmur.yaml\nparams: {context_size: 6}\n"
    )
    (roots / "configs" / "toy_dt_rp.yaml").write_text(
        "base: toy_dt.yaml\nparams: {max_timestep: 64}\n"  # the episodes last 52 steps
    )
    (roots / "configs" / "bench_rp.yaml").write_text(
        "kind: popgym\ntasks: [rp]\nepisodes: 2\nalgorithms:\n"
        "  - {label: ELMURDT, config: toy_elmur.yaml, task_configs: {rp: toy_elmur_k6.yaml}}\n"
        "  - {label: DT, config: toy_dt.yaml, task_configs: {rp: toy_dt_rp.yaml}}\n"
    )
    example = load_example("popgym_presets")
    argv = ["--suite", "bench_rp", "--out", str(roots / "presets"), "--trials", "2"]
    argv += ["--episodes", "2", "--algorithms", "ELMURDT", "DT"]
    chosen = example.main(argv)

    elmur, dt = roots / "presets" / "rp" / "toy_elmur_k6", roots / "presets" / "rp" / "toy_dt_rp"
    assert chosen == {
        "ELMURDT": {"rp": str(elmur / "best.yaml")},
        "DT": {"rp": str(dt / "best.yaml")},
    }
    best = load_run_config(elmur / "best.yaml")
    assert best.params["context_size"] == 6  # the task's config, not the entry's default
    summary = yaml.safe_load((elmur / "sweep.json").read_text())
    assert summary["env"] == "popgym-RepeatPreviousEasy-v0" and summary["eval_seed"] == 5_000_000
    assert len([t for t in summary["trials"] if t["state"] == "complete"]) == 2

    # run again with --install: nothing is trained (no sweep even runs), the chosen configs
    # are copied where the suite finds them by name, and their base still resolves
    def no_sweep(*args: object, **kwargs: object) -> None:
        raise AssertionError("--install ran a sweep")

    monkeypatch.setattr(example, "run_sweep", no_sweep)
    installed = example.main([*argv, "--install", str(roots / "configs")])
    name = "popgym_presets/rp/best_toy_elmur_k6.yaml"
    assert installed["ELMURDT"] == {"rp": name}
    assert (roots / "configs" / name).read_text() == (elmur / "best.yaml").read_text()
    assert load_run_config(name).to_dict() == best.to_dict()
    # once the suite trains the installed preset, the script still finds the task's sweep
    # (it starts from the preset's base), so installing again gives the same names
    suite = (roots / "configs" / "bench_rp.yaml").read_text()
    (roots / "configs" / "bench_rp.yaml").write_text(
        suite.replace("rp: toy_elmur_k6.yaml", f"rp: {name}")
    )
    assert example.main([*argv, "--install", str(roots / "configs")]) == installed


def test_popgym_presets_install_renames_a_base_given_by_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d3rlpy_elmur_cli.bench.configs import load_run_config

    from .toy_roots import make_toy_roots

    roots = make_toy_roots(tmp_path, monkeypatch)
    # a sweep of a config outside the configs folder names its base by a relative path
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "elmur.yaml").write_text(
        "base: toy_elmur.yaml\nparams: {context_size: 5}\n"
    )
    best = tmp_path / "out" / "sweeps" / "rp" / "elmur" / "best.yaml"
    best.parent.mkdir(parents=True)
    best.write_text("# chosen\nbase: ../../../../mine/elmur.yaml\nparams: {learning_rate: 0.002}\n")
    target = roots / "configs" / "popgym_presets" / "rp" / "best_elmur.yaml"
    assert target.parents[3] == tmp_path  # one folder less deep than the sweep's
    load_example("popgym_presets").install(best, target)
    assert target.read_text().startswith("# chosen\nbase: ../../../mine/elmur.yaml\n")
    installed = load_run_config("popgym_presets/rp/best_elmur.yaml")
    assert installed.to_dict() == load_run_config(best).to_dict()
    assert installed.params["context_size"] == 5 and installed.params["learning_rate"] == 0.002
