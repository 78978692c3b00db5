"""Where a training update's time goes: ELMURDT, BC-GRU and d3rlpy's DT, same data, one process.

Models are the POPGym presets (``popgym_elmur``, ``popgym_bc_gru``, ``popgym_dt``) with the
width (``--width``; DT: its observation encoder's output) and batch (``--batch``) given here:
ELMURDT and BC-GRU train on S = 3 segments of K = 10 after a context segment, with the same
windows (one sampler seed); DT on d3rlpy's windows of ``--dt-context`` steps (30: the same
history). Data: 200 episodes of 300 steps (``_common.long_dataset``), so windows start mid-episode
from stored boundary states. ``--set KEY=VALUE`` changes the ELMURDT config only
(``encoder.FIELD=VALUE`` an ELMUR encoder option, as in ``extrapolation.py``).

What is measured, per model:

- ``ms_per_update``: wall time of ``algo.update`` over ``--updates`` pre-sampled batches, after a
  warm-up, divided by their number; the median of ``--repeats`` runs, the models alternating
  (A B C A B C ...). Window sampling is excluded (``sample_ms``: per batch, timed apart). The
  stored-state refresh is excluded for ELMURDT and BC-GRU alike: the table of boundary states is
  filled before timing and every timed update runs at a grad step that is not a refresh step;
  updates read and write back the table as in ``fit``. ``refresh_ms`` is one full refresh of
  this dataset, ``refresh_ms_per_update`` that divided by ``memory_refresh_every`` (what ``fit``
  adds per update on average).
- ``gflop_per_update``: the FLOPs ``torch.profiler(with_flops=True)`` counts (matrix products
  and a few elementwise ops; attention runs as matrix products here) over ``--profile-updates``
  updates, per update. ``gflop_per_s`` = that / ``ms_per_update``; ``gemm_share`` = that / the
  median 1024^3 float32 GEMM rate measured in this process, same threads, once per round.
- ``outside_matmul_share``: 1 - (matrix-product self CPU time per profiled update) /
  ``ms_per_update``. Matrix products are the ops in ``MATMUL_OPS`` or starting with
  ``MATMUL_PREFIXES``; self CPU time excludes child ops, so a ``linear`` counts only its own
  dispatch and its ``addmm`` the arithmetic. Everything else is outside: other ops, Python,
  the optimizer, autograd bookkeeping. ``outside_matmul_share_of_ops`` uses the sum of every
  op's self CPU time instead of the wall time (profiler overhead inflates both).
- ``top_ops``: the ``--top`` ops by self CPU time: ms and calls per update, share of op time.

    python benchmarks/update_profile.py --json                       # width 128, 1 thread
    python benchmarks/update_profile.py --json --set encoder.memory_rewrites=4 --width 64
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterator
from typing import Any

import torch
from _common import (
    add_common_arguments,
    alternate,
    apply_overrides,
    emit,
    long_dataset,
    machine_info,
    median,
    now,
    parse_overrides,
    setup,
    square_gemm_gflops,
)
from torch.profiler import ProfilerActivity, profile

PRESETS = {"elmurdt": "popgym_elmur", "bc_gru": "popgym_bc_gru", "dt": "popgym_dt"}
MATMUL_OPS = {
    "aten::mm",
    "aten::bmm",
    "aten::addmm",
    "aten::baddbmm",
    "aten::addbmm",
    "aten::matmul",
    "aten::linear",
}
MATMUL_PREFIXES = ("aten::_scaled_dot_product", "aten::scaled_dot_product")


@dataclasses.dataclass
class Model:
    """An algorithm ready to update: its batches and, for ELMURDT and BC-GRU, its filled
    table of boundary states (``replay``)."""

    algo: Any
    batches: list[Any]
    sample_ms: float
    replay: tuple[Any, Any] | None = None
    refresh_ms: float | None = None


def make_algo(name: str, width: int, batch: int, dt_context: int, sets: dict[str, Any]) -> Any:
    """The POPGym preset ``name`` at this width and batch, built for long_dataset's shapes."""
    from d3rlpy_elmur_cli.bench.configs import load_run_config

    run = load_run_config(PRESETS[name])
    params = {**run.params, "batch_size": batch}
    if name == "dt":
        encoder = run.params["encoder_factory"]
        hidden = {**encoder.get("params", {}), "hidden_units": [width]}
        params.update(context_size=dt_context, encoder_factory={**encoder, "params": hidden})
    else:
        params["embed_dim"] = width
    config = run.replace(params=params).make_config()
    if name == "elmurdt":
        config = apply_overrides(config, sets)
    algo = config.create(device="cpu:0")
    algo.create_impl((4,), 4)  # long_dataset: 4 observation features, 4 actions
    return algo


def prepare(algo: Any, dataset: Any, updates: int, seed: int) -> Model:
    """Samples the batches (timed apart) and fills the stored states (timed: refresh_ms)."""
    from d3rlpy_elmur.algos.elmur_dt import ELMURDTBase
    from d3rlpy_elmur.algos.replay_states import BoundaryStates

    model = Model(algo, [], 0.0)
    sampler = dataset
    if isinstance(algo, ELMURDTBase):
        if algo.config.memory_refresh_every < 2:
            raise SystemExit("memory_refresh_every=1 refreshes in every update: nothing to exclude")
        sampler = algo.segment_view(dataset, seed)  # one seed: ELMURDT and BC-GRU share windows
        states = BoundaryStates(sampler.num_boundaries)
        start = now()
        algo.refresh_boundary_states(sampler, states)
        model.refresh_ms = (now() - start) * 1e3
        model.replay = (sampler, states)
    cfg = algo.config
    start = now()
    model.batches = [
        sampler.sample_trajectory_batch(cfg.batch_size, length=cfg.context_size)
        for _ in range(updates)
    ]
    model.sample_ms = (now() - start) * 1e3 / updates
    return model


@contextlib.contextmanager
def training(model: Model) -> Iterator[None]:
    """``update`` reads and writes the stored states as inside ``fit`` (the table ``fit``
    keeps in ``_replay`` for its duration, set here the way tests/algos set it)."""
    model.algo._replay = model.replay
    try:
        yield
    finally:
        model.algo._replay = None


def run_updates(model: Model, batches: list[Any]) -> None:
    for batch in batches:
        if model.replay is not None:
            model.algo.set_grad_step(1)  # never a refresh step (refresh_ms reports those)
        model.algo.update(batch)


def time_updates(model: Model) -> float:
    """Milliseconds per update over the model's batches."""
    with training(model):
        start = now()
        run_updates(model, model.batches)
        return (now() - start) * 1e3 / len(model.batches)


def is_matmul(op: str) -> bool:
    return op in MATMUL_OPS or op.startswith(MATMUL_PREFIXES)


def profile_updates(model: Model, n: int, top: int) -> dict[str, Any]:
    """FLOPs, matrix-product self time and the top ops, per update, over ``n`` updates."""
    with training(model), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = now()
        run_updates(model, model.batches[:n])
        wall_ms = (now() - start) * 1e3 / n
    events = prof.key_averages()
    ops_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / n
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "gflop_per_update": sum(e.flops for e in events) / 1e9 / n,
        "matmul_ms": sum(e.self_cpu_time_total for e in events if is_matmul(e.key)) / 1e3 / n,
        "ops_ms": ops_ms,
        "profiled_ms_per_update": wall_ms,
        "top_ops": [
            {
                "op": e.key,
                "self_ms": round(e.self_cpu_time_total / 1e3 / n, 3),
                "calls": round(e.count / n, 1),
                "share_of_ops": round(e.self_cpu_time_total / 1e3 / n / ops_ms, 3),
            }
            for e in ranked
        ],
    }


def summarize(model: Model, runs: list[float], gemm: float, prof: dict[str, Any]) -> dict[str, Any]:
    ms = median(runs)
    gflops = prof["gflop_per_update"] / (ms / 1e3)
    out = {
        "ms_per_update": round(ms, 2),
        "gflop_per_update": round(prof["gflop_per_update"], 3),
        "gflop_per_s": round(gflops, 1),
        "gemm_share": round(gflops / gemm, 3),
        "outside_matmul_share": round(1 - prof["matmul_ms"] / ms, 3),
        "outside_matmul_share_of_ops": round(1 - prof["matmul_ms"] / prof["ops_ms"], 3),
        "matmul_ms": round(prof["matmul_ms"], 2),
        "profiled_ms_per_update": round(prof["profiled_ms_per_update"], 2),
        "sample_ms": round(model.sample_ms, 2),
        "ms_per_update_runs": [round(v, 2) for v in runs],
    }
    if model.refresh_ms is not None:  # ELMURDT and BC-GRU
        out["refresh_ms"] = round(model.refresh_ms, 1)
        every = model.algo.config.memory_refresh_every
        out["refresh_ms_per_update"] = round(model.refresh_ms / every, 2)
    out["top_ops"] = prof["top_ops"]
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.set_defaults(threads=1)
    parser.add_argument("--models", default=",".join(PRESETS), help="of " + ",".join(PRESETS))
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dt-context", type=int, default=30, help="DT's context (steps)")
    parser.add_argument("--updates", type=int, default=20, help="updates per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per model")
    parser.add_argument("--profile-updates", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="ops listed per model")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an ELMURDT config field (repeat the flag); encoder.FIELD=VALUE an encoder option",
    )
    args = parser.parse_args()
    unknown = set(args.models.split(",")) - set(PRESETS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {', '.join(PRESETS)}")
    return args


def main() -> None:
    args = parse_args()
    setup(args.threads, args.seed)
    logging.disable(logging.WARNING)  # d3rlpy's structlog "Skip building models" lines
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    sets = parse_overrides(args.set)
    dataset = long_dataset(200, 300, args.seed)
    models: dict[str, Model] = {}
    for name in args.models.split(","):
        torch.manual_seed(args.seed)
        algo = make_algo(name, args.width, args.batch, args.dt_context, sets)
        models[name] = prepare(algo, dataset, args.updates, args.seed)
        time_updates(models[name])  # warm-up: first-call allocations, optimizer state
    timed = {name: functools.partial(time_updates, model) for name, model in models.items()}
    runs = alternate({"gemm": square_gemm_gflops, **timed}, args.repeats)
    gemm = median(runs.pop("gemm"))
    result: dict[str, Any] = {
        "benchmark": "update_profile",
        "machine": machine_info(args.threads),
        "config": {
            **{k: v for k, v in vars(args).items() if k not in ("json", "set")},
            "set": sets,
        },
        "gemm_1024_gflops": round(gemm, 1),
    }
    for name, model in models.items():
        prof = profile_updates(model, min(args.profile_updates, args.updates), args.top)
        result[name] = summarize(model, runs[name], gemm, prof)
    for a, b in (("elmurdt", "bc_gru"), ("elmurdt", "dt")):
        if a in models and b in models:
            result[f"ms_ratio_{a}_over_{b}"] = round(median(runs[a]) / median(runs[b]), 3)
    emit(result, args.json)


if __name__ == "__main__":
    main()
