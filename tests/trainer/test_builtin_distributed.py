"""Builtin models built inside a process group: every rank with its own cache gets a complete model.

Two gloo processes under torchrun stand for the first ranks of two nodes that do not share a cache
(transformers saves weights on global rank 0 only while a process group exists)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import hashlib, os, sys
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM
    from rarl_trainer.builtin_models import TINY_LM, builtin_path

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    path = builtin_path(TINY_LM, cache_dir=os.path.join(sys.argv[1], f"node{rank}"))
    model = AutoModelForCausalLM.from_pretrained(path)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode()); digest.update(tensor.detach().numpy().tobytes())
    open(os.path.join(sys.argv[1], f"rank{rank}.sha256"), "w").write(digest.hexdigest())
    dist.barrier()
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_rank_other_than_0_builds_a_builtin_model_with_its_weights(tmp_path):
    script = tmp_path / "build.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "sdk"), str(REPO / "trainer"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        assert any((tmp_path / f"node{rank}").rglob("*.safetensors")), f"rank {rank} cached no weights"
    assert (tmp_path / "rank0.sha256").read_text() == (tmp_path / "rank1.sha256").read_text()
