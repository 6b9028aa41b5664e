"""``rarlctl predict`` on a real export of the tiny VLM (trained here by the real trainer): rows that
``rarlctl eval`` scores to exactly the numbers of the job's own final evaluation; clear errors."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.trainer.conftest import REPO, run_trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    for stage in doc["spec"]["stages"]:
        stage["steps"] = 2
    doc["spec"]["dataset"]["synthetic"].update(trainSize=32, evalSize=8)
    doc["spec"]["grpo"].update(numGenerations=4, perDeviceBatchSize=8, evalQueries=3, evalListSizes=[1, 2])
    doc["spec"]["checkpoint"] = {"uri": str(tmp / "ckpt"), "everySteps": 10}
    doc["spec"]["output"] = {"uri": str(tmp / "model")}
    config = tmp / "job.yaml"
    config.write_text(yaml.safe_dump(doc))
    proc = run_trainer(config, tmp / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, config


def test_predictions_score_to_the_jobs_own_final_evaluation(exported, rarlctl_proc, tmp_path):
    tmp, config = exported
    out = tmp_path / "preds.jsonl"
    r = rarlctl_proc("predict", str(tmp / "model"), "-f", str(config), "--out", str(out), timeout=300)
    assert r.code == 0, r.out + r.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(row["target"]) for row in rows] == [1, 1, 1, 2, 2, 2]
    assert all(set(row) == {"id", "pred", "target", "completion"} and len(row["id"]) == len(row["target"])
               for row in rows)
    assert "wrote 6 rows" in r.err and f"rarlctl eval -p {out}" in r.err
    scored = rarlctl_proc("eval", "-p", str(out), "-o", "json", "--precision", "1")
    assert scored.code == 0, scored.out + scored.err
    final = json.loads((tmp / "model" / "metrics.json").read_text())["final"]
    got = json.loads(scored.out)
    for key, value in final.items():  # the same queries, the same greedy answers on the merged export
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_every_item_of_other_data(exported, rarlctl_proc, tmp_path):
    tmp, config = exported
    from rarl.api.types import TargetSpec
    from rarl_trainer.data import generate_synthetic

    items = generate_synthetic(3, 5, TargetSpec(min=1, max=5, unit="shapes", precision=1), "image", 32, tmp_path,
                               prefix="other")
    manifest = tmp_path / "other.jsonl"
    manifest.write_text("".join(json.dumps({"id": it.id, "image": it.image, "target": it.target}) + "\n"
                                for it in items))
    r = rarlctl_proc("predict", str(tmp / "model"), "-f", str(config), "--data", str(manifest), "--every-item",
                     timeout=300)
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert [row["id"] for row in rows] == [[it.id] for it in items]
    assert [row["target"] for row in rows] == [[it.target] for it in items]


@pytest.mark.parametrize("args, message", [
    (["{model}"], "is a model location: give the job file with -f"),
    (["{tmp}", "-f", "{config}"], "not an exported model (no model/config.json)"),
    (["{model}", "-f", "{config}", "--list-size", "99"], "lists of 99 need at least 99 items"),
    (["{model}", "-f", "{config}", "--data", "{tmp}/nope.jsonl"], "data: "),
    (["no-such-job"], "no-such-job"),
])
def test_bad_input_is_one_clear_line(exported, rarlctl_proc, tmp_path, args, message):
    tmp, config = exported
    fill = {"model": str(tmp / "model"), "tmp": str(tmp_path), "config": str(config)}
    r = rarlctl_proc("predict", *[a.format(**fill) for a in args], timeout=120,
                     env={"RARL_HOME": str(tmp_path / "home")})
    assert r.code in (1, 2), r.out + r.err
    assert message in r.err and "Traceback" not in r.err, r.err
