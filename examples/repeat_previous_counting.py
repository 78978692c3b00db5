"""How far can RepeatPrevious be played without remembering the card it asks for?

POPGym deals RepeatPrevious from whole decks without replacement (Medium: 2 decks, the suit
k = 32 cards back; Hard: 3 decks, k = 64), so suit counts carry information about a card
the policy no longer sees: by exchangeability, the card k steps back is a uniform draw
from all cards dealt up to it. Policies that never recall the card asked for, each with a
memory a recurrent model trained on W-step windows could have, against uniform guesses:

- ``window``: the suit least frequent among the last W cards (W = 30, the windows the
  bench's sequence models train on; the card asked for has left the window, and the deck
  has fewer of the suits the window holds).
- ``totals``: the suit most frequent among all cards dealt so far (four running counts).
- ``totals - window``: the suit most frequent among all cards dealt except the last W
  (four running counts and the window).

    python examples/repeat_previous_counting.py --episodes 300 --seed 0
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

import numpy as np

from d3rlpy_elmur.envs import make_popgym_env

Policy = Callable[[Sequence[int], np.random.Generator], int]


def _pick(scores: np.ndarray, rng: np.random.Generator) -> int:
    """Uniform among the highest scores (ties are common early in an episode)."""
    return int(rng.choice(np.flatnonzero(scores == scores.max())))


def uniform(cards: Sequence[int], rng: np.random.Generator) -> int:
    return int(rng.integers(4))


def make_window(window: int) -> Policy:
    def policy(cards: Sequence[int], rng: np.random.Generator) -> int:
        return _pick(-np.bincount(cards[-window:], minlength=4), rng)

    return policy


def totals(cards: Sequence[int], rng: np.random.Generator) -> int:
    return _pick(np.bincount(cards, minlength=4), rng)


def make_totals_minus_window(window: int) -> Policy:
    def policy(cards: Sequence[int], rng: np.random.Generator) -> int:
        older = cards[: max(len(cards) - window, 0)]
        return _pick(np.bincount(older, minlength=4), rng)  # all-zero early: uniform

    return policy


def mean_return(env_id: str, policy: Policy, episodes: int, seed: int) -> tuple[float, float]:
    """Mean return and its standard error; episode i is reset with seed ``seed + i``."""
    env = make_popgym_env(env_id)
    rng = np.random.default_rng(seed)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        cards, total, done = [int(obs)], 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(cards, rng))
            cards.append(int(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    values = np.asarray(returns)
    return float(values.mean()), float(values.std() / np.sqrt(len(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=30, help="W of the two window policies")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.episodes <= 0 or args.window <= 0:
        parser.error("--episodes and --window must be positive")

    policies: dict[str, Policy] = {
        "uniform": uniform,
        f"window (W={args.window})": make_window(args.window),
        "totals": totals,
        f"totals - window (W={args.window})": make_totals_minus_window(args.window),
    }
    rows = []
    for task in ("Medium", "Hard"):  # k = 32 and 64 cards back, beyond the W = 30 windows
        env_id = f"popgym-RepeatPrevious{task}-v0"
        for name, policy in policies.items():
            mean, sem = mean_return(env_id, policy, args.episodes, args.seed)
            rows.append({"task": env_id, "policy": name, "return_mean": mean, "return_sem": sem})

    last = args.seed + args.episodes - 1
    print(f"mean return +- standard error, {args.episodes} episodes (seeds {args.seed}..{last})\n")
    print("| task | " + " | ".join(policies) + " |")
    print("|---" * (len(policies) + 1) + "|")
    for i in range(0, len(rows), len(policies)):
        cells = [
            f"{r['return_mean']:.3f} +- {r['return_sem']:.3f}" for r in rows[i : i + len(policies)]
        ]
        print(f"| {rows[i]['task']} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
