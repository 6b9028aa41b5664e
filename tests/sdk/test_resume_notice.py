"""What a start does with an earlier run's checkpoints: training settings, their diff, the CLI's word.

Checkpoints here are real store folders with real manifests (no training: the trainer side is
tests/trainer/test_resume_exact.py).
"""

from __future__ import annotations

import yaml

from rarl.api.settings import changed_settings, config_hash, training_settings
from rarl.api.validation import parse_job
from rarl.resume import earlier_run, notice, refusal
from rarl.storage import CheckpointStore
from tests.sdk.test_local_training import ROOT


def _job(tmp_path, **checkpoint):
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["spec"]["checkpoint"] = {"uri": str(tmp_path / "ckpt"), **checkpoint}
    doc["spec"]["output"] = {"uri": str(tmp_path / "model")}
    return doc


def _checkpoint(tmp_path, doc, step: int) -> None:
    job = parse_job(doc)
    folder = tmp_path / "local"
    folder.mkdir(exist_ok=True)
    (folder / "rarl_state.json").write_text("{}")
    CheckpointStore(job.spec.checkpoint.uri).save(folder, step, config_hash=config_hash(job.spec),
                                                  extra={"training_settings": training_settings(job.spec, True)})


def test_only_training_fields_change_the_hash_and_diffs_name_them():
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    base = parse_job(doc)
    other = yaml.safe_load(yaml.safe_dump(doc))
    other["spec"]["resources"] = {"gpusPerNode": 8, "nodes": 2}
    other["spec"]["output"] = {"uri": "s3://elsewhere/model"}
    other["spec"]["grpo"]["rolloutEngine"] = "trl"
    assert config_hash(parse_job(other).spec) == config_hash(base.spec)
    other["spec"]["grpo"]["learningRate"] = 0.1
    other["spec"]["stages"][1]["steps"] = 7
    changes = changed_settings(training_settings(base.spec, True), training_settings(parse_job(other).spec, True))
    assert changes == ["grpo.learningRate: 0.02 -> 0.1", "stages[1].steps: 40 -> 7"]
    assert config_hash(parse_job(other).spec) != config_hash(base.spec)


def test_no_checkpoint_nothing_to_say(tmp_path):
    assert earlier_run(parse_job(_job(tmp_path))) is None


def test_unfinished_and_finished_earlier_runs_with_the_same_settings(tmp_path):
    doc = _job(tmp_path)
    _checkpoint(tmp_path, doc, 30)
    job = parse_job(doc)
    earlier = earlier_run(job)
    assert earlier.changes is None and not earlier.finished and refusal(job, earlier) is None
    assert notice(job, earlier).startswith("resuming from step 30 of 80 of an earlier run")
    _checkpoint(tmp_path, doc, 80)
    assert "final checkpoint (step 80 of 80)" in notice(job, earlier_run(job))


def test_changed_settings_refused_or_allowed_as_onspecchange_says(tmp_path):
    doc = _job(tmp_path)
    _checkpoint(tmp_path, doc, 30)
    doc["spec"]["reward"]["delta"] = 1.0
    job = parse_job(doc)
    earlier = earlier_run(job)
    assert earlier.changes == ("reward.delta: 2.0 -> 1.0",)
    message = refusal(job, earlier)
    assert "reward.delta: 2.0 -> 1.0" in message and "new job name or checkpoint.uri" in message
    for policy, said in (("resume", "resuming from step 30 of 80"), ("restart", "deleting it and training from step 0")):
        job = parse_job({**doc, "spec": {**doc["spec"], "checkpoint": {**doc["spec"]["checkpoint"],
                                                                          "onSpecChange": policy}}})
        assert refusal(job, earlier_run(job)) is None and said in notice(job, earlier_run(job))


def test_rarlctl_submit_refuses_a_changed_spec_before_it_starts(rarlctl_proc, tmp_path):
    doc = _job(tmp_path)
    _checkpoint(tmp_path, doc, 30)
    doc["spec"]["grpo"]["numGenerations"] = 4
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = rarlctl_proc("submit", "-f", str(path), env={"RARL_HOME": str(tmp_path / "home")})
    assert r.code == 2, r.out + r.err
    assert "grpo.numGenerations: 8 -> 4" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "home" / "jobs" / "quickstart").exists()


def test_the_sdk_warns_what_the_cli_prints_when_submit_continues_an_earlier_run(tmp_path):
    """Issue 28 row 11: `client.submit` re-exported a finished job without the notice `rarlctl` prints."""
    import warnings

    from rarl import Client, ResumeNotice
    from rarl.backends.local import LocalBackend

    doc = _job(tmp_path)
    doc["spec"]["runPolicy"] = {"suspend": True}  # nothing trains
    _checkpoint(tmp_path, doc, 80)  # the earlier run's final checkpoint: this start re-exports it
    client = Client(LocalBackend(tmp_path / "home"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.submit(doc)
    said = [str(w.message) for w in caught if issubclass(w.category, ResumeNotice)]
    assert said == [notice(parse_job(doc), earlier_run(parse_job(doc)))] and "80" in said[0], said
