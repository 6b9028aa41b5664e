"""No credential reaches a message (issue 29, row "Redaction").

A URI's userinfo and signed query parameters are shown as ``***`` in every error that quotes the URI (the SDK's
``InvalidSpec``, the operator's status, Event and log, storage errors); the inline-secret scan matches the keys of
labels, annotations and other free-form maps by their ending (``wandb.ai/api-key``), never echoes the value, and
runs for a typed ``RARLJob`` submit as it does for a dict or YAML.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest
import yaml

from rarl import Client
from rarl.api.types import RARLJob
from rarl.api.uri import InvalidURI, parse_uri
from rarl.api.validation import parse_job, validate_document
from rarl.backends.local import LocalBackend
from rarl.errors import InvalidSpec

ROOT = Path(__file__).resolve().parents[2]
SECRET = "wJalrXUtnFEMI"  # the part of every planted credential that must never be shown
KEY_ID = "AKIAIOSFODNN7"


def _doc(name: str = "redact") -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"] = {"name": name}
    doc["spec"]["runPolicy"] = {"suspend": True}  # a submit that gets through starts no runner
    return doc


@pytest.mark.parametrize("uri", [
    f"s3://{KEY_ID}:{SECRET}@bucket/ckpt",
    f"s3://{KEY_ID}:{SECRET}/with/slashes@bucket/ckpt",  # a secret key with '/' in it
    f"https://{KEY_ID}:{SECRET}@minio.example.com/bucket",  # unsupported scheme
    f"file://{KEY_ID}:{SECRET}@host/abs",  # relative file:// path
])
def test_an_invalid_uri_error_shows_no_userinfo(uri):
    """Issue 29, Redaction: ``parse_uri``'s errors quoted the URI whole, ``user:secret@`` included."""
    with pytest.raises(InvalidURI) as caught:
        parse_uri(uri)
    text = str(caught.value)
    assert SECRET not in text and KEY_ID not in text
    assert "***@" in text


def test_signed_query_parameters_are_redacted_and_the_rest_kept():
    """Issue 29, Redaction: a presigned URL's signature, credential and token values never reach a message."""
    from rarl.api.uri import redact_uri

    uri = (f"https://{KEY_ID}:{SECRET}@s3.example.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           f"&X-Amz-Credential={KEY_ID}%2F20261126&X-Amz-Signature={SECRET}&X-Amz-Security-Token={SECRET}"
           f"&sig={SECRET}&token={SECRET}&key={SECRET}&password={SECRET}&part=3")
    shown = redact_uri(uri)
    assert SECRET not in shown and KEY_ID not in shown
    assert shown == ("https://***@s3.example.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
                     "&X-Amz-Signature=***&X-Amz-Security-Token=***&sig=***&token=***&key=***&password=***&part=3")
    assert redact_uri("s3://bucket/prefix") == "s3://bucket/prefix"
    assert redact_uri("https://minio:9000/a@b") == "https://minio:9000/a@b"  # a port, not a password


def _uri_doc() -> dict:
    doc = _doc()
    doc["spec"]["checkpoint"]["uri"] = f"s3://{KEY_ID}:{SECRET}/x@bucket/ckpt"
    doc["spec"]["output"]["uri"] = f"https://{KEY_ID}:{SECRET}@host/model"
    doc["spec"]["storage"] = {"endpoint": f"ftp://{KEY_ID}:{SECRET}@minio.example.com"}
    return doc


def test_invalid_spec_never_shows_uri_credentials():
    """Issue 29, Redaction: InvalidSpec quoted checkpoint/output URIs and spec.storage.endpoint with their userinfo."""
    with pytest.raises(InvalidSpec) as caught:
        parse_job(_uri_doc())
    text = str(caught.value)
    assert {p.path for p in caught.value.problems} >= {"spec.checkpoint.uri", "spec.output.uri", "spec.storage.endpoint"}
    assert SECRET not in text and KEY_ID not in text
    assert text.count("***@") == 2  # the two URIs, quoted redacted; the endpoint's message does not quote it
    assert "spec.storage.endpoint: credentials must not be written into the endpoint URL" in text


def test_the_operators_status_event_and_log_never_show_uri_credentials():
    """Issue 29, Redaction: the operator wrote an invalid URI's ``user:secret@`` to the status, an Event and its log."""
    from rarl.lifecycle import decide
    from rarl_operator.reconciler import observe

    body = {**_uri_doc(), "metadata": {"name": "redact", "namespace": "ml", "uid": "u-1", "generation": 1}}
    plan = decide(observe(body, [], [], dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)))
    assert plan.status["phase"] == "Failed"
    invalid = next(c for c in plan.status["conditions"] if c["type"] == "InvalidSpec")
    messages = [invalid["message"], *(message for _, _, message in plan.events)]  # the log line is the event's
    assert "spec.checkpoint.uri" in invalid["message"] and "***@" in invalid["message"]
    assert all(SECRET not in m and KEY_ID not in m for m in messages), messages


def test_storage_errors_never_show_the_endpoints_userinfo():
    """Issue 29, Redaction: an endpoint from RARL_S3_ENDPOINT/AWS_ENDPOINT_URL (the spec's own is refused) was
    shown whole in every S3 error."""
    from rarl.storage.s3 import S3Settings, S3Store

    settings = S3Settings(endpoint=f"https://{KEY_ID}:{SECRET}@minio.example.com:9000")
    store = S3Store("bucket", "jobs", settings, client=object())
    message = str(store._error("get", "step-1/manifest.json", RuntimeError("connection reset")))
    assert "https://***@minio.example.com:9000" in message and "s3://bucket/jobs/step-1/manifest.json" in message
    assert SECRET not in message and KEY_ID not in message


SECRET_KEYS = ["wandb.ai/api-key", "example.com/aws_secret_access_key", "example.com/GITHUB_TOKEN",
               "db.example.com/password", "example.com/private-key", "example.com/session-token"]
HARMLESS = {"app.kubernetes.io/name": "trainer", "example.com/cache-key": "v1",
            "vault.hashicorp.com/agent-inject-token": "true"}  # a switch, not a secret


@pytest.mark.parametrize("where", ["annotations", "labels"])
def test_the_secret_scan_matches_label_and_annotation_keys_by_their_ending(where):
    """Issue 29, Redaction: only exact key names were scanned, so ``wandb.ai/api-key`` passed and was copied to the
    ConfigMap, Job and pods."""
    doc = _doc()
    doc["metadata"][where] = {**HARMLESS, **{key: f"{SECRET}{i}" for i, key in enumerate(SECRET_KEYS)}}
    job, problems = validate_document(doc)
    assert job is None
    assert sorted(p.path for p in problems) == sorted(f"metadata.{where}.{key}" for key in SECRET_KEYS)
    for p in problems:
        assert "spec.logging.credentialsSecret" in p.message and "Secret" in p.message
        assert SECRET not in p.message


def test_the_secret_scan_covers_every_free_form_map_and_never_echoes_the_value():
    """Issue 29, Redaction: nodeSelector was not scanned by suffix either, and a label's value was echoed by the
    label-value rule even when its key says it is a secret."""
    doc = _doc()
    doc["spec"]["resources"] = {"nodeSelector": {"example.com/api-key": f"{SECRET}x"}}
    doc["metadata"]["labels"] = {"example.com/token": f"{SECRET} not a label value!"}
    job, problems = validate_document(doc)
    assert job is None
    paths = {p.path for p in problems}
    assert {"spec.resources.nodeSelector.example.com/api-key", "metadata.labels.example.com/token"} <= paths
    assert all(SECRET not in str(p) for p in problems), problems


def test_a_typed_job_submit_gets_the_secret_scan(tmp_path, monkeypatch):
    """Issue 29, Redaction: ``Client.submit(RARLJob(...))`` skipped the scan a dict or YAML submit gets."""
    monkeypatch.chdir(tmp_path)
    client = Client(LocalBackend(tmp_path / "home"))
    doc = _doc("typed")
    doc["metadata"]["annotations"] = {"wandb.ai/api-key": f"{SECRET}123"}
    typed = RARLJob.model_validate(copy.deepcopy(doc))  # a typed job: every field valid
    for source in (typed, doc):
        with pytest.raises(InvalidSpec) as caught:
            client.submit(source)
        assert [p.path for p in caught.value.problems] == ["metadata.annotations.wandb.ai/api-key"]
        assert SECRET not in str(caught.value)
    assert not (tmp_path / "home" / "jobs" / "typed").exists()


def test_an_endpoint_with_userinfo_after_a_slash_is_refused_and_never_echoed():
    """Issue 29, redaction: the endpoint check looked for '@' only before the first '/', so
    ``https://u:p/x@host`` was accepted; a malformed endpoint was quoted whole in the error."""
    from pydantic import ValidationError

    from rarl.api.types import StorageSpec

    for endpoint in ("https://AKIA:abc/def@host", "ftp://u:hunter2@host"):
        with pytest.raises(ValidationError) as info:
            StorageSpec(endpoint=endpoint)
        assert "hunter2" not in str(info.value) and "abc/def" not in str(info.value)
    with pytest.raises(ValidationError, match="credentials must not be written into the endpoint URL"):
        StorageSpec(endpoint="https://AKIA:abc/def@host")
