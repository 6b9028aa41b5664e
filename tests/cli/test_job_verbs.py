"""rarlctl job verbs without training: outputs, exit codes and error messages (local backend, no cluster)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RARL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def suspended_file(tmp_path) -> Path:
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["spec"]["runPolicy"] = {"suspend": True}
    doc["metadata"]["labels"] = {"team": "vision"}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_submit_get_list_describe_delete(rarlctl, home, suspended_file):
    r = rarlctl("submit", "-f", str(suspended_file))
    assert r.code == 0 and "rarljob/quickstart submitted (local backend)" in r.out
    r = rarlctl("get", "quickstart")
    assert r.code == 0
    header, row = r.out.strip().splitlines()
    assert header.split() == ["NAME", "PHASE", "STAGE", "STEP", "REWARD", "RESTARTS", "AGE"]
    total = sum(stage["steps"] for stage in yaml.safe_load(QUICKSTART.read_text())["spec"]["stages"])
    assert row.split()[:4] == ["quickstart", "Suspended", "-", f"0/{total}"]
    doc = json.loads(rarlctl("get", "quickstart", "-o", "json").out)
    assert doc["status"]["phase"] == "Suspended" and doc["status"]["totalSteps"] == total
    assert yaml.safe_load(rarlctl("-o", "yaml", "get", "quickstart").out)["metadata"]["name"] == "quickstart"
    listed = json.loads(rarlctl("list", "-o", "json").out)
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"  # as kubectl, and as submit --dry-run
    assert [d["metadata"]["name"] for d in listed["items"]] == ["quickstart"]
    assert json.loads(rarlctl("list", "-l", "team=audio", "-o", "json").out)["items"] == []
    assert yaml.safe_load(rarlctl("list", "-o", "yaml").out)["kind"] == "List"
    r = rarlctl("describe", "quickstart")
    assert r.code == 0 and "Phase:" in r.out and "Suspended" in r.out and "Conditions" in r.out
    described = json.loads(rarlctl("describe", "quickstart", "-o", "json").out)
    assert described["job"]["status"]["phase"] == "Suspended" and described["events"]
    r = rarlctl("delete", "quickstart")
    assert r.code == 0 and "deleted" in r.out
    r = rarlctl("list")
    assert r.code == 0 and "No jobs found" in r.err


def test_wide_output_of_list_and_get_and_its_refusal_elsewhere(rarlctl, home, suspended_file):
    """Issue 28 row 10: kubectl's ``-o wide``. It adds the attempt, ETA, base model and where the checkpoints and
    the model are; a verb without a wide table refuses it rather than printing its narrow one."""
    assert rarlctl("submit", "-f", str(suspended_file)).code == 0
    base = yaml.safe_load(suspended_file.read_text())["spec"]["model"]["base"]
    attempt = str(json.loads(rarlctl("get", "quickstart", "-o", "json").out)["status"].get("attempt", 0))
    for args in (("list", "-o", "wide"), ("-o", "wide", "get", "quickstart")):
        r = rarlctl(*args)
        assert r.code == 0, r.err
        header, row = r.out.strip().splitlines()
        assert header.split()[-8:] == ["ATTEMPT", "ETA", "BASE", "MODEL", "LATEST", "CHECKPOINT", "MODEL", "URI"]
        assert not header.endswith(" ") and "…" not in r.out  # not cut to the terminal's width
        assert row.split()[:2] == ["quickstart", "Suspended"] and row.split()[-5:] == [attempt, "-", base, "-", "-"]
    for args in (("describe", "quickstart", "-o", "wide"), ("-o", "wide", "validate", "-f", str(suspended_file))):
        r = rarlctl(*args)
        assert r.code == 2 and "-o wide: only list and get have a wide table" in r.err, r.err


@pytest.mark.parametrize("verb", ["get", "describe", "logs", "wait", "suspend", "resume", "delete", "fetch"])
def test_unknown_job_exits_1_with_a_clear_message(rarlctl, home, verb, tmp_path):
    args = [verb, "ghost"] + (["--dest", str(tmp_path / "d")] if verb == "fetch" else [])
    r = rarlctl(*args)
    assert r.code == 1
    assert "no local job named 'ghost'" in r.err and "Traceback" not in r.err


def test_bad_files_for_submit_and_run(rarlctl, home, tmp_path):
    r = rarlctl("submit", "-f", str(tmp_path / "missing.yaml"))
    assert r.code == 2 and "no such file" in r.err
    bad = tmp_path / "bad.yaml"
    bad.write_text(re.sub(r"numGenerations: \d+", "numGenerations: 1", QUICKSTART.read_text()))
    for verb in ("submit", "run"):
        r = rarlctl(verb, "-f", str(bad))
        assert r.code == 1 and "spec.grpo.numGenerations" in r.err and "Traceback" not in r.err


def test_bad_selector_is_a_usage_error(rarlctl, home):
    r = rarlctl("list", "-l", "novalue")
    assert r.code == 2 and "expected key=value" in r.err


def test_fetch_before_success_says_why(rarlctl, home, suspended_file, tmp_path):
    rarlctl("submit", "-f", str(suspended_file))
    r = rarlctl("fetch", "quickstart", "--dest", str(tmp_path / "m"))
    assert r.code == 1 and "has no exported model yet (phase Suspended)" in r.err  # 1 as the README says


def test_kubernetes_backend_without_cluster_exits_2(rarlctl, home, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    r = rarlctl("--backend", "kubernetes", "list")
    assert r.code == 2 and "no Kubernetes cluster configured" in r.err


def test_dry_run_prints_valid_kubernetes_manifests(rarlctl, home):
    r = rarlctl("submit", "-f", str(ROOT / "examples" / "utkface.yaml"), "--dry-run")
    assert r.code == 0
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "RARLJob" and "Job" in kinds and "ConfigMap" in kinds and "Service" in kinds
    for doc in docs[1:]:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["spec"]["completions"] == 2 and job["spec"]["completionMode"] == "Indexed"
    as_json = json.loads(rarlctl("submit", "-f", str(ROOT / "examples" / "utkface.yaml"), "--dry-run", "-o", "json").out)
    assert as_json["kind"] == "List" and len(as_json["items"]) == len(docs)
    assert json.loads(rarlctl("list", "-o", "json").out)["items"] == [], "a dry run creates nothing"


def test_reward_trend_compares_first_and_last_steps_per_stage():
    from rarl.cli.render import reward_trend

    history = [{"stage": "warm", "rarl/reward_before_rmo": v} for v in (0.0, 0.0, 0.5, 1.0)]
    history += [{"stage": "rank", "reward": v} for v in (0.2, 0.4)] + [{"loss": 1.0}]
    assert reward_trend(history, window=2) == [("warm", 0.0, 0.75), ("rank", 0.2, 0.4)]
