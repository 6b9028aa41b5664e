"""Every malformed RARLJob is rejected with the YAML field path and a reason, never a traceback."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rarl.api.validation import load_yaml_documents, parse_job, validate_document
from rarl.errors import InvalidSpec

from .test_types import MINIMAL


def with_(path: str, value: Any) -> dict:
    """MINIMAL with one field set (dotted path, [i] for list items); value DELETE removes it."""
    doc = copy.deepcopy(MINIMAL)
    node: Any = doc
    parts = path.replace("[", ".[").split(".")
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value
    return doc


DELETE = object()
TWO_STAGES = [{"name": "a", "steps": 1}, {"name": "b", "steps": 2, "rmo": {}}]

CASES = [
    # (description, document, expected path, words expected in the message)
    ("negative steps", with_("spec.stages", [{"name": "a", "steps": -1}]), "spec.stages[0].steps", "greater than"),
    ("zero steps", with_("spec.stages", [{"name": "a", "steps": 0}]), "spec.stages[0].steps", "greater than"),
    ("probability > 1", with_("spec.stages", [TWO_STAGES[0], {"name": "b", "steps": 1, "rmo": {"probability": 1.5}}]),
     "spec.stages[1].rmo.probability", "less than or equal to 1"),
    ("probability < 0", with_("spec.stages", [{"name": "a", "steps": 1, "rmo": {"probability": -0.1}}]),
     "spec.stages[0].rmo.probability", "greater than or equal to 0"),
    ("gpus < 0", with_("spec.resources", {"gpusPerNode": -1}), "spec.resources.gpusPerNode", "greater than"),
    ("nodes < 1", with_("spec.resources", {"nodes": 0}), "spec.resources.nodes", "greater than"),
    ("list size 0", with_("spec.stages", [{"name": "a", "steps": 1, "listSizes": [0]}]),
     "spec.stages[0].listSizes[0]", "greater than"),
    ("list size 17", with_("spec.stages", [{"name": "a", "steps": 1, "listSizes": [2, 17]}]),
     "spec.stages[0].listSizes[1]", "less than or equal to 16"),
    ("empty list sizes with RMO", with_("spec.stages", [{"name": "a", "steps": 1, "listSizes": []}]),
     "spec.stages[0]", "listSizes must not be empty"),
    ("delta 0", with_("spec.reward", {"delta": 0}), "spec.reward.delta", "greater than 0"),
    ("delta negative", with_("spec.reward", {"delta": -2}), "spec.reward.delta", "greater than 0"),
    ("missing model", with_("spec.model", DELETE), "spec.model", "required"),
    ("missing checkpoint", with_("spec.checkpoint", DELETE), "spec.checkpoint", "required"),
    ("missing output uri", with_("spec.output", {}), "spec.output.uri", "required"),
    ("missing name", with_("metadata", {}), "metadata.name", "required"),
    ("bad name", with_("metadata.name", "My_Job"), "metadata.name", "DNS-1035"),
    ("name starts with a digit", with_("metadata.name", "1job"), "metadata.name", "starting with a letter"),
    ("long name", with_("metadata.name", "a" * 41), "metadata.name", "at most 40"),
    ("wrong type", with_("spec.grpo", {"numGenerations": "eight"}), "spec.grpo.numGenerations", "integer"),
    ("unknown advantage scaling", with_("spec.grpo", {"scaleRewards": "std"}), "spec.grpo.scaleRewards",
     "'group', 'batch' or 'none'"),
    ("unknown loss type", with_("spec.grpo", {"lossType": "ppo"}), "spec.grpo.lossType", "'dr_grpo'"),
    ("clip bound above 1", with_("spec.grpo", {"epsilon": 1.5}), "spec.grpo.epsilon", "less than 1"),
    ("upper clip below lower", with_("spec.grpo", {"epsilon": 0.2, "epsilonHigh": 0.1}), "spec.grpo.epsilonHigh",
     "at least epsilon (0.2)"),
    ("no passes over a batch", with_("spec.grpo", {"numIterations": 0}), "spec.grpo.numIterations", "greater than"),
    ("eval queries neither a count nor all", with_("spec.grpo", {"evalQueries": "most"}), "spec.grpo.evalQueries",
     "whole number >= 1 or 'all'"),
    ("unknown sampling", with_("spec.dataset.sampling", "per-step"), "spec.dataset.sampling", "balanced-per-step"),
    ("stage accumulation below 1", with_("spec.stages", [{"name": "a", "steps": 1, "gradientAccumulationSteps": 0}]),
     "spec.stages[0].gradientAccumulationSteps", "greater than"),
    ("list for object", with_("spec.model", ["x"]), "spec.model", "dictionary"),
    ("unknown format", with_("spec.dataset.format", "imagenet"), "spec.dataset.format", "'synthetic'"),
    ("unknown stage kind", with_("spec.stages", [{"name": "a", "steps": 1, "kind": "ppo"}]),
     "spec.stages[0].kind", "'grpo' or 'sft'"),
    ("duplicate stages", with_("spec.stages", [{"name": "a", "steps": 1}, {"name": "a", "steps": 2}]),
     "spec.stages[1].name", "duplicate stage name 'a'"),
    ("duplicate among three", with_("spec.stages", [{"name": "a", "steps": 1}, {"name": "b", "steps": 1},
                                                    {"name": "b", "steps": 2}]),
     "spec.stages[2].name", "duplicate stage name 'b'"),
    ("bad stage name", with_("spec.stages", [{"name": "Stage 1", "steps": 1}]), "spec.stages[0].name", "lowercase"),
    ("gs:// uri", with_("spec.checkpoint.uri", "gs://bucket/x"), "spec.checkpoint.uri", "s3://, file://"),
    ("relative file://", with_("spec.output.uri", "file://relative/x"), "spec.output.uri", "absolute path"),
    ("bad bucket", with_("spec.output.uri", "s3://B/x"), "spec.output.uri", "bucket name"),
    ("empty uri", with_("spec.output.uri", ""), "spec.output.uri", "non-empty"),
    ("bad dataset uri", with_("spec.dataset.train", "http://x/y"), "spec.dataset.train", "not supported"),
    ("coco without category", with_("spec.dataset", {"format": "coco-rem", "train": "a.json"}),
     "spec.dataset", "category is required"),
    ("jsonl without target", with_("spec.dataset", {"format": "jsonl", "train": "a.jsonl"}),
     "spec.dataset", "target"),
    ("utkface without train", with_("spec.dataset", {"format": "utkface"}), "spec.dataset", "train is required"),
    ("target range reversed", with_("spec.dataset.target", {"min": 5, "max": 1}), "spec.dataset.target",
     "greater than min"),
    ("precision 0", with_("spec.dataset.target", {"min": 0, "max": 1, "precision": 0}),
     "spec.dataset.target.precision", "greater than 0"),
    ("bad quantity", with_("spec.resources", {"requests": {"memory": "lots"}}), "spec.resources.requests.memory",
     "Kubernetes quantity"),
    ("bool quantity", with_("spec.resources", {"limits": {"cpu": True}}), "spec.resources.limits.cpu", "quantity"),
    ("unknown builtin", with_("spec.model.base", "builtin:gpt-5"), "spec.model.base", "unknown builtin model"),
    ("ranking alpha > 1", with_("spec.reward", {"rankingAlpha": 2}), "spec.reward.rankingAlpha", "less than"),
    ("unknown field", with_("spec.grpo", {"numGeneration": 4}), "spec.grpo.numGeneration", "did you mean 'numGenerations'"),
    ("unknown top spec field", with_("spec.modle", {"base": "x"}), "spec.modle", "did you mean 'model'"),
    ("snake case typo", with_("spec.runPolicy", {"max_restart": 1}), "spec.runPolicy.max_restart", "did you mean"),
    ("secret in storage", with_("spec.storage", {"secretAccessKey": "abc"}), "spec.storage.secretAccessKey",
     "never put secrets"),
    ("secret anywhere", with_("spec.model.lora", {"token": "hf_abc"}), "spec.model.lora.token", "never put secrets"),
    ("credentials in endpoint", with_("spec.storage", {"endpoint": "http://ak:sk@minio:9000"}),
     "spec.storage.endpoint", "must not be written"),
    ("endpoint not a URL", with_("spec.storage", {"endpoint": "minio:9000"}), "spec.storage.endpoint", "http"),
    ("wrong apiVersion", with_("apiVersion", "rarl.dev/v1"), "apiVersion", "rarl.dev/v1alpha1"),
    ("wrong kind", with_("kind", "Job"), "kind", "RARLJob"),
    ("negative deadline", with_("spec.runPolicy", {"activeDeadlineSeconds": 0}), "spec.runPolicy.activeDeadlineSeconds",
     "greater than"),
    # rules the trainer applied only at start (issue 15, item 5)
    ("text items from an image reader", with_("spec.dataset", {"format": "utkface", "train": "d", "modality": "text"}),
     "spec.dataset.modality", "needs format 'jsonl' or 'synthetic'"),
    ("text items from coco-rem", with_("spec.dataset", {"format": "coco-rem", "train": "a.json", "category": "person",
                                                        "modality": "text"}),
     "spec.dataset.modality", "has image items only"),
    ("synthetic range without an integer", with_("spec.dataset", {"format": "synthetic",
                                                                  "target": {"min": 1.2, "max": 1.8}}),
     "spec.dataset.target", "needs an integer"),
    ("image items for a text builtin model", with_("spec.model.base", "builtin:tiny-lm"),
     "spec.dataset.modality", "is a text model"),
    ("image items for smollm2", with_("spec.model.base", "builtin:smollm2-135m-instruct"),
     "spec.dataset.modality", "is a text model"),
    # issue 17: image budget, collectives
    ("image sizes for text items", with_("spec", {**MINIMAL["spec"], "model": {"base": "builtin:tiny-lm",
                                                                                "vision": {"maxPixels": 50176}},
                                                  "dataset": {"format": "synthetic", "modality": "text"}}),
     "spec.model.vision", "remove model.vision"),
    ("min pixels above max", with_("spec.model.vision", {"minPixels": 200000, "maxPixels": 100000}),
     "spec.model.vision.minPixels", "above maxPixels"),
    ("zero max pixels", with_("spec.model.vision", {"maxPixels": 0}), "spec.model.vision.maxPixels", "greater than"),
    ("collective timeout of seconds", with_("spec.runPolicy", {"collectiveTimeoutSeconds": 5}),
     "spec.runPolicy.collectiveTimeoutSeconds", "greater than"),
    # issue 18: sharding
    ("unknown sharding", with_("spec.model.sharding", "zero3"), "spec.model.sharding", "'none' or 'fsdp'"),
    ("cpu offload without fsdp", with_("spec.model.cpuOffload", True), "spec.model.cpuOffload", "needs sharding"),
    ("fsdp over one process", with_("spec.model.sharding", "fsdp"), "spec.model.sharding", "nothing to shard"),
    # issue 28, row 7: what a new user got through
    ("infinite temperature", with_("spec.grpo.temperature", float("inf")), "spec.grpo.temperature", "finite number"),
    ("NaN learning rate", with_("spec.grpo.learningRate", float("nan")), "spec.grpo.learningRate", "finite number"),
    ("huge completions", with_("spec.grpo.maxCompletionLength", 10**9), "spec.grpo.maxCompletionLength",
     "less than or equal to 131072"),
    ("huge prompts", with_("spec.grpo.maxPromptLength", 10**9), "spec.grpo.maxPromptLength", "less than or equal"),
    ("every reward weight 0", with_("spec.reward.weights", {"regression": 0, "ranking": 0, "format": 0}),
     "spec.reward.weights", "every weight is 0"),
    ("a stage's reward weights all 0", with_("spec.stages", [{"name": "a", "steps": 1, "rewardWeights": {
        "regression": 0, "ranking": 0, "format": 0}}]), "spec.stages[0].rewardWeights", "every weight is 0"),
    ("output is the checkpoint folder", with_("spec.output.uri", "s3://ckpt/minimal/"), "spec.output.uri",
     "is checkpoint.uri"),
    ("output inside the checkpoint folder", with_("spec.output.uri", "s3://ckpt/minimal/model"), "spec.output.uri",
     "is inside checkpoint.uri"),
    ("more mutations than completions", with_("spec.stages", [{"name": "a", "steps": 1, "rmo": {"mutations": 9}}]),
     "spec.stages[0].rmo.mutations", "more than the 8 completions"),
    ("label key with a space", with_("metadata.labels", {"a b": "x"}), "metadata.labels", "not a Kubernetes key"),
    ("label value with a space", with_("metadata.labels", {"team": "a b"}), "metadata.labels", "not a label value"),
    ("annotation key with a bad prefix", with_("metadata.annotations", {"Bad_Prefix/x": "y"}), "metadata.annotations",
     "not a Kubernetes key"),
    ("namespace with capitals", with_("metadata.namespace", "Bad_NS"), "metadata.namespace", "not a namespace name"),
    ("unknown placeholder", with_("spec.dataset.instruction", "Rate {itemz} from {min} to {max}: {format}"),
     "spec.dataset.instruction", "unknown placeholder(s) {itemz}"),
]


@pytest.mark.parametrize("doc,path,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec_is_rejected_with_field_path(doc, path, words):
    job, problems = validate_document(doc)
    assert job is None
    matching = [p for p in problems if p.path == path]
    assert matching, f"no problem at {path}: {problems}"
    assert any(words in p.message for p in matching), matching


def test_secret_value_is_never_echoed():
    doc = with_("spec.storage", {"secretAccessKey": "wJalrXUtnFEMI-very-secret"})
    _, problems = validate_document(doc)
    assert problems and all("wJalrXUtnFEMI" not in str(p) for p in problems)


def test_all_problems_are_reported_at_once():
    doc = with_("spec.resources", {"nodes": 0, "gpusPerNode": -1})
    doc["spec"]["reward"] = {"delta": -1}
    _, problems = validate_document(doc)
    assert {"spec.resources.nodes", "spec.resources.gpusPerNode", "spec.reward.delta"} <= {p.path for p in problems}


@pytest.mark.parametrize(
    "text,words",
    [
        (b"", "empty"),
        (b"---\n---\n", "empty"),
        (b"\x00\x01\x02", "binary"),
        (b"\xff\xfe\xfa", "not UTF-8"),
        (b"a: [1, 2", "not valid YAML at line"),
        (b"a: 1\na: 2\n", "duplicate key 'a'"),
        (b"x" * (5 * 1024 * 1024), "at most"),
        (b"[" * 5000, "YAML"),
    ],
)
def test_unparseable_text_gives_one_clear_problem(text, words):
    docs, problems = load_yaml_documents(text)
    assert docs == [] and len(problems) == 1
    assert words in problems[0].message


@pytest.mark.parametrize("doc", [None, 3, "text", [1, 2], {"apiVersion": "rarl.dev/v1alpha1"}])
def test_non_job_documents(doc):
    job, problems = validate_document(doc)
    assert job is None and problems


def test_parse_job_raises_invalid_spec_with_problems():
    with pytest.raises(InvalidSpec) as info:
        parse_job(with_("spec.resources", {"nodes": 0}), origin="job.yaml")
    assert info.value.problems[0].path == "spec.resources.nodes"
    assert str(info.value).startswith("job.yaml: spec.resources.nodes:")


def test_multi_document_yaml_is_split():
    import yaml

    text = yaml.safe_dump(MINIMAL) + "---\n" + yaml.safe_dump(with_("metadata.name", "second"))
    docs, problems = load_yaml_documents(text)
    assert not problems and [d["metadata"]["name"] for d in docs] == ["minimal", "second"]
    with pytest.raises(InvalidSpec, match="expected one RARLJob document, found 2"):
        parse_job(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(
    ["model", "dataset", "reward", "stages", "grpo", "resources", "checkpoint", "output", "storage", "runPolicy",
     "other"]), json_values, max_size=6))
def test_arbitrary_spec_content_never_raises(spec):
    doc = {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "x"}, "spec": spec}
    job, problems = validate_document(doc)
    assert (job is None) == bool(problems)
    for p in problems:
        assert isinstance(p.path, str) and p.message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    docs, problems = load_yaml_documents(data)
    assert bool(docs) != bool(problems)
    for doc in docs:
        job, doc_problems = validate_document(doc)
        assert (job is None) == bool(doc_problems)


def _grpo_job(grpo: dict, resources: dict | None = None) -> dict:
    doc = with_("spec.grpo", grpo)
    if resources is not None:
        doc["spec"]["resources"] = resources
    return doc


def test_a_batch_that_is_not_whole_groups_is_refused_at_validation():
    """The trainer's rule (global batch a multiple of numGenerations) is caught before the job starts."""
    job, problems = validate_document(_grpo_job({"perDeviceBatchSize": 3, "numGenerations": 8}))
    assert job is None
    assert [p.path for p in problems] == ["spec.grpo.perDeviceBatchSize"]
    assert "perDeviceBatchSize (3)" in problems[0].message and "numGenerations (8)" in problems[0].message


def test_the_batch_rule_counts_every_process_of_the_job():
    # 1 completion x 2 nodes x 4 GPUs = 8 = one group of 8
    job, problems = validate_document(_grpo_job({"perDeviceBatchSize": 1, "numGenerations": 8},
                                                {"nodes": 2, "gpusPerNode": 4}))
    assert job is not None, problems
    job, _ = validate_document(_grpo_job({"perDeviceBatchSize": 1, "numGenerations": 8}, {"nodes": 2}))
    assert job is None  # 2 CPU processes: 2 completions


@pytest.mark.parametrize("dataset", [
    {"format": "jsonl", "train": "a.jsonl", "modality": "text", "target": {"min": 0, "max": 1}},
    {"format": "synthetic", "modality": "text"},
])
def test_text_items_from_text_readers_are_accepted(dataset):
    doc = with_("spec.dataset", dataset)
    doc["spec"]["model"]["base"] = "builtin:tiny-lm"
    job, problems = validate_document(doc)
    assert problems == [] and job is not None


def test_the_trainer_reader_uses_the_spec_rule():
    """loading.read_location refuses a constructed spec with the same words as validation."""
    pytest.importorskip("rarl_trainer")
    from rarl.api.types import DatasetSpec
    from rarl_trainer.data import DataError
    from rarl_trainer.data.loading import read_location

    spec = DatasetSpec.model_construct(format="ava", modality="text", target=None, images=None, train="x")
    with pytest.raises(DataError, match="needs format 'jsonl' or 'synthetic'"):
        read_location(spec, "x")


@pytest.mark.parametrize("engine", ["merged", "vllm"])
def test_fsdp_refuses_the_rollout_engines_that_need_whole_weights(engine):
    doc = _grpo_job({"rolloutEngine": engine, "perDeviceBatchSize": 4, "numGenerations": 8},
                    {"nodes": 1, "gpusPerNode": 2})
    doc["spec"]["model"]["sharding"] = "fsdp"
    job, problems = validate_document(doc)
    assert job is None
    assert [p.path for p in problems] == ["spec.grpo.rolloutEngine"]
    assert "'auto' or 'trl'" in problems[0].message
    doc["spec"]["grpo"]["rolloutEngine"] = "auto"
    job, problems = validate_document(doc)
    assert job is not None, problems
    assert job.spec.model.sharding == "fsdp" and not job.spec.model.cpu_offload


def test_a_stage_may_accumulate_its_own_batch_and_the_batch_rule_checks_it():
    """An sft stage of 8 queries a step beside a grpo stage of 64 completions (16 queries x 4) a step."""
    doc = _grpo_job({"perDeviceBatchSize": 8, "numGenerations": 4})
    doc["spec"]["stages"] = [{"name": "cold", "kind": "sft", "steps": 1},
                             {"name": "rank", "steps": 1, "gradientAccumulationSteps": 8}]
    job, problems = validate_document(doc)
    assert job is not None, problems
    assert [job.spec.grpo.accumulation(s) for s in job.spec.stages] == [1, 8]
    doc = _grpo_job({"perDeviceBatchSize": 3, "numGenerations": 4})
    doc["spec"]["stages"] = [{"name": "a", "steps": 1, "gradientAccumulationSteps": 4},  # 12: three groups
                             {"name": "b", "steps": 1, "gradientAccumulationSteps": 3}]  # 9: not whole groups
    job, problems = validate_document(doc)
    assert job is None and [p.path for p in problems] == ["spec.stages[1].gradientAccumulationSteps"]
    assert "stage b's gradientAccumulationSteps (3)" in problems[0].message


def test_what_row_7_refuses_has_its_valid_neighbours():
    """The new rules do not refuse what is fine: a sibling output folder, prefixed label keys, empty label values,
    JSON braces in an instruction, as many mutations as completions."""
    doc = with_("spec.output.uri", "s3://ckpt/minimal-model")
    doc["metadata"].update(namespace="ml-team", labels={"kueue.x-k8s.io/queue-name": "cpu-queue", "team": ""},
                           annotations={"example.com/owner": "a b c"})
    doc["spec"]["dataset"]["instruction"] = 'Rate {items} from {min} to {max}. Reply as {"value": v}: {format}'
    doc["spec"]["stages"] = [{"name": "a", "steps": 1, "rmo": {"mutations": 8}}]
    job, problems = validate_document(doc)
    assert problems == [] and job is not None
