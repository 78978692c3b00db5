"""When in an episode do trained models miss the expert: on its states, and on their own?

For each model (ELMURDT or BC-GRU, greedy through the stateful wrapper) and a discrete POPGym
task it prints, per range of episode steps:

* ``replay``: the error on the task's dataset episodes (the expert's states; observation
  tokens only, so nothing of the model's own actions feeds back);
* ``closed loop``: how often its action differs from the privileged expert's, on the states
  its own actions lead to (the expert reads the env's hidden state at every step);

and the median length of its closed-loop episodes. ``segment_errors.py`` groups errors by
position in a segment; this groups them by step of the episode, where a transient at the
episode's start shows.

    python examples/episode_phase_errors.py RUN_DIR... --dataset popgym-positiononlycartpole-easy \
        --env popgym-PositionOnlyCartPoleEasy-v0 --episodes 40 --seed 5000000
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from d3rlpy_elmur import load_learnable
from d3rlpy_elmur.datasets import ensure_dataset, load_minari
from d3rlpy_elmur.envs.experts import make_expert
from d3rlpy_elmur.envs.popgym_experts import expert_name_for_popgym, make_popgym_env

BINS = ((0, 10), (10, 20), (20, 40), (40, 80), (80, None))


def _by_bin(wrong: Sequence[list[bool]]) -> dict[str, float | None]:
    """Error rate per range of steps, over episodes given as lists of per-step misses."""
    out: dict[str, float | None] = {}
    for lo, hi in BINS:
        cells = [w for episode in wrong for w in episode[lo:hi]]
        out[f"{lo}-{hi if hi is not None else ''}"] = (
            round(float(np.mean(cells)), 3) if cells else None
        )
    return out


def replay_errors(algo: Any, episodes: Sequence[Any]) -> dict[str, float | None]:
    """Per-bin error on dataset episodes, through the stateful wrapper."""
    wrapper = algo.as_stateful_wrapper()
    wrong = []
    for episode in episodes:
        wrapper.reset()
        reward = 0.0
        misses = []
        for observation, action, step_reward in zip(
            episode.observations, episode.actions, episode.rewards, strict=True
        ):
            misses.append(int(wrapper.predict(observation, reward)) != int(action[0]))
            reward = float(step_reward[0])
        wrong.append(misses)
    return _by_bin(wrong)


def closed_loop_errors(
    algo: Any, env_id: str, episodes: int, seed: int
) -> tuple[dict[str, float | None], float]:
    """Per-bin disagreement with the privileged expert on the model's own trajectories, and
    the median episode length."""
    env = make_popgym_env(env_id)
    expert = make_expert(expert_name_for_popgym(env_id), env)
    wrapper = algo.as_stateful_wrapper()
    wrong, lengths = [], []
    for i in range(episodes):
        observation, _ = env.reset(seed=seed + i)
        expert.reset()
        wrapper.reset()
        reward, done, misses = 0.0, False, []
        while not done:
            wanted = int(expert.act(observation))
            action = int(wrapper.predict(np.asarray(observation, np.float32), reward))
            misses.append(action != wanted)
            observation, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        wrong.append(misses)
        lengths.append(len(misses))
    return _by_bin(wrong), float(np.median(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model.d3 files or run folders holding one")
    parser.add_argument("--dataset", required=True, help="recipe name or Minari dataset id")
    parser.add_argument("--env", required=True, help="the POPGym id, e.g. popgym-...-v0")
    parser.add_argument("--episodes", type=int, default=40, help="replayed and run episodes")
    parser.add_argument("--seed", type=int, default=5_000_000, help="first closed-loop seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset_id = args.dataset if "/" in args.dataset else ensure_dataset(args.dataset)
    episodes = list(load_minari(dataset_id).episodes)[: args.episodes]
    rows = []
    for name in args.models:
        path = Path(name)
        algo = load_learnable(path / "model.d3" if path.is_dir() else path)
        loop, median_length = closed_loop_errors(algo, args.env, args.episodes, args.seed)
        rows.append(
            {
                "model": name,
                "replay": replay_errors(algo, episodes),
                "closed_loop": loop,
                "median_length": median_length,
            }
        )
    bins = list(rows[0]["replay"])
    print(f"| model | measure | {' | '.join(f'steps {b}' for b in bins)} | median length |")
    print("|---|---|" + "---|" * (len(bins) + 1))
    for row in rows:
        for measure in ("replay", "closed_loop"):
            cells = " | ".join("-" if v is None else f"{v:.3f}" for v in row[measure].values())
            length = f"{row['median_length']:.0f}" if measure == "closed_loop" else ""
            print(f"| {row['model']} | {measure.replace('_', ' ')} | {cells} | {length} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
