#!/usr/bin/env bash
# The GPU check (issue 34): on one CUDA GPU, in under 8 minutes once the venv is installed,
#   1. the tests marked `cuda` (tests/test_cuda.py: step == segment, training, save/load, ONNX
#      export, evaluation, all on cuda:0),
#   2. training updates/s of DiscreteELMURDT and d3rlpy's DiscreteDecisionTransformer on cuda:0
#      (benchmarks/train_throughput.py, the paper's shape, both T-Maze datasets),
#   3. evaluation throughput on cuda:0 (benchmarks/inference.py: one episode's step latency and
#      100 batched T-Maze episodes),
# then a JSON summary, the only thing on stdout ("ok": tests passed, none skipped, every phase
# finished). Full outputs go to $GPU_CHECK_OUT (default results/gpu_check, which git ignores);
# GPU_CHECK_DEVICE picks another GPU (default cuda:0; the tests always use cuda:0, so pick one
# with CUDA_VISIBLE_DEVICES instead). Run `make gpu-check` or `bash benchmarks/gpu_check.sh`
# from anywhere; PYTHON (to create the venv) and VENV are as in the Makefile. The 8 minutes do
# not count a first install of the venv (pip, a few minutes).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PY=$VENV/bin/python
OUT=${GPU_CHECK_OUT:-results/gpu_check}
DEVICE=${GPU_CHECK_DEVICE:-cuda:0}
mkdir -p "$OUT"
started=$(date +%s)

say() { echo "== gpu-check: $*" >&2; }

# --- set-up: the Makefile's venv. Where the system python already has a CUDA torch (the usual
# GPU image), a new venv sees it instead of downloading another one.
if [ ! -x "$PY" ] && "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
    2>/dev/null; then
    say "creating $VENV over the system's CUDA torch (--system-site-packages)"
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
make -s --no-print-directory "$VENV/.installed" PYTHON="$PYTHON" VENV="$VENV" >&2

if ! "$PY" - "$DEVICE" "$PY" <<'EOF'; then
import sys

import torch

device = torch.device(sys.argv[1])
if not torch.cuda.is_available():
    if torch.version.cuda is None:
        why = (
            f"the venv's torch {torch.__version__} is a CPU-only build. Install a CUDA build, "
            f"e.g. `{sys.argv[2]} -m pip install --force-reinstall torch==2.13.0` (PyPI's "
            "Linux x86_64 wheel is built with CUDA) or a wheel from "
            "https://download.pytorch.org/whl/<cuda tag> matching the driver"
        )
    else:
        why = (
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: check "
            "`nvidia-smi`, the driver and CUDA_VISIBLE_DEVICES"
        )
    sys.exit(f"gpu-check: CUDA is not available: {why}")
if device.type != "cuda" or (device.index or 0) >= torch.cuda.device_count():
    sys.exit(f"gpu-check: {device} is not one of the {torch.cuda.device_count()} CUDA devices")
name = torch.cuda.get_device_name(device)
print(f"== gpu-check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", file=sys.stderr)
EOF
    exit 1
fi

# --- each phase has a time limit, so that the whole check stays under 8 minutes; a failing or
# timed-out phase is reported in the summary and the next one still runs.
tests_rc=0
say "pytest -m cuda (limit 180 s)"
timeout 180 "$PY" -m pytest -m cuda -q -p no:cacheprovider -rfEs \
    --junitxml="$OUT/cuda_tests.xml" >&2 || tests_rc=$?

# one process per dataset: a slow one cannot cost the other's numbers
declare -A train_rc=([tmaze]=0 [long]=0)
for dataset in tmaze long; do
    say "training throughput on $DEVICE, $dataset windows (limit 90 s)"
    timeout 90 "$PY" benchmarks/train_throughput.py --json --device "$DEVICE" --threads 4 \
        --datasets "$dataset" --updates 100 --repeats 3 \
        >"$OUT/train_throughput_$dataset.json" || train_rc[$dataset]=$?
done

eval_rc=0
say "evaluation throughput on $DEVICE (limit 60 s)"
timeout 60 "$PY" benchmarks/inference.py --json --device "$DEVICE" --threads 4 \
    --near 100 --far 1000 --window 200 --episodes 100 --corridor 1000 \
    >"$OUT/inference.json" || eval_rc=$?

"$PY" - "$OUT" "$DEVICE" "$tests_rc" "${train_rc[tmaze]}" "${train_rc[long]}" "$eval_rc" \
    "$started" <<'EOF'
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

out, device = Path(sys.argv[1]), sys.argv[2]
tests_rc, tmaze_rc, long_rc, eval_rc, started = (int(x) for x in sys.argv[3:])


def load(name: str, rc: int) -> dict:
    path = out / name
    if rc or not path.is_file():
        return {"error": "timed out" if rc in (124, 137) else f"exit status {rc}"}
    return json.loads(path.read_text())


summary: dict = {
    "device": device,
    "gpu": torch.cuda.get_device_name(device),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
}
tests: dict = {"exit_status": tests_rc}
if (out / "cuda_tests.xml").is_file():
    suite = ET.parse(out / "cuda_tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    tests.update(counts, seconds=round(float(suite.get("time", 0.0)), 1))
summary["cuda_tests"] = tests

training: dict = {}
for name, rc in (("tmaze", tmaze_rc), ("long", long_rc)):
    train = load(f"train_throughput_{name}.json", rc)
    training[name] = train if "error" in train else {
        "elmur_updates_per_s": train[name]["elmur"]["updates_per_s"],
        "dt_updates_per_s": train[name]["dt"]["updates_per_s"],
        "elmur_env_steps_per_s": train[name]["elmur"]["env_steps_per_s"],
        "dt_env_steps_per_s": train[name]["dt"]["env_steps_per_s"],
        "ratio_elmur_over_dt": train[name]["ratio_elmur_over_dt"],
    }
summary["training"] = training
evaluation = load("inference.json", eval_rc)
if "error" not in evaluation:
    single, batched = evaluation["single_episode"], evaluation["batched"]
    evaluation = {
        "single_episode_median_us_per_step": {
            "near": single["near_median_us_per_step"],
            "far": single["far_median_us_per_step"],
        },
        "batched_episodes": batched["episodes"],
        "batched_env_steps_per_s": batched["env_steps_per_s"],
    }
summary["evaluation"] = evaluation
summary["seconds"] = round(time.time() - started)
# on a GPU no cuda test may skip: a skip means the device was not used
ran = tests.get("passed", 0) > 0 and tests.get("skipped", 0) == 0
summary["ok"] = ran and not (tests_rc or tmaze_rc or long_rc or eval_rc)
print(json.dumps(summary, indent=1))
sys.exit(0 if summary["ok"] else 1)
EOF
