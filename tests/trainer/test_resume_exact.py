"""Exact resume, compared by weight hashes against one uninterrupted run of the same job.

The job is the quickstart (tiny Qwen2.5-VL, real TRL) shrunk to 4 + 4 steps with a checkpoint
every 2 steps, so the kill points are: step 2 (mid stage 1), step 4 (the stage-boundary
checkpoint), step 6 (mid stage 2) and step 8 (the final checkpoint, before the export ends).
Every kill is a real signal to the trainer process, sent as soon as that checkpoint's manifest
exists (the trainer may be a little further by then: it resumes from the newest complete one).
Both variants use ``beta > 0``, so stage 2 trains against a KL reference a resume must restore too:
with LoRA TRL's frozen "ref" adapter, with full fine-tuning the reference model holding stage 1's
final policy (``weights.REFERENCE_FILE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.trainer.conftest import REPO, run_trainer, trainer_cmd

pytestmark = pytest.mark.slow

STEPS_PER_STAGE = 4
KILL_POINTS = (2, 4, 6, 8)
MODEL_CARD = Path("adapter") / "README.md"


def exact_job(tmp: Path, lora: bool) -> dict:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    spec = doc["spec"]
    for stage in spec["stages"]:
        stage["steps"] = STEPS_PER_STAGE
        stage["rmo"]["probability"] = 0.5  # RMO fires often: its random stream must continue exactly
    spec["dataset"]["synthetic"].update(trainSize=32, evalSize=8)
    spec["grpo"].update(numGenerations=4, perDeviceBatchSize=8, evalQueries=2, evalListSizes=[1, 2])
    spec["grpo"]["beta"] = 0.1
    if lora:
        spec["model"]["lora"] = {"enabled": True, "r": 8}
        spec["grpo"]["learningRate"] = 5e-3
    spec["checkpoint"] = {"uri": str(tmp / "ckpt"), "everySteps": 2, "keep": 10}
    spec["output"] = {"uri": str(tmp / "model")}
    return doc


def write(tmp: Path, doc: dict) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tensor_digest(path: Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (independent of the file layout)."""
    import torch
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as fh:
        for name in sorted(fh.keys()):
            t = fh.get_tensor(name)
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_digests(out: Path) -> dict[str, str]:
    files = {"model": out / "model" / "model.safetensors", "adapter": out / "adapter" / "adapter_model.safetensors"}
    return {k: tensor_digest(p) for k, p in files.items() if p.is_file()}


def checkpoint_digests(ckpt: Path) -> dict[int, str]:
    return {int(p.parent.name.split("-")[1]): tensor_digest(p) for p in ckpt.glob("step-*/rarl_weights.safetensors")
            if (p.parent / "manifest.json").is_file()}


def kill_at(cmd: list[str], ckpt: Path, step: int, sig: int, log: Path, timeout: float = 300) -> int:
    """Start ``cmd``; send ``sig`` to its process group once ``step-<step>``'s manifest exists; its exit code."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ),
                                start_new_session=True)
    manifest, deadline = ckpt / f"step-{step}" / "manifest.json", time.monotonic() + timeout
    while not manifest.is_file():
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before checkpoint {step}: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint {step} in {timeout} s: {log.read_text()[-3000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, sig)
    return proc.wait(120)


@pytest.fixture(scope="module", params=["full", "lora"])
def reference(request, tmp_path_factory):
    """One uninterrupted run per variant: its export and every checkpoint's weights, by hash."""
    lora = request.param == "lora"
    tmp = tmp_path_factory.mktemp(f"reference-{request.param}")
    config = write(tmp, exact_job(tmp, lora))
    proc = run_trainer(config, tmp / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"lora": lora, "dir": tmp, "export": export_digests(tmp / "model"),
            "checkpoints": checkpoint_digests(tmp / "ckpt")}


def test_reference_checkpoints_and_export_are_complete(reference):
    assert sorted(reference["checkpoints"]) == list(KILL_POINTS)
    assert set(reference["export"]) == ({"model", "adapter"} if reference["lora"] else {"model"})


def test_killed_at_every_kill_point_resumes_into_the_uninterrupted_weights(reference, tmp_path):
    """One attempt per kill point, each resuming the last: SIGKILL at steps 2 and 4 (mid stage 1, the stage
    boundary), SIGTERM at 6 (mid stage 2: the trainer checkpoints where it is and exits 3), SIGKILL at 8 (the
    final checkpoint, before the export ends). Then the newest checkpoint is damaged and a manifest-less folder
    left above it: the last attempt falls back to the newest good one. Every checkpoint any attempt wrote, and
    the export, hold the uninterrupted run's weights; the first attempt trains from step 0, so this also shows
    that two runs with one seed agree."""
    config = write(tmp_path, exact_job(tmp_path, reference["lora"]))
    ckpt, run_dir = tmp_path / "ckpt", tmp_path / "run"
    cmd = trainer_cmd(config, run_dir, "--resume", "auto")
    interrupted: set[int] = set()  # a SIGTERM checkpoint lands where the trainer was: maybe not a scheduled step
    for step in KILL_POINTS:
        sig = signal.SIGTERM if step == 6 else signal.SIGKILL
        log = tmp_path / f"kill-{step}.log"
        code = kill_at(cmd, ckpt, step, sig, log)
        shutil.rmtree(tmp_path / "model", ignore_errors=True)  # whatever the attempt exported is not evidence
        got = checkpoint_digests(ckpt)
        if sig == signal.SIGTERM:
            text = log.read_text()
            assert code == 3, text[-3000:]
            assert "interrupted (SIGTERM) after checkpoint" in text and "Traceback" not in text, text[-3000:]
            newest = max(got)
            assert json.loads((run_dir / "progress.json").read_text())["latest_checkpoint"].endswith(f"step-{newest}")
            interrupted = set(got) - set(KILL_POINTS)  # before it, only scheduled ones exist (checked below)
        else:
            assert code == -signal.SIGKILL
        # every checkpoint written so far, by any attempt, holds the uninterrupted run's weights
        assert {s: got[s] for s in got if s not in interrupted} == {s: reference["checkpoints"][s] for s in got
                                                                   if s not in interrupted}, f"after step {step}"
        assert set(got) - interrupted <= set(KILL_POINTS), sorted(got)

    # the newest checkpoint damaged (its state file no longer matches the manifest's sha256), and a newer
    # folder without a manifest (an upload that never finished)
    *_, fallback, last = sorted(checkpoint_digests(ckpt))
    with open(ckpt / f"step-{last}" / "rarl_state.json", "a") as fh:
        fh.write(" ")
    (ckpt / "step-99").mkdir()
    (ckpt / "step-99" / "optimizer.pt").write_bytes(b"partial upload")
    proc = run_trainer(config, run_dir, "--resume", "auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is damaged" in proc.stderr and f"step-{last}" in proc.stderr, proc.stderr[-3000:]
    assert f"resuming from checkpoint step {fallback} of 8" in proc.stdout and "] step 1/8" not in proc.stdout
    assert export_digests(tmp_path / "model") == reference["export"]
    assert checkpoint_digests(ckpt)[8] == reference["checkpoints"][8]  # the damaged final one written again
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert [h["global_step"] for h in history] == list(range(1, 9))
    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["step"] == 8 and progress["model_uri"]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["baseline"] and all(stage["end"] for stage in metrics["stages"].values()), metrics

    # A finished job run again re-exports the same files (nothing trains: the final checkpoint is complete), but
    # for PEFT's model card (adapter/README.md), whose tags name the trainers built in the exporting process.
    def exported_files() -> dict[Path, bytes]:
        return {p.relative_to(tmp_path / "model"): p.read_bytes() for p in (tmp_path / "model").rglob("*")
                if p.is_file() and p.name != "manifest.json" and p.relative_to(tmp_path / "model") != MODEL_CARD}

    first = exported_files()
    proc = run_trainer(config, run_dir, "--resume", "auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from checkpoint step 8 of 8 (the end of stage" in proc.stdout
    assert "] step " not in proc.stdout
    again = exported_files()
    assert again.keys() == first.keys() and all(again[k] == first[k] for k in first), \
        [str(k) for k in first if again.get(k) != first[k]]


# --------------------------------------------------------------------------- spec changes


@pytest.mark.parametrize("reference", ["lora"], indirect=True)  # the settings check is the same for both
def test_changed_training_settings_are_refused_and_the_opt_ins_work(reference, tmp_path):
    """A finished reference's checkpoints, then the same job with another learning rate."""
    shutil.copytree(reference["dir"] / "ckpt", tmp_path / "ckpt")
    doc = exact_job(tmp_path, reference["lora"])
    old_lr = doc["spec"]["grpo"]["learningRate"]

    # a non-training field changed: resumes (and re-exports the same model)
    doc["spec"]["resources"] = {"requests": {"cpu": "3", "memory": "5Gi"}, "priorityClassName": "high"}
    proc = run_trainer(write(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from checkpoint step 8 of 8" in proc.stdout
    assert export_digests(tmp_path / "model") == reference["export"]

    doc["spec"]["grpo"]["learningRate"] = old_lr * 2
    proc = run_trainer(write(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"grpo.learningRate: {old_lr} -> {old_lr * 2}" in proc.stderr
    assert "new job name or checkpoint.uri" in proc.stderr and "checkpoint.onSpecChange" in proc.stderr
    assert "Traceback" not in proc.stderr

    doc["spec"]["checkpoint"]["onSpecChange"] = "resume"
    proc = run_trainer(write(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing from it (checkpoint.onSpecChange: resume)" in proc.stderr
    assert "resuming from checkpoint step 8 of 8" in proc.stdout

    doc["spec"]["checkpoint"]["onSpecChange"] = "restart"
    doc["spec"]["stages"][1]["steps"] = 2  # keep the fresh run short
    proc = run_trainer(write(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deleted its 4 checkpoint folder(s) and starting from step 0" in proc.stderr
    assert "[regression-warmup] step 1/6" in proc.stdout
    assert sorted(checkpoint_digests(tmp_path / "ckpt")) == [2, 4, 6]
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert [h["global_step"] for h in history] == list(range(1, 7))


# --------------------------------------------------------------------------- two nodes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(pid: int) -> None:
    import psutil

    parent = psutil.Process(pid)
    for proc in [*parent.children(recursive=True), parent]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _two_nodes(config: Path, tmp: Path, ckpt: Path, kill_step: int | None) -> list[int]:
    """Two torchrun "nodes" of one process each, each with its own run folder (its own local disk)."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs, logs = [], []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "rarl_trainer.entrypoint", "--nnodes", "2", "--node_rank", str(node),
               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "rarl_trainer", "--config", str(config), "--run-dir", str(tmp / f"node-{node}"),
               "--resume", "auto"]
        log = tmp / f"node-{node}-{kill_step}.log"
        logs.append(log)
        procs.append(subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                      start_new_session=True))
    if kill_step is not None:
        manifest, deadline = ckpt / f"step-{kill_step}" / "manifest.json", time.monotonic() + 400
        while not manifest.is_file():
            assert all(p.poll() is None for p in procs), logs[0].read_text()[-3000:] + logs[1].read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.02)
        for p in procs:  # the whole "node": torchrun's workers run in sessions of their own
            _kill_tree(p.pid)
    codes = [p.wait(400) for p in procs]
    if kill_step is None:
        assert codes == [0, 0], logs[0].read_text()[-3000:] + logs[1].read_text()[-3000:]
    return codes


def test_two_nodes_killed_at_the_stage_boundary_and_mid_stage_resume_exactly(tmp_path):
    """Node 1's RNG file is on node 1's disk only: rank 0 must carry it into the uploaded checkpoint."""
    ref = tmp_path / "ref"
    config = write(ref, exact_job(ref, lora=True))
    _two_nodes(config, ref, ref / "ckpt", None)
    expected = export_digests(ref / "model")
    assert (ref / "ckpt" / "step-6" / "rng_state_1.pth").is_file()

    work = tmp_path / "work"
    config = write(work, exact_job(work, lora=True))
    for step in (4, 6):
        _two_nodes(config, work, work / "ckpt", step)
    _two_nodes(config, work, work / "ckpt", None)
    assert "resuming from checkpoint step 6 of 8" in (work / "node-0-None.log").read_text()
    assert export_digests(work / "model") == expected
