"""spec.logging in the manifests: tracker credentials reach the trainer only by Secret reference."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
from pydantic import ValidationError

from rarl import manifests as m
from rarl.api.types import RARLJob
from tests.operator.test_manifests import MINIMAL, UID


def job(logging: dict | None = None) -> RARLJob:
    doc = copy.deepcopy(MINIMAL)
    if logging is not None:
        doc["spec"]["logging"] = logging
    return RARLJob.model_validate(doc)


def trainer_container(j: RARLJob) -> dict:
    attempt = m.attempt_job(j, UID, attempt=0, restarts=0)
    [container] = attempt["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "trainer"
    return container


def test_credentials_secret_becomes_env_from_secret_ref_of_the_trainer():
    j = job({"reportTo": ["wandb", "tensorboard"], "credentialsSecret": "wandb-api-key"})
    container = trainer_container(j)
    assert container["envFrom"] == [{"secretRef": {"name": "wandb-api-key"}}]
    for child in m.all_children(j, UID, attempt=0, restarts=0):
        kubernetes_validate.validate(child, "1.30.0", strict=True)


def test_no_credentials_secret_no_env_from():
    assert "envFrom" not in trainer_container(job())
    assert "envFrom" not in trainer_container(job({"reportTo": ["tensorboard"]}))


def test_no_secret_value_and_no_tracker_env_in_the_manifests():
    """Only the Secret's name travels: no WANDB_/MLFLOW_ variable is written, and the name is a reference."""
    j = job({"reportTo": ["mlflow"], "credentialsSecret": "tracker-creds"})
    children = m.all_children(j, UID, attempt=0, restarts=0)
    text = json.dumps(children)
    assert "WANDB_" not in text and "MLFLOW_" not in text
    container = trainer_container(j)
    assert not any(e["name"].startswith(("WANDB", "MLFLOW")) for e in container["env"])
    # the name appears as the envFrom reference (and in the job document the trainer reads), nowhere as a value
    assert all(e.get("value") != "tracker-creds" for e in container["env"])


def test_logging_defaults_and_bad_values():
    assert job().spec.logging.report_to == ["tensorboard"]
    assert job().spec.logging.credentials_secret is None
    for bad, field in (({"reportTo": ["none", "wandb"]}, "reportTo"), ({"reportTo": ["comet"]}, "reportTo"),
                       ({"reportTo": []}, "reportTo"), ({"credentialsSecret": "Not_A_Name"}, "credentialsSecret")):
        with pytest.raises(ValidationError) as info:
            job(bad)
        assert field in str(info.value)
