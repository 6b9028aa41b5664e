"""Full two-stage runs on the tiny VLM and the tiny text model: metrics, progress, checkpoints, export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from rarl.metrics import evaluate
from rarl_trainer.weight_digest import WEIGHT_DIGEST_DIR_ENV
from tests.trainer.conftest import REPO, job_doc, run_trainer, write_job


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_run(tmp_path, total_steps: int, stage_names: list[str]) -> dict:
    out = tmp_path / "model"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baseline"]["count"] > 0
    for name in stage_names:
        assert metrics["stages"][name]["start"] and metrics["stages"][name]["end"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    for name in ("REPORT.md", "history.json", "plots/rewards.png", "plots/pred_vs_target.png", "manifest.json"):
        assert (out / name).is_file(), name
    report = (out / "REPORT.md").read_text()
    assert "| baseline |" in report and "tau n=2" in report
    history = json.loads((out / "history.json").read_text())
    assert [h["global_step"] for h in history] == list(range(1, total_steps + 1))
    grpo_rows = [h for h in history if "reward" in h]
    for key in ("rewards/format/mean", "rewards/regression/mean", "rewards/ranking/mean", "reward_std",
                "rarl/mutation_rate", "rarl/spread_before_rmo", "rarl/spread_after_rmo", "rarl/parsed_rate",
                "frac_reward_zero_std", "entropy"):
        assert all(key in h for h in grpo_rows), key
    # The last evaluation's rows, one per query: what the final figures of metrics.json are computed from.
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["final"]["count"]
    assert evaluate(rows)["invalid_rate"] == pytest.approx(metrics["final"]["invalid_rate"])
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["step"] == progress["total_steps"] == total_steps
    assert progress["model_uri"] == str(out) and progress["latest_checkpoint"]
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "ckpt").glob("step-*"))
    assert steps[-1] == total_steps and len(steps) <= 3  # keep: 3
    return metrics


@pytest.mark.slow
def test_two_stage_run_tiny_vlm(tmp_path):
    doc = job_doc(tmp_path, base="builtin:tiny-qwen2.5-vl", modality="image", evalEverySteps=2)
    proc = run_trainer(write_job(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[ranking] step 6/6" in proc.stdout
    metrics = _check_run(tmp_path, 6, ["warmup", "ranking"])
    assert [m["global_step"] for m in metrics["during"]] == [2, 4]  # not at stage ends (evaluated anyway)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "model" / "model")
    assert model.config.model_type == "qwen2_5_vl"
    assert (tmp_path / "model" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_two_stage_run_tiny_lm_with_sft_cold_start(tmp_path):
    stages = [
        {"name": "cold-start", "kind": "sft", "steps": 3, "listSizes": [1, 2]},
        {"name": "ranking", "steps": 3, "listSizes": [1, 2], "rmo": {"probability": 0.5}},
    ]
    proc = run_trainer(write_job(tmp_path, job_doc(tmp_path, stages=stages)), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_run(tmp_path, 6, ["cold-start", "ranking"])

    # The merged export equals base + adapter: same greedy tokens from plain from_pretrained.
    from peft import PeftModel

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model" / "model")
    adapter_cfg = json.loads((tmp_path / "model" / "adapter" / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(adapter_cfg["base_model_name_or_path"])
    with_adapter = PeftModel.from_pretrained(base, tmp_path / "model" / "adapter")
    ids = torch.tensor([[1, 5, 9, 2, 40, 41, 42]])
    with torch.no_grad():
        a = merged(ids).logits
        b = with_adapter(ids).logits
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(tmp_path):
    doc = job_doc(tmp_path, perDeviceBatchSize=4)
    doc["spec"]["stages"] = [{"name": "warmup", "steps": 2, "listSizes": [1]},
                             {"name": "ranking", "steps": 2, "listSizes": [1, 2]}]
    config = write_job(tmp_path, doc)
    digests = tmp_path / "digests"
    cmd = [sys.executable, "-m", "rarl_trainer.entrypoint", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "rarl_trainer", "--config", str(config), "--run-dir", str(tmp_path / "run")]
    env = {**os.environ, WEIGHT_DIGEST_DIR_ENV: str(digests), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0, rank1 = (digests / "rank-0.sha256").read_text(), (digests / "rank-1.sha256").read_text()
    assert rank0 == rank1
    _check_run(tmp_path, 4, ["warmup", "ranking"])
