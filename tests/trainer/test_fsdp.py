"""FSDP2 sharding (``model.sharding: fsdp``) with real processes: two gloo ranks under torchrun on the CPU.

The FSDP path is the one a GPU run takes (HF Trainer -> accelerate's ``fully_shard`` per decoder
layer, TRL's GRPOTrainer, torch distributed checkpoints); only the device and the collective backend
differ (no GPU here: gloo instead of NCCL, which ``bench/gpu_check.sh`` covers). The jobs are the tiny
text LM, full fine-tuning in float32 unless said, 3 + 3 steps with a checkpoint every 2 steps and at
each stage's end (steps 2, 3, 4, 6).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.trainer.conftest import REPO, job_doc, write_job
from tests.trainer.test_resume_exact import _free_port, _kill_tree, tensor_digest

pytestmark = pytest.mark.slow

WORLD = 2


def fsdp_job(tmp: Path, sharding: str, *, lora: bool = False, beta: float = 0.0, steps: int = 3, **model) -> Path:
    doc = job_doc(tmp, perDeviceBatchSize=4, beta=beta)
    spec = doc["spec"]
    spec["model"]["lora"]["enabled"] = lora
    spec["model"].update(sharding=sharding, **model)
    for stage in spec["stages"]:
        stage["steps"] = steps
    spec["resources"] = {"nodes": WORLD}  # two processes (here: two ranks of one torchrun)
    spec["checkpoint"]["keep"] = 10
    tmp.mkdir(parents=True, exist_ok=True)
    return write_job(tmp, doc)


def torchrun(config: Path, run_dir: Path, env: dict | None = None, nnodes: int = 1, node_rank: int = 0,
             port: int | None = None, nproc: int = WORLD) -> list[str]:
    return [sys.executable, "-m", "rarl_trainer.entrypoint", "--nnodes", str(nnodes), "--node_rank", str(node_rank),
            "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port", str(port or _free_port()),
            "-m", "rarl_trainer", "--config", str(config), "--run-dir", str(run_dir), "--resume", "auto"]


def run_job(config: Path, run_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(torchrun(config, run_dir), capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def dcp_tensors(folder: Path) -> dict:
    """A torch distributed checkpoint folder read whole in this process (every rank's shards put together)."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = folder.parent / f"{folder.name}.pt"
    dcp_to_torch_save(str(folder), str(out))
    return torch.load(out, weights_only=True)


def tensors_digest(tensors: dict) -> str:
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoint_weights(ckpt: Path) -> dict[int, str]:
    """Every complete checkpoint's weights by hash, read from its sharded ``rarl_weights/``."""
    return {int(p.parent.name.split("-")[1]): tensors_digest(dcp_tensors(p))
            for p in sorted(ckpt.glob("step-*/rarl_weights")) if (p.parent / "manifest.json").is_file()}


def base_weights() -> dict:
    from rarl_trainer.models import resolve_model_path

    return load_safetensors(Path(resolve_model_path("builtin:tiny-lm", None)) / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same job under DDP and under FSDP (each rank reporting what it holds), uninterrupted."""
    out = {}
    for sharding in ("none", "fsdp"):
        tmp = tmp_path_factory.mktemp(f"run-{sharding}")
        config = fsdp_job(tmp, sharding)
        proc = run_job(config, tmp / "run", env={"RARL_WEIGHT_DIGEST_DIR": str(tmp / "held")})
        out[sharding] = {"dir": tmp, "config": config, "stdout": proc.stdout}
    return out


def assert_fsdp_matches_ddp(ddp_dir: Path, fsdp_dir: Path, keys=("loss", "reward", "grad_norm")) -> None:
    """Same weights but for rounding, same per-step history: what sharding may change is the order of sums."""
    import torch

    ddp, fsdp = (load_safetensors(d / "model" / "model" / "model.safetensors") for d in (ddp_dir, fsdp_dir))
    base = base_weights()
    assert ddp.keys() == fsdp.keys() == base.keys()

    def norm(pairs) -> float:
        return sum(((x - y).double() ** 2).sum() for x, y in pairs).sqrt().item()

    moved = norm((ddp[k], base[k]) for k in ddp)
    apart = norm((ddp[k], fsdp[k]) for k in ddp)
    assert moved > 0.1  # the AdamW steps moved the weights
    # reduce-scatter vs all-reduce: rounding only (measured: 4.4e-5 of the update's norm; a few entries
    # with near-zero gradients differ most, as AdamW divides by their tiny second moment)
    assert apart <= 1e-3 * moved, (apart, moved)
    close = sum(((ddp[k] - fsdp[k]).abs() <= 1e-6).sum().item() for k in ddp)
    assert close >= 0.999 * sum(t.numel() for t in ddp.values())
    assert all(fsdp[k].dtype == torch.float32 for k in fsdp)
    history = [json.loads((d / "model" / "history.json").read_text()) for d in (ddp_dir, fsdp_dir)]
    assert [h["global_step"] for h in history[1]] == [h["global_step"] for h in history[0]]
    for a, b in zip(*history, strict=True):
        for key in keys:
            if key in a or key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a, b)


def test_fsdp_steps_end_within_a_tight_tolerance_of_ddp(runs):
    history = json.loads((runs["fsdp"]["dir"] / "model" / "history.json").read_text())
    assert [h["global_step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert_fsdp_matches_ddp(runs["none"]["dir"], runs["fsdp"]["dir"])


def test_sft_then_grpo_with_a_kl_reference_model_and_gradient_checkpointing_match_ddp(tmp_path):
    """The SFT stage, TRL's reference model (full fine-tuning, beta > 0: a second model, sharded by TRL) and
    transformers' gradient checkpointing, each under FSDP, against the same job under DDP. The GRPO stage's
    reference holds the SFT policy (the stage-boundary checkpoint's weights), copied shard by shard under FSDP."""
    from rarl_trainer.weights import REFERENCE_DIR, REFERENCE_FILE, WEIGHTS_DIR, WEIGHTS_FILE

    dirs = {}
    for sharding in ("none", "fsdp"):
        tmp = tmp_path / sharding
        config = fsdp_job(tmp, sharding, beta=0.1, steps=2, gradientCheckpointing=True)
        doc = yaml.safe_load(config.read_text())
        doc["spec"]["stages"][0] = {"name": "cold", "kind": "sft", "steps": 2, "listSizes": [1, 2]}
        write_job(tmp, doc)
        run_job(config, tmp / "run")
        dirs[sharding] = tmp
    assert_fsdp_matches_ddp(dirs["none"], dirs["fsdp"])
    ddp, fsdp = dirs["none"] / "ckpt", dirs["fsdp"] / "ckpt"
    assert tensor_digest(ddp / "step-4" / REFERENCE_FILE) == tensor_digest(ddp / "step-2" / WEIGHTS_FILE)
    assert (tensors_digest(dcp_tensors(fsdp / "step-4" / REFERENCE_DIR))
            == tensors_digest(dcp_tensors(fsdp / "step-2" / WEIGHTS_DIR)))


def test_every_rank_holds_only_its_shard(runs):
    held = [json.loads((runs["fsdp"]["dir"] / "held" / f"rank-{r}.shards.json").read_text()) for r in range(WORLD)]
    full = sum(p["full_bytes"] for p in held[0].values())
    for rank, params in enumerate(held):
        local = sum(p["local_bytes"] for p in params.values())
        assert 0.99 * full / WORLD <= local <= 1.01 * full / WORLD, (rank, local, full)  # odd dims split unevenly
        embed = params["model.embed_tokens.weight"]
        assert embed["local"][0] in (embed["full"][0] // 2, -(-embed["full"][0] // 2))
        assert embed["local"][1:] == embed["full"][1:]
    ddp = json.loads((runs["none"]["dir"] / "held" / "rank-0.shards.json").read_text())
    assert sum(p["local_bytes"] for p in ddp.values()) == full  # the control: DDP holds it all

    # the checkpoint is sharded too: one file per rank, each about half of the weights and of AdamW's state
    # (plus the files' own per-tensor records, large beside this tiny model's 0.5 MB)
    step = runs["fsdp"]["dir"] / "ckpt" / "step-6"
    for folder, state in (("rarl_weights", full), ("optimizer_0", 2 * full)):
        sizes = [(step / folder / f"__{r}_0.distcp").stat().st_size for r in range(WORLD)]
        assert all(0.45 * state <= s <= 0.7 * state for s in sizes), (folder, sizes, state)
    assert not (step / "rarl_weights.safetensors").exists() and not (step / "optimizer.pt").exists()


def test_export_loads_with_plain_transformers_and_equals_the_gathered_weights(runs):
    import torch
    from transformers import AutoModelForCausalLM

    out = runs["fsdp"]["dir"]
    final = dcp_tensors(out / "ckpt" / "step-6" / "rarl_weights")
    model = AutoModelForCausalLM.from_pretrained(out / "model" / "model")
    state = model.state_dict()
    assert set(state) == set(final)
    assert all(torch.equal(state[k], final[k]) for k in final)
    ids = torch.tensor([[1, 5, 9, 2]])
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape == (1, 8)


def test_bfloat16_compute_keeps_float32_masters_in_the_checkpoint_and_exports_bfloat16(tmp_path):
    """model.dtype bfloat16, full fine-tuning, sharded: FSDP's mixed precision computes in bf16, AdamW updates
    the float32 shards (what the checkpoint holds), and the export is their bf16 cast."""
    import torch

    config = fsdp_job(tmp_path, "fsdp", steps=1, dtype="bfloat16")
    run_job(config, tmp_path / "run")
    final = dcp_tensors(tmp_path / "ckpt" / "step-2" / "rarl_weights")
    exported = load_safetensors(tmp_path / "model" / "model" / "model.safetensors")
    assert {t.dtype for t in final.values()} == {torch.float32}
    assert set(exported) == set(final)
    assert all(torch.equal(exported[k], final[k].to(torch.bfloat16)) for k in final)


RUN_PRELUDE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import yaml
    from rarl.api.validation import parse_job
    from rarl_trainer.config import DistInfo, init_distributed, stage_plan
    from rarl_trainer.loop import Run

    dist_info = DistInfo.from_env()
    init_distributed(dist_info, 120)
    out = Path(sys.argv[2])
    run = Run(parse_job(yaml.safe_load(open(sys.argv[1]))), out / f"run{dist_info.rank}", resume="never",
              dist=dist_info)
    training = run.set_up()
""")
"""A job's Run set up on every rank of a torchrun launch, as the trainer's entry point sets it up."""

GENERATE = RUN_PRELUDE + textwrap.dedent("""
    from rarl_trainer.evaluation import run_eval
    from rarl_trainer.sharding import is_sharded_model

    table = training.evaluator.table
    def answers():
        return [r["completion"] for r in run_eval(training.loaded, table, 24, 1.0, dist_info.rank, dist_info.world_size,
                                                  equal_shares=True)[1]]
    whole = answers()
    trainer = training.make_trainer(stage_plan(run.spec)[0]).trainer
    trainer.accelerator.prepare(trainer.model)  # what Trainer.train does first: fully_shard per layer
    assert is_sharded_model(training.loaded.model)
    shards = answers()
    if dist_info.is_main:
        (out / "out.json").write_text(json.dumps({"whole": whole, "sharded": shards}))
    run.ctx.leave_process_group()
    from rarl_trainer.cli import exit_process
    exit_process(0, dist_info)  # as the trainer's entry point ends a rank
""")

MIXED = RUN_PRELUDE + textwrap.dedent("""
    trainer = training.make_trainer(stage_plan(run.spec)[0]).trainer
    policy = trainer.accelerator.state.fsdp_plugin.mixed_precision_policy  # what fully_shard gets in train()
    params = {str(p.dtype) for p in training.loaded.model.parameters()}
    if dist_info.is_main:
        (out / "out.json").write_text(json.dumps({"param": str(policy.param_dtype), "reduce": str(policy.reduce_dtype),
                                                  "weights": sorted(params)}))
    run.ctx.leave_process_group()
    from rarl_trainer.cli import exit_process
    exit_process(0, dist_info)
""")


def run_script(text: str, config: Path, tmp: Path) -> dict:
    """``text`` under torchrun (two ranks) on the job ``config``: what rank 0 wrote to ``out.json``."""
    script = tmp / "script.py"
    script.write_text(text)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), str(script), str(config), str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "out.json").read_text())


def test_bfloat16_compute_reduces_gradients_in_float32_into_float32_weights(tmp_path):
    assert run_script(MIXED, fsdp_job(tmp_path, "fsdp", dtype="bfloat16"), tmp_path) == {
        "param": "torch.bfloat16", "reduce": "torch.float32", "weights": ["torch.float32"]}


def test_greedy_generation_on_the_sharded_model_is_token_identical(tmp_path):
    """Ranks get unequal query counts (5 queries on 2 ranks): generate must step them together (synced_gpus)."""
    config = fsdp_job(tmp_path, "fsdp")
    doc = yaml.safe_load(config.read_text())
    doc["spec"]["grpo"].update(evalQueries=5, evalListSizes=[1], maxCompletionLength=24)
    write_job(tmp_path, doc)
    answers = run_script(GENERATE, config, tmp_path)
    assert len(answers["whole"]) == 5 and len(set(answers["whole"])) > 1
    assert answers["sharded"] == answers["whole"]


def kill_at_step(cmd: list[str], ckpt: Path, step: int, log: Path) -> None:
    """Start ``cmd`` (a torchrun node); SIGKILL its whole tree once checkpoint ``step`` is complete."""
    import time

    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    manifest, deadline = ckpt / f"step-{step}" / "manifest.json", time.monotonic() + 300
    while not manifest.is_file():
        assert proc.poll() is None, f"exited ({proc.returncode}) before checkpoint {step}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint {step}: {log.read_text()[-3000:]}"
        time.sleep(0.02)
    _kill_tree(proc.pid)
    proc.wait(60)


@pytest.fixture(scope="module")
def lora_reference(tmp_path_factory):
    """LoRA with the KL reference adapter (beta > 0): its stage 2 starts from an unsharded copy (``Run.unshard``)."""
    tmp = tmp_path_factory.mktemp("lora-reference")
    config = fsdp_job(tmp, "fsdp", lora=True, beta=0.1)
    run_job(config, tmp / "run")
    return {"export": tensor_digest(tmp / "model" / "model" / "model.safetensors"),
            "adapter": tensor_digest(tmp / "model" / "adapter" / "adapter_model.safetensors"),
            "checkpoints": checkpoint_weights(tmp / "ckpt")}


def test_sharded_lora_killed_at_every_checkpoint_resumes_into_the_uninterrupted_weights(lora_reference, tmp_path):
    assert sorted(lora_reference["checkpoints"]) == [2, 3, 4, 6]
    config = fsdp_job(tmp_path, "fsdp", lora=True, beta=0.1)
    for step in (2, 3, 4, 6):
        kill_at_step(torchrun(config, tmp_path / "run"), tmp_path / "ckpt", step, tmp_path / f"kill-{step}.log")
        got = checkpoint_weights(tmp_path / "ckpt")
        assert got == {s: lora_reference["checkpoints"][s] for s in got}, f"after the kill at step {step}"
        shutil.rmtree(tmp_path / "model", ignore_errors=True)
    proc = run_job(config, tmp_path / "run")
    assert "resuming from checkpoint step 6 of 6" in proc.stdout
    assert tensor_digest(tmp_path / "model" / "model" / "model.safetensors") == lora_reference["export"]
    assert tensor_digest(tmp_path / "model" / "adapter" / "adapter_model.safetensors") == lora_reference["adapter"]


def test_sharded_full_finetuning_sigterm_mid_stage_resumes_exactly(runs, tmp_path):
    """SIGTERM once step 4 is stored: the trainer checkpoints mid stage 2 and exits 3; the rerun resumes there."""
    import time

    config = fsdp_job(tmp_path, "fsdp")
    with open(tmp_path / "term.log", "w") as fh:
        proc = subprocess.Popen(torchrun(config, tmp_path / "run"), stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not (tmp_path / "ckpt" / "step-4" / "manifest.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "term.log").read_text()[-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(120) == 3, (tmp_path / "term.log").read_text()[-3000:]
    assert {5} & {int(p.parent.name[5:]) for p in (tmp_path / "ckpt").glob("step-*/manifest.json")}
    proc = run_job(config, tmp_path / "run")
    assert "resuming from checkpoint step 5 of 6" in proc.stdout
    ref = runs["fsdp"]["dir"] / "model" / "model" / "model.safetensors"
    assert tensor_digest(tmp_path / "model" / "model" / "model.safetensors") == tensor_digest(ref)


def test_two_nodes_with_their_own_disks_store_every_shard_and_resume_exactly(runs, tmp_path):
    """Two torchrun "nodes" of one rank each, each with its own run folder: node 1's shards exist on node 1's
    disk only, so node 1 uploads them as a part of each checkpoint and rank 0 lists them in its manifest."""
    config = fsdp_job(tmp_path, "fsdp")

    def nodes(kill_step: int | None) -> None:
        port, procs = _free_port(), []
        for node in (0, 1):
            log = open(tmp_path / f"node-{node}-{kill_step}.log", "w")
            procs.append(subprocess.Popen(torchrun(config, tmp_path / f"node-{node}", nnodes=2, node_rank=node,
                                                   port=port, nproc=1),
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                          env={**os.environ, "OMP_NUM_THREADS": "1"}))
        logs = lambda: "".join((tmp_path / f"node-{n}-{kill_step}.log").read_text()[-2500:] for n in (0, 1))  # noqa: E731
        if kill_step is not None:
            import time

            manifest, deadline = tmp_path / "ckpt" / f"step-{kill_step}" / "manifest.json", time.monotonic() + 300
            while not manifest.is_file():
                assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, logs()
                time.sleep(0.02)
            for p in procs:
                _kill_tree(p.pid)
        codes = [p.wait(300) for p in procs]
        if kill_step is None:
            assert codes == [0, 0], logs()

    nodes(2)
    manifest = json.loads((tmp_path / "ckpt" / "step-2" / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {"rarl_weights/__1_0.distcp", "optimizer_0/__1_0.distcp", "rng_state_1.pth"} <= listed
    assert not list((tmp_path / "node-0").rglob("__1_0.distcp"))  # never on node 0's disk
    nodes(4)
    nodes(None)
    assert "resuming from checkpoint step 4 of 6" in (tmp_path / "node-0-None.log").read_text()
    ref = runs["fsdp"]["dir"] / "model" / "model" / "model.safetensors"  # the same 2 ranks on one node
    assert tensor_digest(tmp_path / "model" / "model" / "model.safetensors") == tensor_digest(ref)


def test_a_stage_end_checkpoint_loads_at_another_world_size_and_mid_stage_is_refused(runs, tmp_path):
    """Two ranks wrote the checkpoints; three resume them. The weights' format reshards, so a stage's last
    checkpoint starts the next stage; mid-stage, the RNG streams and data order are per rank: refused."""
    config = fsdp_job(tmp_path, "fsdp")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(runs["fsdp"]["dir"] / "ckpt" / "step-2", ckpt / "step-2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(torchrun(config, tmp_path / "run", nproc=3), capture_output=True, text=True, timeout=600,
                          cwd=REPO, env=env, check=False)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "written with another number of processes (this run has 3)" in proc.stderr
    shutil.copytree(runs["fsdp"]["dir"] / "ckpt" / "step-3", ckpt / "step-3")
    proc = subprocess.run(torchrun(config, tmp_path / "run", nproc=3), capture_output=True, text=True, timeout=600,
                          cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "resuming from checkpoint step 3 of 6 (the end of stage warmup)" in proc.stdout
    assert sorted(p.name for p in (ckpt / "step-6" / "rarl_weights").glob("*.distcp")) == [
        "__0_0.distcp", "__1_0.distcp", "__2_0.distcp"]


def test_evaluation_shares_are_equal_on_a_sharded_model():
    """A sharded model's forwards are collectives: every rank must run as many queries (a short share repeats
    its last, counted once in the metrics). Unsharded, ranks split the queries without repeats."""
    from rarl_trainer.evaluation import rank_share

    assert [rank_share(5, r, 2) for r in (0, 1)] == [[0, 2, 4], [1, 3]]
    assert [rank_share(5, r, 2, equal=True) for r in (0, 1)] == [[0, 2, 4], [1, 3, 3]]
    assert [rank_share(1, r, 3, equal=True) for r in (0, 1, 2)] == [[0], [0], [0]]
    assert rank_share(0, 0, 2, equal=True) == []


def test_sharding_that_cannot_run_here_is_refused_at_start_naming_the_field(tmp_path):
    """One process has nothing to shard over; cpuOffload moves shards off GPUs this CPU run does not have.
    (cpuOffload itself needs CUDA: its pinned host buffers cannot be made without an accelerator.)"""
    from rarl.api.validation import parse_job
    from rarl_trainer.models import load_model
    from rarl_trainer.sharding import fsdp_training_args

    config = fsdp_job(tmp_path, "fsdp", cpuOffload=True)
    proc = subprocess.run(torchrun(config, tmp_path / "run"), capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.cpuOffload moves the FSDP shards" in proc.stderr and "Traceback" not in proc.stderr
    spec = parse_job(yaml.safe_load(config.read_text())).spec
    fsdp = fsdp_training_args(spec, load_model(spec.model).model)
    assert fsdp["fsdp_config"]["cpu_offload"] is True  # on a GPU it reaches accelerate's plugin
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["Qwen2DecoderLayer"]

    config = fsdp_job(tmp_path, "fsdp")
    proc = subprocess.run(torchrun(config, tmp_path / "run", nproc=1), capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "there is nothing to shard over" in proc.stderr
