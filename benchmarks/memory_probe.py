"""Where a trained model's memory goes over a long stretch of distractors (issue 33).

Runs ``R`` episodes per cue of a discrete recall task (``envs/recall.py``) in lock step
through the step path, with the same noise in every cue's episodes, and at checkpoints
(log-spaced segment ends) reports:

* ``closest_cues``: the distance between the two closest cue means of the memory (all layers
  and slots, flattened); cues a read could still tell apart are far apart;
* ``spread``: the mean distance of an episode's memory from its cue's mean;
* ``right_by_cue``: the fraction of each cue's episodes answered right if the flag came now
  (asked on a copy of the state, so the run goes on undisturbed);
* ``gate``: with ``write_gate``, the mean / min / max opening of the gates at that segment's
  write (every layer and episode; at the first write the empty slot is replaced and the gate
  is computed but not used, unless ``write_gate_empty``).

A cue lost while ``closest_cues`` stays large means the memory still holds it but the read no
longer decodes it; a cue lost as its mean reaches another's means the memory itself drifted.

    python benchmarks/memory_probe.py MODEL.d3 --task cue8-flag --steps 3000 --threads 1
    python benchmarks/memory_probe.py MODEL.d3 --task cue8-flag-late --onset 13
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import numpy as np
import torch
from _common import add_common_arguments, emit, setup

from d3rlpy_elmur.algos.stateful import StepInference
from d3rlpy_elmur.envs.recall import RecallTask, answers_right
from d3rlpy_elmur.io import load_learnable


def checkpoints(segments: int, count: int) -> list[int]:
    """About ``count`` log-spaced segment numbers in 1..segments."""
    return sorted({int(x) for x in np.geomspace(1, segments, count).astype(int)})


def gate_recorder(model: torch.nn.Module) -> list[torch.Tensor]:
    """Forward hooks on every write gate; the list collects sigmoid(output) per call."""
    seen: list[torch.Tensor] = []
    for name, module in model.named_modules():
        if name.endswith(".gate") and isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.sigmoid().flatten()))
    return seen


def probe(
    path: str, task: RecallTask, steps: int, per_cue: int, seed: int, onset: int = 0
) -> dict[str, Any]:
    algo = load_learnable(path)
    if not task.discrete:
        raise SystemExit(f"the probe reads discrete answers; {task} has {task.actions} actions")
    k, B = task.num_cues, task.num_cues * per_cue
    K = algo.config.context_size
    gates = gate_recorder(algo.impl.policy)
    inference = StepInference(algo, 1.0)
    inference.reset(B)
    rng = np.random.default_rng(seed)
    cues = np.repeat(np.arange(k), per_cue)
    wait = torch.zeros(B, dtype=torch.long)

    def observation(t: int, due: float) -> torch.Tensor:
        obs = np.zeros((B, task.observation_size), np.float32)
        if t == onset:
            obs[np.arange(B), cues] = 1.0
        obs[:, k] = due
        noise = rng.integers(-1, 2, (per_cue, task.noise_features)).astype(np.float32)
        obs[:, k + 1 :] = np.tile(noise, (k, 1))  # the same noise for every cue
        return torch.from_numpy(obs)

    every = task.answer == "every"
    rows = []
    # and the write of the segment that shows the cue (is the gate open there?)
    marks = set(checkpoints(steps // K, 14)) | {onset // K + 1}
    with torch.no_grad():
        for t in range(steps):
            gates.clear()
            out = inference.outputs(observation(t, 1.0 if every else 0.0), np.zeros(B))
            inference.take(out.argmax(-1) if every else wait)
            segment = (t + 1) // K
            if (t + 1) % K or segment not in marks:
                continue
            opening = torch.cat(gates) if gates else None
            memory = inference.state["memory"].reshape(B, -1)
            means = torch.stack([memory[cues == c].mean(0) for c in range(k)])
            spread = torch.stack(
                [(memory[cues == c] - means[c]).norm(dim=-1).mean() for c in range(k)]
            )
            apart = torch.cdist(means, means).fill_diagonal_(float("inf"))
            # ask on a copy: the model's weights are shared, its state and inputs copied
            asked = copy.deepcopy(inference, memo={id(algo.impl): algo.impl})
            answers = asked.outputs(observation(t + 1, 1.0), np.zeros(B)).argmax(-1).numpy()
            right = answers_right(task, answers, cues)
            rows.append(
                {
                    "segment": segment,
                    "step": t + 1,
                    "closest_cues": round(float(apart.min()), 4),
                    "spread": round(float(spread.mean()), 4),
                    "right_by_cue": [round(float(right[cues == c].mean()), 3) for c in range(k)],
                    "gate": None
                    if opening is None
                    else [round(float(f(opening)), 4) for f in (torch.mean, torch.min, torch.max)],
                }
            )
    return {
        "model": path,
        "task": str(task),
        "steps": steps,
        "per_cue": per_cue,
        "onset": onset,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .d3 file (e.g. one extrapolation.py wrote)")
    parser.add_argument("--task", default="cue8-flag", help="a discrete recall task name")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--per-cue", type=int, default=12, help="episodes per cue")
    parser.add_argument(
        "--onset", type=int, default=0, help="the step that shows the cue (late-cue tasks)"
    )
    add_common_arguments(parser)
    args = parser.parse_args()
    setup(args.threads, args.seed)
    if not 0 <= args.onset < args.steps - 1:
        raise SystemExit(f"--onset must be in 0..{args.steps - 2}, got {args.onset}")
    task = RecallTask.from_name(args.task)
    result = probe(args.model, task, args.steps, args.per_cue, args.seed, args.onset)
    if args.json:
        emit(result, True)
        return
    for row in result["rows"]:
        gate = "" if row["gate"] is None else " gate {:.3f} [{:.3f}, {:.3f}]".format(*row["gate"])
        right = " ".join(f"{r:.2f}" for r in row["right_by_cue"])
        print(
            f"segment {row['segment']:5d}  closest cues {row['closest_cues']:7.3f}  "
            f"spread {row['spread']:.3f}  right by cue {right}{gate}"
        )


if __name__ == "__main__":
    main()
