"""A local job that asks for more GPUs than the machine shows is refused, naming the field (issue 28, row 2).

Before, ``resources.gpusPerNode: 8`` on a machine without GPUs trained on the CPU without a word. No GPU is
needed: ``CUDA_VISIBLE_DEVICES`` sets what the machine shows, as it does for the trainer.
"""

from __future__ import annotations

import pytest
import yaml

from tests.sdk.test_phase_rules import QUICKSTART


def _job(tmp_path, gpus: int):
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["metadata"] = {"name": "gpus"}
    doc["spec"]["resources"] = {"gpusPerNode": gpus}
    doc["spec"]["runPolicy"] = {"suspend": True}  # accepted jobs are created suspended: nothing trains here
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("visible", "gpus", "shows"), [("", 8, "0 (CUDA_VISIBLE_DEVICES=''"),
                                                        ("0", 2, "1 (CUDA_VISIBLE_DEVICES='0'")])
@pytest.mark.parametrize("verb", ["run", "submit"])
def test_more_gpus_than_the_machine_shows_is_refused_by_field(rarlctl, tmp_path, monkeypatch, visible, gpus, shows,
                                                              verb):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    home = tmp_path / "home"
    r = rarlctl("--home", str(home), verb, "-f", str(_job(tmp_path, gpus)))
    assert r.code == 1, (r.out, r.err)  # an invalid spec, as `validate` exits
    text = r.out + r.err
    assert "spec.resources.gpusPerNode" in text and f"asks for {gpus} GPU(s); this machine shows {shows}" in text
    assert "Traceback" not in text
    assert not (home / "jobs" / "gpus").exists()  # nothing was created


def test_as_many_gpus_as_the_machine_shows_is_accepted(rarlctl, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    r = rarlctl("--home", str(tmp_path / "home"), "submit", "-f", str(_job(tmp_path, 2)))
    assert r.code == 0, (r.out, r.err)
    assert "rarljob/gpus submitted" in r.out
