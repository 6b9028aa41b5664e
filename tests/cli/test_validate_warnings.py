"""``rarlctl validate`` warns about local paths that do not exist (they may exist where the job runs).

Also: the rules the trainer used to apply only at start are refused by validate (issue 15, item 5).
"""

from __future__ import annotations

import copy
import json

import yaml

from tests.api.test_types import MINIMAL


def _write(tmp_path, **spec_changes):
    doc = copy.deepcopy(MINIMAL)
    for key, value in spec_changes.items():
        doc["spec"][key] = value
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_missing_local_dataset_is_a_warning_and_exit_0(tmp_path, rarlctl):
    path = _write(tmp_path, dataset={"format": "utkface", "train": "no-such-folder", "eval": "/nowhere/eval"})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 0, res
    lines = res.out.splitlines()
    assert f"{path}: OK RARLJob/minimal" in lines
    assert any(line.startswith(f"{path}: warning: spec.dataset.train: no-such-folder does not exist") for line in lines)
    assert any("warning: spec.dataset.eval: /nowhere/eval does not exist" in line for line in lines)


def test_relative_paths_are_read_from_the_current_directory_as_submit_does(tmp_path, rarlctl, monkeypatch):
    (tmp_path / "here" / "faces").mkdir(parents=True)
    (tmp_path / "files").mkdir()
    monkeypatch.chdir(tmp_path / "here")  # submit and run resolve relative locations here, not in files/
    path = _write(tmp_path / "files", dataset={"format": "utkface", "train": "faces",
                                               "images": "file://" + str(tmp_path)})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 0 and "warning" not in res.out, res
    monkeypatch.chdir(tmp_path / "files")
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 0 and "warning: spec.dataset.train: faces does not exist here" in res.out, res


def test_s3_builtin_and_hub_ids_are_not_paths(tmp_path, rarlctl):
    path = _write(tmp_path, model={"base": "Qwen/Qwen2.5-VL-3B-Instruct"},
                  dataset={"format": "jsonl", "train": "builtin:afinn-en-165", "eval": "s3://data/eval.jsonl",
                           "modality": "text"})
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["model"]["base"] = "builtin:tiny-lm"
    path.write_text(yaml.safe_dump(doc))
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 0 and "warning" not in res.out, res
    hub = _write(tmp_path, model={"base": "Qwen/Qwen2.5-VL-3B-Instruct"})
    res = rarlctl("validate", "-f", str(hub))
    assert res.code == 0 and "warning" not in res.out, res


def test_a_model_folder_that_does_not_exist_is_a_warning(tmp_path, rarlctl):
    path = _write(tmp_path, model={"base": "./models/mine"})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 0, res
    assert "warning: spec.model.base: ./models/mine does not exist" in res.out


def test_json_output_lists_warnings(tmp_path, rarlctl):
    path = _write(tmp_path, dataset={"format": "utkface", "train": "missing"})
    res = rarlctl("validate", "-f", str(path), "-o", "json")
    assert res.code == 0, res
    [result] = json.loads(res.out)
    assert result["valid"] is True and result["problems"] == []
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith("spec.dataset.train: missing")


def test_text_items_from_an_image_reader_fail_validate(tmp_path, rarlctl):
    path = _write(tmp_path, dataset={"format": "ava", "train": "s3://data/ava", "modality": "text"})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 1, res
    assert f"{path}: spec.dataset.modality: modality 'text' needs format 'jsonl' or 'synthetic'" in res.out
    assert "OK" not in res.out


def test_duplicate_stage_names_name_the_stage(tmp_path, rarlctl):
    path = _write(tmp_path, stages=[{"name": "a", "steps": 1}, {"name": "a", "steps": 2}])
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 1, res
    assert f"{path}: spec.stages[1].name: duplicate stage name 'a'" in res.out


def test_a_batch_the_trainer_would_refuse_fails_validate(tmp_path, rarlctl):
    """perDeviceBatchSize 3 with numGenerations 8 used to pass validate and fail after the baseline evaluation."""
    path = _write(tmp_path, grpo={"perDeviceBatchSize": 3, "numGenerations": 8})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 1 and "OK" not in res.out, res
    assert f"{path}: spec.grpo.perDeviceBatchSize: " in res.out and "numGenerations (8)" in res.out
    # the world size comes from spec.resources: 4 per process x 2 GPUs = one group of 8
    path = _write(tmp_path, grpo={"perDeviceBatchSize": 4, "numGenerations": 8}, resources={"gpusPerNode": 2})
    assert rarlctl("validate", "-f", str(path)).code == 0
    path = _write(tmp_path, grpo={"perDeviceBatchSize": 4, "numGenerations": 8}, resources={"gpusPerNode": 3})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 1 and "x processes (3) = 12 completions per step" in res.out, res


def test_several_nodes_warn_on_the_local_backend_and_pass_for_a_cluster(tmp_path, rarlctl):
    """Before, `resources.nodes: 4` validated and only `run` refused it (issue 28, row 7)."""
    path = _write(tmp_path, resources={"nodes": 4})
    local = rarlctl("validate", "-f", str(path))
    assert local.code == 0 and f"{path}: warning: spec.resources.nodes: the local backend runs one node; got 4" \
        in local.out and "`rarlctl run` and `submit` refuse it here" in local.out
    cluster = rarlctl("--backend", "kubernetes", "validate", "-f", str(path))
    assert cluster.code == 0 and "warning" not in cluster.out


def test_a_ttl_is_said_to_be_the_operators_on_the_local_backend(tmp_path, rarlctl):
    """Issue 30: both backends run one lifecycle, but only the operator deletes a finished job after its TTL."""
    path = _write(tmp_path, runPolicy={"ttlSecondsAfterFinished": 60})
    res = rarlctl("validate", "-f", str(path))
    assert res.code == 0, res
    assert (f"{path}: warning: spec.runPolicy.ttlSecondsAfterFinished: 60 is the operator's; the local backend "
            "keeps a finished job until `rarlctl delete`") in res.out.splitlines()
    res = rarlctl("--backend", "kubernetes", "validate", "-f", str(path))
    assert "ttlSecondsAfterFinished" not in res.out
