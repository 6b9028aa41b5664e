"""The process-group timeout comes from the spec, and no rank waits in a collective on another's long I/O.

The two-process test runs torchrun with gloo under the shortest timeout the API allows (10 s) and
makes rank-local transfers take longer than that (``$RARL_TEST_TRANSFER_DELAY``, a test seam of
``rarl_trainer.config``): the dataset download (from a real S3 server), the checkpoint restore of
a resumed run and the final upload of the export. The run must succeed anyway.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from rarl_trainer.config import TRANSFER_DELAY_ENV
from tests.trainer.conftest import REPO, job_doc, write_job

TIMEOUT_S = 10  # the API's minimum
DELAY_S = 16  # each delayed transfer: longer than the timeout, with margin


class _Stop(Exception):
    pass


def test_spec_collective_timeout_reaches_init_process_group(tmp_path, monkeypatch):
    import torch
    import torch.distributed as dist

    from rarl_trainer import cli

    doc = job_doc(tmp_path)
    doc["spec"]["runPolicy"] = {"collectiveTimeoutSeconds": 1234}
    config = write_job(tmp_path, doc)
    seen: dict = {}

    def fake_init(*args, **kwargs):
        seen.update(kwargs, args=args)
        raise _Stop

    monkeypatch.setattr(dist, "init_process_group", fake_init)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("RARL_EXIT_CODE_DIR", raising=False)
    with pytest.raises(_Stop):
        cli.main(["--config", str(config), "--run-dir", str(tmp_path / "run")])
    assert seen.get("backend") == "gloo"
    assert seen.get("timeout") == timedelta(seconds=1234)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(config, run_dir, env, resume: str):
    cmd = [sys.executable, "-m", "rarl_trainer.entrypoint", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "rarl_trainer", "--config", str(config),
           "--run-dir", str(run_dir), "--resume", resume]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=REPO, env=env, check=False)


@pytest.fixture
def s3():
    weed = pytest.importorskip("tests.support.seaweedfs")
    try:
        weed.find_weed()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    with weed.seaweedfs() as server:
        server.create_bucket("data")
        yield server, weed


@pytest.mark.slow
def test_slow_rank_local_transfers_outlast_the_collective_timeout(tmp_path, s3):
    server, weed = s3
    rows = [{"id": f"r{i}", "text": "x " * (1 + i % 5), "target": float(1 + i % 5)} for i in range(48)]
    server.client().put_object(Bucket="data", Key="count/train.jsonl",
                               Body="\n".join(json.dumps(r) for r in rows).encode())
    doc = job_doc(tmp_path, perDeviceBatchSize=4, evalQueries=2)
    spec = doc["spec"]
    spec["dataset"] = {"format": "jsonl", "modality": "text", "train": "s3://data/count/train.jsonl",
                       "evalFraction": 0.2, "target": spec["dataset"]["target"]}
    spec["storage"] = {"endpoint": server.endpoint, "pathStyle": True, "region": weed.REGION}
    spec["stages"] = [{"name": "warmup", "steps": 1, "listSizes": [1]}]
    spec["checkpoint"]["everySteps"] = 1
    spec["runPolicy"] = {"collectiveTimeoutSeconds": TIMEOUT_S}
    config = write_job(tmp_path, doc)
    delays = f"download={DELAY_S},restore={DELAY_S},upload={DELAY_S}"
    # Each server has its own port, part of the cache key: the dataset is downloaded (and delayed) here.
    env = {**os.environ, **server.env(), "OMP_NUM_THREADS": "1", TRANSFER_DELAY_ENV: delays}

    first = _torchrun(config, tmp_path / "run", env, "never")
    log = first.stdout[-3000:] + first.stderr[-5000:]
    assert first.returncode == 0, log
    assert "test seam: download delayed" in first.stderr and "test seam: upload delayed" in first.stderr, log
    assert (tmp_path / "model" / "manifest.json").is_file()
    assert (tmp_path / "ckpt" / "step-1" / "manifest.json").is_file()

    # The finished run again: it restores the last checkpoint (delayed) and exports again (delayed).
    (tmp_path / "model" / "manifest.json").unlink()
    second = _torchrun(config, tmp_path / "run", env, "auto")
    log = second.stdout[-3000:] + second.stderr[-5000:]
    assert second.returncode == 0, log
    assert "test seam: restore delayed" in second.stderr and "test seam: upload delayed" in second.stderr, log
    assert "resuming from checkpoint step 1" in second.stdout, log
    assert (tmp_path / "model" / "manifest.json").is_file()


class _SlowUpload:
    """An uploader whose last upload finishes after ``polls`` waits; records each wait's timeout."""

    def __init__(self, polls: int):
        self.polls, self.waits, self.last_completed = polls, [], None

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return len(self.waits) > self.polls


def test_interrupted_exit_tells_the_other_ranks_in_slices_shorter_than_the_timeout(monkeypatch):
    import torch.distributed as dist

    from rarl.api.vocabulary import ExitCode
    from rarl_trainer.checkpointing import StopFlag
    from rarl_trainer.config import DistInfo
    from rarl_trainer.signals import interrupted_exit

    broadcasts: list = []
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objs, src=0: broadcasts.append(list(objs)))
    uploader = _SlowUpload(polls=3)
    code = interrupted_exit(uploader, StopFlag(), DistInfo(0, 2, 0), lambda msg: None, collective_timeout_s=10)
    assert code == ExitCode.INTERRUPTED
    assert len(broadcasts) == 4 and broadcasts[-1] == ["stored"]
    assert all(t is not None and t <= 10 / 4 for t in uploader.waits), uploader.waits


@pytest.mark.slow
def test_a_failed_export_upload_after_the_last_collective_exits_1(tmp_path):
    """Rank 1 has exited 0 when rank 0's upload fails: the launcher still reports the crash."""
    doc = job_doc(tmp_path, perDeviceBatchSize=4, evalQueries=2)
    doc["spec"]["stages"] = [{"name": "warmup", "steps": 1, "listSizes": [1]}]
    (tmp_path / "blocker").write_text("a file where the output folder's parent should be")
    doc["spec"]["output"]["uri"] = str(tmp_path / "blocker" / "model")
    config = write_job(tmp_path, doc)
    proc = _torchrun(config, tmp_path / "run", {**os.environ, "OMP_NUM_THREADS": "1"}, "never")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "NotADirectoryError" in proc.stderr or "Not a directory" in proc.stderr, proc.stderr[-4000:]
