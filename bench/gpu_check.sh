#!/usr/bin/env bash
# GPU check in one device call: RARL trainer vs vanilla TRL on a Qwen2.5-VL-3B-shaped model, then
# bench/bench_rollout.py --device cuda (if that file exists). Fits one call: under 8 minutes.
#
# Before the call, on this machine (once; network needed):
#     make gpu-wheels            # trl, datasets, pydantic... -> bench/wheels/dist/ (git-ignored, ~5 MB)
# The device call (tool `run`; H100 is enough, ~30-45 GiB peak expected with gradient checkpointing):
#     run(command="bash bench/gpu_check.sh", carry=["bench/wheels/dist"], timeout_s=540)
# The script stops itself at 470 s (GPU_CHECK_BUDGET_S), so 540 leaves room for start-up and the copy
# back. What comes back under $OUT: gpu_check.log, gpu_check.json, bench_rollout.log, env.txt. The
# last lines of the output are the summary table (step times, RARL/vanilla ratio, generated tokens/s,
# peak GPU memory). Copy the table into bench/RESULTS.md with the card's name.
#
# CPU dry run (no wheels, no GPU; the tiny-layer variant of the same model builder and code path):
#     bash bench/gpu_check.sh --tiny
#
# Phases and their time limits on the device: wheel install (~10 s), gpu_check.py (build the 3B-shaped
# model on the GPU and save it, ~40 s; then vanilla, RARL, RARL, vanilla runs of 3 steps each while
# under its --budget-s; killed at 330 s), bench_rollout.py (reduced: 1 round of 3 steps; whatever is
# left of the 470 s, skipped under 60 s). The device image 'cuda': python3 3.12, torch 2.11+cu130,
# transformers 5.17, peft, accelerate; no trl/datasets/pydantic (they come as wheels, see
# bench/wheels/README).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET_S:-470}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
TINY=0
if [[ "${1:-}" == "--tiny" ]]; then TINY=1; shift; fi

if [[ $TINY == 1 ]]; then
    PY=${PYTHON:-$REPO/.venv/bin/python}
    [[ -x $PY ]] || PY=python3
else
    PY=${PYTHON:-python3}
    shopt -s nullglob
    wheels=("$REPO"/bench/wheels/dist/*.whl)
    if (( ${#wheels[@]} == 0 )); then
        echo "no wheels in bench/wheels/dist: run 'make gpu-wheels' here and carry bench/wheels/dist" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${wheels[@]}" || { echo "wheel install failed" >&2; exit 2; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$REPO/sdk:$REPO/trainer:$REPO/bench${PYTHONPATH:+:$PYTHONPATH}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import importlib.metadata as md, platform
print("python", platform.python_version())
for p in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "pyarrow", "huggingface-hub",
          "pydantic", "tokenizers"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "MISSING")
EOF
} 2>&1 | tee "$OUT/env.txt"

rc=0
if [[ $TINY == 1 ]]; then
    timeout 900 "$PY" bench/gpu_check.py --tiny --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log" || rc=$?
else
    timeout 330 "$PY" bench/gpu_check.py --budget-s 240 --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log" || rc=$?
fi
echo "gpu_check.py: exit $rc after ${SECONDS} s"

left=$(( BUDGET - SECONDS ))
if [[ ! -f bench/bench_rollout.py ]]; then
    echo "bench/bench_rollout.py not present: rollout check skipped"
elif [[ $TINY == 1 ]]; then
    echo "--tiny: bench_rollout.py --device cuda skipped (no GPU); on CPU: bench_rollout.py --device cpu --model tiny"
elif (( left < 60 )); then
    echo "only ${left} s left of ${BUDGET} s: bench_rollout.py skipped (run it in its own call)"
else
    echo "bench_rollout.py --device cuda --model 3b-shaped (reduced, ${left} s left)"
    timeout "$left" "$PY" bench/bench_rollout.py --device cuda --model 3b-shaped --rounds 1 --warmup-rounds 0 \
        --steps 3 --generations 8 --prompts 2 --length 256 --image-size 448 --lora-r 16 --no-record 2>&1 \
        | tee "$OUT/bench_rollout.log" || echo "bench_rollout.py: exit $? (124 = out of time)"
fi

echo
echo "===== summary (${SECONDS} s)"
sed -n '/^GPU check (/,$p' "$OUT/gpu_check.log"
[[ -f $OUT/bench_rollout.log ]] && tail -n 15 "$OUT/bench_rollout.log"
exit "$rc"
