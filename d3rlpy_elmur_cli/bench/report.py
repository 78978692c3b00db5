"""Results -> ``results.md`` and plots. Tables are generated from ``results.json`` only.

:func:`render_markdown` is a pure function of the results dict, so a table can always be
regenerated (``elmur report DIR``) and a test checks it against a fixture. Cells are
the mean ± standard deviation over seeds (population std, ddof=0); a length above an
algorithm's horizon cap reads "not evaluated (cap)", never a number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from d3rlpy_elmur.evaluation.tasks import format_length
from d3rlpy_elmur.extras import available

__all__ = [
    "CAP_CELL",
    "aggregate",
    "plot_popgym",
    "plot_tmaze",
    "render_markdown",
    "write_report",
]

CAP_CELL = "not evaluated (cap)"
MISSING_CELL = "—"
TMAZE_PLOT = "tmaze_success.png"
POPGYM_PLOT = "popgym_returns.png"


# ----------------------------------------------------------------- aggregation
def _row_key(row: dict[str, Any]) -> Any:
    return row["length"] if "length" in row else row["task"]


def aggregate(algorithm: dict[str, Any], metric: str) -> dict[Any, dict[str, Any]]:
    """Per length (or task): ``{"values": [...per seed], "mean", "std", "capped"}``."""
    cells: dict[Any, dict[str, Any]] = {}
    for run in algorithm.get("runs", []):
        for row in run.get("results", []):
            cell = cells.setdefault(_row_key(row), {"values": [], "capped": False})
            if "skipped" in row:
                cell["capped"] = cell["capped"] or row["skipped"] == "cap"
                cell.setdefault("skipped", row["skipped"])
                continue
            value = row.get(metric)
            if value is not None:
                cell["values"].append(float(value))
    for cell in cells.values():
        values = cell["values"]
        cell["mean"] = float(np.mean(values)) if values else None
        cell["std"] = float(np.std(values)) if values else None
    return cells


def _cell(cell: dict[str, Any] | None, n_seeds: int, digits: int) -> str:
    if cell is None:
        return MISSING_CELL
    if not cell["values"]:
        if cell["capped"]:
            return CAP_CELL
        return f"not evaluated ({cell.get('skipped', 'no result')})"
    text = f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"
    if len(cell["values"]) < n_seeds:
        text += f" (n={len(cell['values'])})"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _mean_of(algorithm: dict[str, Any], path: tuple[str, ...]) -> float | None:
    values = []
    for run in algorithm.get("runs", []):
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return float(np.mean(values)) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return MISSING_CELL if value is None or math.isnan(value) else format(value, spec)


def _eval_speed(algorithm: dict[str, Any]) -> str:
    """Env-steps/s at the longest length (or over all tasks) that was evaluated."""
    best: dict[Any, list[float]] = {}
    for run in algorithm.get("runs", []):
        for row in run.get("results", []):
            if "skipped" not in row and row.get("env_steps_per_second") is not None:
                best.setdefault(_row_key(row), []).append(row["env_steps_per_second"])
    if not best:
        return MISSING_CELL
    key = max(best) if all(isinstance(k, int) for k in best) else None
    values = best[key] if key is not None else [v for vs in best.values() for v in vs]
    suffix = f" (T={format_length(key)})" if key is not None else ""
    return f"{np.mean(values):,.0f}{suffix}"


# ----------------------------------------------------------------- markdown
def _task_name(env_id: str) -> str:
    return env_id.removeprefix("popgym-").removesuffix("-v0")


def _run_hours(results: dict[str, Any]) -> float:
    """Training plus evaluation time summed over runs: the suite's cost whatever its
    wall time (runs in parallel, or reused from an earlier invocation)."""
    seconds = 0.0
    for algo in results["algorithms"]:
        for run in algo["runs"]:
            seconds += run.get("train", {}).get("seconds", 0.0)
            seconds += sum(row.get("seconds", 0.0) for row in run["results"])
    return seconds / 3600


def _provenance(results: dict[str, Any]) -> list[str]:
    hw = results.get("hardware", {})
    wall = results.get("wall_seconds")
    commit = results.get("commit") or "unknown"
    reused = results.get("reused_runs")
    invocation = f" ({reused} runs reused from earlier invocations)" if reused else ""
    return [
        f"Generated from `results.json` by `render_markdown` (d3rlpy_elmur_cli.bench.report); "
        f"command: `{results.get('command', '?')}`; commit `{commit}`.",
        f"Hardware: {hw.get('platform', '?')}, {hw.get('cpu_count', '?')} CPUs, "
        f"torch threads {hw.get('torch_threads', '?')}; wall time of this invocation "
        f"{_fmt(None if wall is None else wall / 60, '.1f')} min{invocation}; training and "
        f"evaluation time summed over runs {_run_hours(results):.2f} h; started "
        f"{results.get('started', '?')}.",
    ]


def _cost_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for algo in results["algorithms"]:
        rows.append(
            [
                algo["label"],
                str(algo.get("train_steps", MISSING_CELL)),
                _fmt(_mean_of(algo, ("train", "seconds")), ".0f"),
                _fmt(_mean_of(algo, ("train", "updates_per_second")), ".1f"),
                _eval_speed(algo),
            ]
        )
    header = ["algorithm", "train steps", "train time (s)", "updates/s", "eval env-steps/s"]
    return _table(header, rows)


def _eval_seeds(results: dict[str, Any]) -> str:
    seeds = results.get("eval_seeds", {})
    pairs = ", ".join(f"{seed}: {first}" for seed, first in seeds.items())
    return (
        f"episode i of training seed s uses evaluation seed first(s) + i, first = {{{pairs}}} "
        "(apart from the training seeds; the same for every algorithm)."
    )


def _render_tmaze(results: dict[str, Any]) -> list[str]:
    lengths = results["lengths"]
    n_seeds = len(results["seeds"])
    episodes_at = {int(k): v for k, v in results.get("episodes_at", {}).items()}
    episodes = results["episodes"]
    at = "".join(
        f", {v} at T={format_length(k)}" for k, v in sorted(episodes_at.items()) if k in lengths
    )
    quick = " (quick run: small dataset, short training; not comparable to the paper)"
    lines = [
        f"# T-Maze: success rate vs. episode length{quick if results.get('quick') else ''}",
        "",
        f"Success rate, mean ± std (population, ddof=0) over {n_seeds} training seed(s) "
        f"{results['seeds']}; "
        f"{episodes} goal-balanced episodes per length{at}; greedy actions. Length T = "
        f"corridor L + 2. All algorithms trained on `{results.get('dataset', '?')}`; "
        f"{_eval_seeds(results)}",
        "",
    ]
    header = ["algorithm"] + [f"T={format_length(n)}" for n in lengths]
    rows = []
    for algo in results["algorithms"]:
        cells = aggregate(algo, "success_rate")
        rows.append([algo["label"]] + [_cell(cells.get(n), n_seeds, 2) for n in lengths])
    lines += _table(header, rows)
    caps = [
        f"{a['label']} (T > {format_length(a['max_length'])})"
        for a in results["algorithms"]
        if a.get("max_length") is not None and any(n > a["max_length"] for n in lengths)
    ]
    if caps:
        lines += [
            "",
            f'"{CAP_CELL}": lengths above the horizon cap of {", ".join(caps)}, set by '
            "`max_length` in the config or suite: evaluating these algorithms that far costs "
            "hours on this machine (see the README). No number is reported for them.",
        ]
    lines += ["", "## Cost", "", *_cost_table(results)]
    return lines


def _best_per_column(means: Sequence[Sequence[float | None]]) -> list[set[int]]:
    """Per column, the rows whose mean, rounded as printed, is the column's highest."""
    best: list[set[int]] = []
    for column in zip(*means, strict=True):
        shown = {i: round(m, 3) for i, m in enumerate(column) if m is not None}
        top = max(shown.values(), default=None)
        best.append({i for i, m in shown.items() if m == top})
    return best


def _render_popgym(results: dict[str, Any]) -> list[str]:
    tasks = results["tasks"]
    n_seeds = len(results["seeds"])
    quick = " (quick run: short training)"
    lines = [
        f"# POPGym: mean episode return{quick if results.get('quick') else ''}",
        "",
        f"Mean return per episode (in [-1, 1]), mean ± std (population, ddof=0) over {n_seeds} "
        "training seed(s) "
        f"{results['seeds']}; {results['episodes']} episodes per task; greedy actions. "
        "Each algorithm trains one model per task on that task's privileged-expert dataset; "
        f"{_eval_seeds(results)}",
        "",
    ]
    header = ["algorithm"] + [_task_name(t["env"]) for t in tasks] + ["sum of means"]
    algorithms = results["algorithms"]
    cells = [aggregate(algo, "return_mean") for algo in algorithms]
    means = [[(c.get(t["env"]) or {}).get("mean") for t in tasks] for c in cells]
    best = _best_per_column(means)
    rows = []
    for i, algo in enumerate(algorithms):
        row = [algo["label"]]
        for j, task in enumerate(tasks):
            text = _cell(cells[i].get(task["env"]), n_seeds, 3)
            row.append(f"**{text}**" if i in best[j] else text)
        known = [m for m in means[i] if m is not None]
        row.append(f"{sum(known):.3f}" if len(known) == len(tasks) else MISSING_CELL)
        rows.append(row)
    lines += _table(header, rows)
    wins = []
    for i, algo in enumerate(algorithms):
        names = [_task_name(t["env"]) for j, t in enumerate(tasks) if i in best[j]]
        wins.append(
            f"{algo['label']} {len(names)} of {len(tasks)}"
            + (f" ({', '.join(names)})" if names else "")
        )
    lines += [
        "",
        "**Bold**: the best mean in each task (means equal to 3 decimals tie). Best or tied "
        "best per algorithm: " + "; ".join(wins) + ".",
    ]
    lines += ["", "## Cost", "", *_cost_table(results)]
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """``results.md`` from a results dict (pure: same input, same text)."""
    body = _render_tmaze(results) if results["kind"] == "tmaze" else _render_popgym(results)
    return "\n".join([*body, "", *_provenance(results)]) + "\n"


# ----------------------------------------------------------------- plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    return plt


def plot_tmaze(results: dict[str, Any], path: str | Path) -> Path:
    """Success rate vs. length (log x), one line per algorithm with a ±std band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for algo in results["algorithms"]:
        cells = aggregate(algo, "success_rate")
        points = [(n, cells[n]) for n in results["lengths"] if n in cells and cells[n]["values"]]
        if not points:
            continue
        x = np.array([n for n, _ in points], dtype=float)
        mean = np.array([c["mean"] for _, c in points])
        std = np.array([c["std"] for _, c in points])
        (line,) = ax.plot(x, mean, marker="o", label=algo["label"])
        # a success rate lives in [0, 1]; so does its band
        low, high = np.clip(mean - std, 0.0, 1.0), np.clip(mean + std, 0.0, 1.0)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")  # memoryless policy
    ax.set_xlabel("episode length T (log scale)")
    ax.set_ylabel("success rate")
    ax.set_title(f"T-Maze, trained on {results.get('dataset', '?')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the curves
    fig.tight_layout()
    return _save_figure(plt, fig, path)


def _save_figure(plt: Any, fig: Any, path: str | Path) -> Path:
    from d3rlpy_elmur.io import atomic_path

    with atomic_path(path) as temp:  # keeps the .png suffix matplotlib reads the format from
        fig.savefig(temp, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_popgym(results: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: mean return per task and algorithm, ±std error bars."""
    plt = _pyplot()
    tasks = results["tasks"]
    algos = results["algorithms"]
    width = 0.8 / max(len(algos), 1)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(tasks)), 4.5))
    for i, algo in enumerate(algos):
        cells = aggregate(algo, "return_mean")
        mean = [cells[t["env"]]["mean"] if t["env"] in cells else None for t in tasks]
        std = [cells[t["env"]]["std"] if t["env"] in cells else None for t in tasks]
        heights = [np.nan if m is None else m for m in mean]
        errors = [0.0 if s is None else s for s in std]
        ax.bar(
            x + (i - (len(algos) - 1) / 2) * width,
            heights,
            width,
            yerr=errors,
            label=algo["label"],
            capsize=2,
        )
    ax.set_xticks(x, [_task_name(t["env"]) for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_ylabel("mean episode return")
    ax.set_title("POPGym")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(plt, fig, path)


def write_report(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``results.json``, ``results.md`` and the plot; returns the paths. The plot is
    left out where matplotlib (the plot extra) is not installed: the results are the point,
    and a long bench must not lose them to it (the CLI says so before it starts)."""
    from d3rlpy_elmur.io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_write(out / "results.json", "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    written.append(out / "results.json")
    with atomic_write(out / "results.md", "w") as f:
        f.write(render_markdown(results))
    written.append(out / "results.md")
    if not available("matplotlib"):
        return written
    if results["kind"] == "tmaze":
        written.append(plot_tmaze(results, out / TMAZE_PLOT))
    else:
        written.append(plot_popgym(results, out / POPGYM_PLOT))
    return written
