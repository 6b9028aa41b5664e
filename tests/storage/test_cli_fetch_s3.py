"""``rarlctl fetch`` of a model exported to S3 (real SeaweedFS): progress, verification, path safety, errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rarl.api.validation import parse_job
from rarl.backends.local import LocalBackend
from rarl.storage import upload_tree

ROOT = Path(__file__).resolve().parents[2]


def succeeded_job(home: Path, name: str, model_uri: str, storage: dict) -> None:
    """A local job that finished with its model at ``model_uri`` (as the trainer would leave it)."""
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["output"] = {"uri": model_uri}
    doc["spec"]["storage"] = storage
    doc["spec"]["runPolicy"] = {"suspend": True}
    LocalBackend(home).submit(parse_job(doc))
    state_path = home / "jobs" / name / "state.json"
    state = json.loads(state_path.read_text())
    state.update(phase="Succeeded", modelURI=model_uri)
    state_path.write_text(json.dumps(state))


def model_folder(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text('{"model_type": "qwen2"}')
    (root / "model" / "model.safetensors").write_bytes(b"\x00" * 300_000)
    (root / "REPORT.md").write_text("# report\n")
    return root


def test_fetch_from_s3_verifies_and_refuses_escapes(rarlctl_proc, s3_server, bucket, tmp_path):
    storage = {"endpoint": s3_server.endpoint, "region": s3_server.region, "pathStyle": True}
    home = tmp_path / "home"
    uri = f"s3://{bucket}/models/good"
    from rarl.api.types import StorageSpec

    upload_tree(model_folder(tmp_path / "export"), uri, settings=StorageSpec(**storage))
    succeeded_job(home, "good", uri, storage)
    dest = tmp_path / "fetched"
    r = rarlctl_proc("fetch", "good", "--dest", str(dest), cwd=tmp_path, env={"RARL_HOME": str(home)})
    assert r.code == 0, r.err
    assert f"verified and saved in {dest}" in r.out
    assert (dest / "model" / "model.safetensors").stat().st_size == 300_000

    # an object changed after export: refused, naming the file
    s3_server.client().put_object(Bucket=bucket, Key="models/good/REPORT.md", Body=b"# changed\n")
    r = rarlctl_proc("fetch", "good", "--dest", str(tmp_path / "again"), env={"RARL_HOME": str(home)})
    assert r.code == 2 and "REPORT.md" in r.err and "Traceback" not in r.err

    # a manifest that points outside dest: refused before anything is written there
    evil = f"s3://{bucket}/models/evil"
    manifest = {"format_version": 1, "step": None, "stage": None, "config_hash": None, "created_at": "2026-01-01",
                "files": [{"path": "../escaped.txt", "size": 3, "sha256": "0" * 64}]}
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="models/evil/manifest.json", Body=json.dumps(manifest).encode())
    succeeded_job(home, "evil", evil, storage)
    r = rarlctl_proc("fetch", "evil", "--dest", str(tmp_path / "d" / "inner"), env={"RARL_HOME": str(home)})
    assert r.code == 2 and "Traceback" not in r.err
    assert not (tmp_path / "d" / "escaped.txt").exists()


def test_fetch_with_s3_unreachable_exits_2_naming_the_endpoint(rarlctl_proc, tmp_path):
    home = tmp_path / "home"
    succeeded_job(home, "gone", "s3://models/x", {"endpoint": "http://127.0.0.1:9", "pathStyle": True,
                                                   "region": "us-east-1"})
    r = rarlctl_proc("fetch", "gone", "--dest", str(tmp_path / "d"), env={"RARL_HOME": str(home)})
    assert r.code == 2 and "127.0.0.1:9" in r.err and "Traceback" not in r.err
