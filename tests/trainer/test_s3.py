"""Checkpoints and the export go through rarl.storage to a real S3 server (SeaweedFS), resume included."""

from __future__ import annotations

import json

import pytest

from tests.trainer.conftest import job_doc, run_trainer, write_job

weed = pytest.importorskip("tests.support.seaweedfs")


@pytest.fixture
def s3():
    try:
        weed.find_weed()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    with weed.seaweedfs() as server:
        server.create_bucket("ckpt")
        server.create_bucket("models")
        yield server


@pytest.mark.slow
def test_run_and_resume_on_s3(tmp_path, s3):
    doc = job_doc(tmp_path)
    doc["spec"]["checkpoint"]["uri"] = "s3://ckpt/jobs/t"
    doc["spec"]["output"]["uri"] = "s3://models/jobs/t"
    doc["spec"]["storage"] = {"endpoint": s3.endpoint, "pathStyle": True, "region": weed.REGION}
    config = write_job(tmp_path, doc)
    proc = run_trainer(config, tmp_path / "run", env=s3.env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = s3.client()
    ckpt_keys = {o["Key"] for o in client.list_objects_v2(Bucket="ckpt", Prefix="jobs/t/")["Contents"]}
    assert "jobs/t/step-6/manifest.json" in ckpt_keys and "jobs/t/step-6/rarl_state.json" in ckpt_keys
    model_keys = {o["Key"] for o in client.list_objects_v2(Bucket="models", Prefix="jobs/t/")["Contents"]}
    for key in ("manifest.json", "model/model.safetensors", "adapter/adapter_config.json", "metrics.json",
                "REPORT.md", "plots/rewards.png"):
        assert f"jobs/t/{key}" in model_keys, key
    metrics = json.loads(client.get_object(Bucket="models", Key="jobs/t/metrics.json")["Body"].read())
    assert metrics["stages"]["ranking"]["end"]
    assert s3.secret_key not in proc.stdout + proc.stderr

    # A restart finds the finished run's last checkpoint on S3 and goes straight to the export.
    proc = run_trainer(config, tmp_path / "run2", env=s3.env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from checkpoint step 6" in proc.stdout
    assert "[warmup] step" not in proc.stdout and "[ranking] step" not in proc.stdout
