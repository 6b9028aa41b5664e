"""The local backend running the real trainer on a tiny built-in model: crash and restart, suspend and
resume, success, model fetch with verification; and ``rarlctl run`` in the foreground."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from rarl import Client, JobNotFound, StorageError
from rarl.backends.local import LocalBackend
from rarl.lifecycle import rfc3339
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def tiny_job(tmp_path: Path, name: str, steps: int = 4) -> dict:
    """The quickstart, shrunk: two stages of ``steps`` steps, a checkpoint every 2 steps, a cheap eval."""
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"]["name"] = name
    for stage in doc["spec"]["stages"]:
        stage["steps"] = steps
    doc["spec"]["dataset"]["synthetic"].update(trainSize=32, evalSize=8)
    doc["spec"]["grpo"].update(evalQueries=2, evalListSizes=[1])
    doc["spec"]["checkpoint"] = {"uri": str(tmp_path / name / "ckpt"), "everySteps": 2, "keep": 2}
    doc["spec"]["output"] = {"uri": str(tmp_path / name / "model")}
    doc["spec"]["runPolicy"] = {"maxRestarts": 1}
    return doc


def state(client: Client, name: str) -> dict:
    return json.loads((client.backend.jobs_dir / name / "state.json").read_text())


def test_crash_restart_suspend_resume_succeed_and_fetch(tmp_path):
    client = Client(LocalBackend(tmp_path / "home"))
    doc = tiny_job(tmp_path, "life")
    doc["spec"]["runPolicy"]["activeDeadlineSeconds"] = 3600
    job = client.submit(doc)
    assert job.status.phase in ("Pending", "Running")

    # a crash (the trainer killed) is retried from the newest checkpoint and uses the restart budget
    wait_for(lambda: (client.get("life").status.step or 0) >= 3, timeout=240, interval=0.5, what="step 3")
    os.kill(state(client, "life")["childPid"], signal.SIGKILL)
    wait_for(lambda: client.get("life").status.restarts == 1, timeout=30, interval=0.2, what="a restart")
    restarted = client.get("life")
    assert restarted.status.attempt == 2
    assert any(c.type == "Restarting" for c in restarted.status.conditions)

    # suspend = SIGTERM: the trainer checkpoints and exits 3; resume continues from that checkpoint
    log2 = client.backend.jobs_dir / "life" / "logs" / "attempt-2.log"
    wait_for(lambda: log2.exists() and "] step " in log2.read_text(), timeout=240, interval=0.5,
             what="attempt 2 training")
    client.suspend("life")
    suspended = client.wait("life", until={"Suspended", "Failed", "Succeeded"}, timeout=180, poll_interval=0.5)
    assert suspended.status.phase in ("Suspended", "Succeeded"), suspended.status.conditions
    if suspended.status.phase == "Suspended":
        assert state(client, "life")["exitCode"] == 3
        assert suspended.status.restarts == 1, "an interruption does not use the budget"
        # suspended for two hours (rewound clock): suspended time must not count against the 1 h deadline
        path = client.backend.jobs_dir / "life" / "state.json"
        st = json.loads(path.read_text())
        st["startTime"] = rfc3339(datetime.now(timezone.utc) - timedelta(hours=2))
        path.write_text(json.dumps(st))
        client.resume("life")
        resumed_at = datetime.fromisoformat(state(client, "life")["startTime"].replace("Z", "+00:00"))
        assert (datetime.now(timezone.utc) - resumed_at).total_seconds() < 60
    done = client.wait("life", timeout=400, poll_interval=0.5)
    assert done.status.phase == "Succeeded", done.status.conditions
    assert done.status.step == done.status.total_steps == 8
    assert done.status.model_uri == str(tmp_path / "life" / "model")
    assert any(line for line in client.logs("life"))

    # fetch: downloaded and verified against the export manifest
    dest = client.fetch_model("life", tmp_path / "fetched")
    assert (dest / "REPORT.md").exists() and (dest / "manifest.json").exists()
    assert (dest / "model" / "config.json").exists()
    # a tampered export is refused, naming the file
    report = tmp_path / "life" / "model" / "REPORT.md"
    report.write_text(report.read_text() + "tampered")
    with pytest.raises(StorageError, match=r"REPORT\.md"):
        client.fetch_model("life", tmp_path / "fetched-again")


def test_bad_data_fails_at_once_with_the_trainers_message(tmp_path):
    client = Client(LocalBackend(tmp_path / "home"))
    doc = tiny_job(tmp_path, "baddata")
    doc["spec"]["dataset"] = {"format": "jsonl", "train": str(tmp_path / "missing.jsonl"),
                              "target": {"min": 0, "max": 10}}
    client.submit(doc)
    done = client.wait("baddata", timeout=180, poll_interval=0.5)
    assert done.status.phase == "Failed" and done.status.restarts == 0
    failed = next(c for c in done.status.conditions if c.type == "Failed")
    assert "missing.jsonl" in failed.message
    assert not failed.message.startswith("trainer exited"), "the message comes from the termination log"
    assert "Traceback" not in failed.message


def _export_equals_final_checkpoint(model_dir: Path, ckpt_step: Path) -> bool:
    """The exported (HF-format) model holds exactly the final checkpoint's tensors, not the base model's."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    exported = AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()
    trained = load_file(ckpt_step / "rarl_weights.safetensors")
    assert set(trained) <= set(exported), sorted(set(trained) - set(exported))[:3]
    return all(torch.equal(exported[k], v) for k, v in trained.items())


def test_a_kill_after_the_final_checkpoint_is_retried_and_exports_the_trained_model(tmp_path):
    client = Client(LocalBackend(tmp_path / "home"))
    doc = tiny_job(tmp_path, "late")
    client.submit(doc)
    final = tmp_path / "late" / "ckpt" / "step-8"
    wait_for((final / "manifest.json").is_file, timeout=300, interval=0.02, what="the final checkpoint")
    os.kill(state(client, "late")["childPid"], signal.SIGKILL)  # before the export has finished
    job = client.wait("late", timeout=300, poll_interval=0.5)
    assert job.status.phase == "Succeeded" and job.status.restarts == 1, job.status
    assert _export_equals_final_checkpoint(tmp_path / "late" / "model" / "model", final)


def test_rarlctl_run_in_the_foreground(rarlctl_proc, tmp_path):
    path = tmp_path / "job.yaml"
    doc = tiny_job(tmp_path, "fg", steps=2)
    path.write_text(yaml.safe_dump(doc))
    home = tmp_path / "home"
    try:
        r = rarlctl_proc("run", "-f", str(path), "--home", str(home), timeout=400)
        assert r.code == 0, r.out + r.err
        # the same job again: nothing to train, said so
        again = rarlctl_proc("run", "-f", str(path), "--home", str(home), timeout=60)
        assert again.code == 0, again.out + again.err
        assert "rarljob/fg already Succeeded: nothing to do" in again.out
        # deleted, then run again: the checkpoints stay, the final one is exported again (and said so)
        LocalBackend(home).delete("fg")
        rerun = rarlctl_proc("run", "-f", str(path), "--home", str(home), timeout=400)
        assert rerun.code == 0, rerun.out + rerun.err
        assert "holds the final checkpoint (step 4 of 4) of an earlier run with these settings" in rerun.out
        assert _export_equals_final_checkpoint(tmp_path / "fg" / "model" / "model", tmp_path / "fg" / "ckpt" / "step-4")
        # a changed training spec under the same name is refused before anything starts
        doc["spec"]["grpo"]["learningRate"] = 0.5
        path.write_text(yaml.safe_dump(doc))
        changed = rarlctl_proc("run", "-f", str(path), "--home", str(home), timeout=60)
        assert changed.code == 2, changed.out + changed.err
        assert "grpo.learningRate: 0.02 -> 0.5" in changed.err and "checkpoint.onSpecChange" in changed.err
    finally:  # never leave a runner behind, whatever happened
        if (home / "jobs" / "fg").exists():
            LocalBackend(home).delete("fg")
    assert "rarljob/fg Succeeded" in r.out
    assert "Evaluation before training and after each stage" in r.out and "BEFORE" in r.out
    assert "AFTER regression-warmup" in r.out and "AFTER ranking-aware" in r.out  # every stage's end, side by side
    assert f"model:   {tmp_path / 'fg' / 'model'}" in r.out
    assert "REPORT.md" in r.out and "training reward (regression-warmup, before RMO)" in r.out
    model = tmp_path / "fg" / "model"
    for name in ("REPORT.md", "metrics.json", "manifest.json", "history.json", "model/config.json"):
        assert (model / name).exists(), name
    assert list((model / "plots").glob("*.png")), "the report's plots"
    assert "| model |" in (model / "REPORT.md").read_text()


def test_ctrl_c_during_run_suspends_and_exits_130(tmp_path):
    """Ctrl-C is not a failure: the job is suspended after a checkpoint, the hint says how to go on."""
    import subprocess

    from tests.conftest import RARLCTL

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job(tmp_path, "ctrlc", steps=50)))
    home = tmp_path / "home"
    proc = subprocess.Popen([str(RARLCTL), "run", "-f", str(path), "--home", str(home)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    client = Client(LocalBackend(home))

    def training() -> bool:
        try:
            return (client.get("ctrlc").status.step or 0) >= 1
        except JobNotFound:  # not written yet
            return False

    try:
        wait_for(training, timeout=300, interval=0.5, what="the first training step")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, out + err
        assert "suspended; continue with: rarlctl run -f" in out
        assert client.get("ctrlc").status.phase == "Suspended"
    finally:
        if proc.poll() is None:
            proc.kill()
        if (home / "jobs" / "ctrlc").exists():
            client.delete("ctrlc")
