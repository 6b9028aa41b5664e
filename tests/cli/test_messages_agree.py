"""Exit codes and messages that agree across verbs, and name what is wrong (issue 28, row 9)."""

from __future__ import annotations

import yaml

from tests.sdk.test_phase_rules import QUICKSTART


def test_a_missing_job_file_is_named(rarlctl, tmp_path):
    for verb in ("run", "submit"):
        r = rarlctl(verb, "-f", str(tmp_path / "nofile.yaml"))
        assert r.code == 2 and f"{tmp_path / 'nofile.yaml'}: no such file" in r.err, (verb, r)


def test_a_home_that_is_a_file_or_missing_is_an_error_not_an_empty_list(rarlctl, tmp_path):
    (tmp_path / "afile").write_text("x")
    r = rarlctl("--home", str(tmp_path / "afile"), "list")
    assert r.code == 2 and "is a file" in r.err and "No jobs found" not in r.out
    r = rarlctl("--home", str(tmp_path / "typo"), "list")
    assert r.code == 2 and "no such folder" in r.err and "No jobs found" not in r.out
    (tmp_path / "empty").mkdir()
    r = rarlctl("--home", str(tmp_path / "empty"), "list")
    assert r.code == 0 and "No jobs found." in r.out + r.err  # an existing home without jobs is just empty


def test_fetch_and_predict_agree_on_a_job_without_a_model(rarlctl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["spec"]["runPolicy"] = {"suspend": True}  # created suspended: nothing trains, no model
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    home = str(tmp_path / "home")
    assert rarlctl("--home", home, "submit", "-f", "job.yaml").code == 0
    fetch = rarlctl("--home", home, "fetch", "quickstart", "--dest", "m")
    predict = rarlctl("--home", home, "predict", "quickstart")
    assert fetch.code == predict.code == 1, (fetch, predict)
    assert fetch.err == predict.err and "has no exported model yet (phase Suspended)" in fetch.err


def test_predict_of_a_missing_model_folder_says_so(rarlctl, tmp_path):
    (tmp_path / "job.yaml").write_text(QUICKSTART.read_text())
    for source in ("/nonexistent/model", "./nothere"):
        r = rarlctl("--home", str(tmp_path / "home"), "predict", source, "-f", str(tmp_path / "job.yaml"))
        assert r.code == 2 and f"{source}: no such model folder" in r.err and "no local job named" not in r.err, r


def test_every_item_refuses_a_query_count_it_would_ignore(rarlctl, tmp_path):
    """``predict --every-item --queries 1`` ignored --queries and predicted the whole split (found running it)."""
    (tmp_path / "job.yaml").write_text(QUICKSTART.read_text())
    r = rarlctl("--home", str(tmp_path / "home"), "predict", "/nonexistent/model", "-f", str(tmp_path / "job.yaml"),
                "--every-item", "--queries", "1")
    assert r.code == 2 and "--every-item asks about every item once: drop --queries" in r.err, r
