#!/bin/sh
# Checks a trainer install: the image build runs it (docker/trainer.Dockerfile, with --image), and it
# is how the Dockerfile's install commands were tried without docker, in a fresh venv with the CPU
# torch wheel:
#   python3 -m venv /tmp/imgvenv
#   /tmp/imgvenv/bin/pip install -c constraints-trainer.txt -c constraints-cpu.txt torch
#   /tmp/imgvenv/bin/pip install -c constraints-trainer.txt ".[trainer]"
#   PATH=/tmp/imgvenv/bin:$PATH sh docker/check_install.sh
# Run from the source tree (it reads constraints-trainer.txt). What it checks:
#   1. every package pinned in constraints-trainer.txt is installed at that version (torch: its
#      public version, so 2.13.0+cpu passes for 2.13.0);
#   2. the trainer imports (TRL's GRPOTrainer/SFTTrainer, PEFT, rarl_trainer's trainers);
#   3. a C compiler and the interpreter's Python.h are present (Triton builds its kernel launchers
#      with them at first launch on CUDA); with --image their absence is an error, and so is a
#      torch without CUDA;
#   4. a two-step GRPO job on the tiny builtin VLM (LoRA) runs through the image's own command
#      (python -m rarl_trainer.entrypoint ... -m rarl_trainer), checkpoints and exports;
#   5. the exported model loads (transformers) with its processor (rarl_trainer.models
#      .load_exported_processor, no torchvision needed) and answers an image prompt.
# Exit code 0 when all pass; the first failure stops it.
set -eu
PYTHON="${PYTHON:-python}"
IMAGE=0
[ "${1:-}" = "--image" ] && IMAGE=1
WORK="${RARL_CHECK_DIR:-/tmp/rarl-check-install}"
rm -rf "$WORK"
mkdir -p "$WORK"
export RARL_CACHE_DIR="$WORK/cache" HF_HUB_OFFLINE=1 RARL_CHECK_IMAGE="$IMAGE" RARL_CHECK_DIR="$WORK"

echo "== 1-3: versions, imports, compiler"
"$PYTHON" - <<'EOF'
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

image = os.environ["RARL_CHECK_IMAGE"] == "1"
print("python", sys.version.split()[0], sys.executable)
bad = []
for line in Path("constraints-trainer.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
    have = md.version(name)
    ok = have.split("+", 1)[0] == want
    print(f"  {name:16s} {have:16s} {'ok' if ok else 'WANTED ' + want}")
    if not ok:
        bad.append(name)
if bad:
    sys.exit(f"check_install: not the pinned versions: {', '.join(bad)}")

import peft  # noqa: F401
import torch
import transformers  # noqa: F401
import trl  # noqa: F401
from trl import GRPOTrainer, SFTTrainer  # noqa: F401

import rarl_trainer.grpo  # noqa: F401
import rarl_trainer.sft  # noqa: F401

print("torch CUDA build:", torch.version.cuda, "| CUDA device visible:", torch.cuda.is_available())
if image and torch.version.cuda is None:
    sys.exit("check_install: torch is a CPU build; the image needs a CUDA build")
try:
    import torchvision  # noqa: F401
    print("torchvision:", torchvision.__version__)
except ImportError:
    print("torchvision: not installed")
cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
header = Path(sysconfig.get_paths()["include"]) / "Python.h"
cc_line = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0] if cc else None
print("C compiler:", cc_line or "none", "| Python.h:", header if header.is_file() else "missing")
if image and (cc is None or not header.is_file()):
    sys.exit("check_install: Triton needs a C compiler and Python.h to build its kernel launchers")
EOF

echo "== 4: a two-step GRPO job on builtin:tiny-qwen2.5-vl through the image's command"
cat > "$WORK/job.yaml" <<EOF
apiVersion: rarl.dev/v1alpha1
kind: RARLJob
metadata: {name: check-install}
spec:
  model: {base: "builtin:tiny-qwen2.5-vl", dtype: float32, lora: {r: 8, alpha: 16}}
  dataset:
    format: synthetic
    modality: image
    synthetic: {trainSize: 32, evalSize: 4, seed: 0, imageSize: 32}
    target: {min: 1, max: 5, unit: shapes, precision: 1}
  reward: {delta: 2.0}
  stages:
    - {name: only, steps: 2, listSizes: [1]}
  grpo: {numGenerations: 4, perDeviceBatchSize: 4, maxCompletionLength: 8, evalListSizes: [1], evalQueries: 2, seed: 0}
  checkpoint: {uri: "$WORK/ckpt", everySteps: 1, keep: 1}
  output: {uri: "$WORK/out"}
EOF
"$PYTHON" -m rarl_trainer.entrypoint --standalone --nproc_per_node=1 \
  -m rarl_trainer --config "$WORK/job.yaml" --resume auto --run-dir "$WORK/run"

echo "== 5: the export loads and answers"
"$PYTHON" - <<'EOF'
import os
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from rarl_trainer.models import load_exported_processor

folder = Path(os.environ["RARL_CHECK_DIR"]) / "out" / "model"
print("export:", sorted(p.name for p in folder.iterdir()))
model = AutoModelForImageTextToText.from_pretrained(folder)
processor = load_exported_processor(folder)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many shapes?"}]}]
text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(text=[text], images=[Image.new("RGB", (32, 32), "white")], return_tensors="pt")
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
print(type(processor).__name__, "| pixel_values", tuple(inputs["pixel_values"].shape),
      "| generated", out.shape[1] - inputs["input_ids"].shape[1], "tokens")
EOF
rm -rf "$WORK"
echo "check_install: OK"
