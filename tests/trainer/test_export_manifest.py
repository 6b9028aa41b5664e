"""The export's manifest.json says which run it is: step, stage and the spec's config hash (issue 15, item 7)."""

from __future__ import annotations

import json

import yaml

from rarl.api.reports import RunMetrics
from rarl.api.settings import config_hash
from rarl.api.validation import parse_job
from rarl.storage import download_tree
from rarl_trainer import export
from rarl_trainer.export import RunSummary, export_run
from tests.trainer.conftest import REPO


def test_export_manifest_records_step_stage_and_config_hash(tmp_path, monkeypatch):
    spec = parse_job(yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())).spec

    def fake_save(loaded, dest, merge=True):  # the model itself is not what this test is about
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "model.safetensors").write_bytes(b"weights")
        return {}

    monkeypatch.setattr(export, "save_model", fake_save)
    out = tmp_path / "out"
    history = [{"global_step": s, "reward": 0.1 * s} for s in range(1, 4)]
    uri = export_run(None, tmp_path / "dest", str(out), None, RunMetrics(), history, [],
                     RunSummary("quickstart", spec, [1, 2, 4]))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step"] == spec.total_steps() == 80
    assert manifest["stage"] == spec.stages[-1].name == "ranking-aware"
    assert manifest["config_hash"] == config_hash(spec) and len(manifest["config_hash"]) == 16
    # and the export fetches back whole, verified by that manifest
    download_tree(uri, tmp_path / "back")
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == b"weights"
