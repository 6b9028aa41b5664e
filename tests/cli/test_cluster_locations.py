"""A job for Kubernetes whose checkpoints or model would live only inside its pods is refused (issue 28, row 4).

A trainer pod's disk is an emptyDir: a local ``checkpoint.uri`` there is gone before a retry could resume, and the
exported model with it. ``validate --backend kubernetes`` and ``submit --dry-run`` (no cluster needed) name the
field; the operator's refusal of ``kubectl apply`` is in tests/operator/test_lifecycle.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _job(tmp_path, **uris) -> Path:
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())  # local URIs: .rarl/runs/...
    for key, value in uris.items():
        if key == "claim":
            doc["spec"]["resources"] = {"cacheVolumeClaim": value}
        else:
            doc["spec"][key]["uri"] = value
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("args", [["--backend", "kubernetes", "validate"], ["submit", "--dry-run"]])
def test_local_locations_are_refused_for_a_cluster_naming_both_fields(rarlctl, tmp_path, args):
    r = rarlctl(*args, "-f", str(_job(tmp_path)))
    assert r.code == 1, (r.out, r.err)
    text = r.out + r.err
    for field in ("spec.checkpoint.uri", "spec.output.uri"):
        assert f"{field}: '.rarl/runs/quickstart/" in text and "goes away with the pod" in text, text
    assert "use an s3:// URI" in text and "Traceback" not in text


def test_the_local_backend_still_takes_local_locations(rarlctl, tmp_path):
    r = rarlctl("validate", "-f", str(_job(tmp_path)))
    assert r.code == 0 and "OK RARLJob/quickstart" in r.out


@pytest.mark.parametrize(("uris", "refused"), [
    ({"checkpoint": "s3://ckpt/q", "output": "s3://models/q"}, []),
    ({"checkpoint": "s3://ckpt/q"}, ["spec.output.uri"]),
    ({"checkpoint": "/workspace/.cache/ckpt", "output": "s3://models/q", "claim": "rarl-cache"}, []),
    ({"checkpoint": "/workspace/.cache/ckpt", "output": "s3://models/q"}, ["spec.checkpoint.uri"]),  # no claim
    ({"checkpoint": "/workspace/ckpt", "output": "s3://models/q", "claim": "rarl-cache"}, ["spec.checkpoint.uri"]),
])
def test_what_outlives_the_pod_is_s3_or_the_claimed_volume(rarlctl, tmp_path, uris, refused):
    r = rarlctl("--backend", "kubernetes", "validate", "-f", str(_job(tmp_path, **uris)))
    assert r.code == (1 if refused else 0), (r.out, r.err)
    assert [f for f in ("spec.checkpoint.uri", "spec.output.uri") if f"{f}:" in r.out] == refused
