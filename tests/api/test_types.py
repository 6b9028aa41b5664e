"""The RARLJob types: defaults a user wants, camelCase/snake_case, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rarl.api import parse_job
from rarl.api.types import TARGET_DEFAULTS, RARLJobSpec, StageSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

MINIMAL = {
    "apiVersion": "rarl.dev/v1alpha1",
    "kind": "RARLJob",
    "metadata": {"name": "minimal"},
    "spec": {
        "model": {"base": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "dataset": {"format": "utkface", "train": "s3://data/utkface"},
        "checkpoint": {"uri": "s3://ckpt/minimal"},
        "output": {"uri": "s3://models/minimal"},
    },
}


def test_minimal_spec_gets_the_paper_defaults():
    job = parse_job(MINIMAL)
    spec = job.spec
    assert [s.name for s in spec.stages] == ["regression-warmup", "ranking-aware"]
    assert spec.stages[0].list_sizes == [1] and spec.stages[1].list_sizes == [1, 2, 4, 8]
    assert spec.stages[0].reward_weights.ranking == 0.0
    assert all(s.rmo.enabled for s in spec.stages)
    assert spec.model.lora.enabled and spec.model.lora.target_modules == ["all-linear"]
    assert spec.dataset.target.max == TARGET_DEFAULTS["utkface"]["max"]
    assert spec.delta() == pytest.approx((116 - 1) / 10)
    assert spec.resources.nodes == 1 and spec.resources.gpus_per_node == 0
    assert spec.run_policy.max_restarts == 3 and spec.run_policy.suspend is False
    assert spec.total_steps() == 600


def test_camel_case_in_yaml_snake_case_in_python():
    job = parse_job(MINIMAL)
    job.spec.run_policy.ttl_seconds_after_finished = 60
    doc = job.to_dict()
    assert doc["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 60
    assert "run_policy" not in doc["spec"]
    assert doc["spec"]["grpo"]["numGenerations"] == 8
    # snake_case is also accepted on input (SDK users build jobs in Python)
    spec = RARLJobSpec(
        model={"base": "x"}, dataset={"format": "synthetic"}, checkpoint={"uri": "c"}, output={"uri": "o"},
        run_policy={"max_restarts": 0},
    )
    assert spec.run_policy.max_restarts == 0


def test_status_model_uri_is_spelled_like_kubernetes():
    job = parse_job({**MINIMAL, "status": {"phase": "Succeeded", "modelURI": "s3://m/x", "step": 3}})
    assert job.status.model_uri == "s3://m/x"
    assert job.to_dict()["status"]["modelURI"] == "s3://m/x"


def test_assignment_is_validated():
    job = parse_job(MINIMAL)
    with pytest.raises(ValueError):
        job.spec.resources.nodes = 0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_and_round_trips(path: Path):
    job = parse_job(path.read_text(), origin=str(path))
    again = parse_job(job.to_yaml())
    assert again == job
    assert yaml.safe_load(again.to_yaml()) == yaml.safe_load(job.to_yaml())


def test_examples_cover_the_formats():
    names = {p.stem for p in EXAMPLES}
    assert {"quickstart", "utkface", "ava", "coco-rem", "smollm2-afinn", "demo"} <= names
    formats = {parse_job(p.read_text()).spec.dataset.format for p in EXAMPLES}
    assert formats == {"synthetic", "utkface", "ava", "coco-rem", "jsonl"}


def test_the_demo_is_a_shortened_copy_of_the_smollm2_recipe():
    """examples/demo.yaml trains what examples/smollm2-afinn.yaml trains, only fewer steps and evaluations."""
    recipe, demo = (parse_job((ROOT / "examples" / f"{n}.yaml").read_text()).spec for n in ("smollm2-afinn", "demo"))
    assert demo.model == recipe.model and demo.dataset == recipe.dataset and demo.reward == recipe.reward
    assert [(s.name, s.kind, s.learning_rate, s.reward_weights, s.rmo) for s in demo.stages] == [
        (s.name, s.kind, s.learning_rate, s.reward_weights, s.rmo) for s in recipe.stages]
    assert all(d.steps <= r.steps for d, r in zip(demo.stages, recipe.stages, strict=True))
    same = ("num_generations", "per_device_batch_size", "learning_rate", "beta", "temperature", "seed",
            "scale_rewards", "loss_type", "epsilon", "epsilon_high", "num_iterations")
    assert {k: getattr(demo.grpo, k) for k in same} == {k: getattr(recipe.grpo, k) for k in same}


def test_default_stage_list_is_not_shared_between_jobs():
    a, b = parse_job(MINIMAL), parse_job(MINIMAL)
    a.spec.stages.append(StageSpec(name="extra", steps=1))
    assert len(b.spec.stages) == 2


stage_names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@st.composite
def jobs(draw):
    names = draw(st.lists(stage_names, min_size=1, max_size=4, unique=True))
    stages = [
        {
            "name": n,
            "kind": draw(st.sampled_from(["grpo", "sft"])),
            "steps": draw(st.integers(1, 10_000)),
            "listSizes": draw(st.lists(st.integers(1, 16), min_size=1, max_size=4)),
            "rmo": {
                "probability": draw(st.floats(0, 1)),
                "epsilon": draw(st.floats(0, 10)),
                "mutations": draw(st.integers(1, 8)),  # at most grpo.numGenerations (default 8)
                "mode": draw(st.sampled_from(["auto", "value", "order"])),
            },
        }
        for n in names
    ]
    lo = draw(st.floats(-1e6, 1e6))
    base = draw(st.sampled_from(["org/model", "/models/x", "s3://bucket/m", "builtin:tiny-lm"]))
    # a text builtin model cannot read images (a rule of the spec since issue 15)
    modality = "text" if base == "builtin:tiny-lm" else draw(st.sampled_from(["image", "text"]))
    return {
        "apiVersion": "rarl.dev/v1alpha1",
        "kind": "RARLJob",
        "metadata": {"name": draw(stage_names), "labels": {"team": "vision"}},
        "spec": {
            "model": {"base": base},
            "dataset": {
                "format": "jsonl",
                "train": "data/train.jsonl",
                "modality": modality,
                "target": {"min": lo, "max": lo + draw(st.floats(1e-3, 1e6)), "precision": 0.5},
            },
            "reward": {"delta": draw(st.floats(1e-6, 1e6)), "rankingAlpha": draw(st.floats(0, 1))},
            "stages": stages,
            "resources": {"nodes": draw(st.integers(1, 64)), "gpusPerNode": draw(st.integers(0, 8)),
                          "requests": {"cpu": draw(st.sampled_from([1, "500m", "2.5"])), "memory": "8Gi"}},
            "checkpoint": {"uri": "s3://ckpt/x", "everySteps": draw(st.integers(1, 1000))},
            "output": {"uri": "file:///models/x"},
        },
    }


@settings(max_examples=60, deadline=None)
@given(jobs())
def test_round_trip_yaml_model_yaml(doc):
    job = parse_job(doc)
    text = job.to_yaml()
    assert parse_job(text) == job
    assert parse_job(text).to_yaml() == text


@pytest.mark.parametrize("levels, message", [(["only"], "at least 2"), (["low", "low"], "distinct"),
                                             (["low", " "], "non-empty")])
def test_target_levels_are_checked_and_the_error_names_the_field(levels, message):
    from rarl.errors import InvalidSpec

    doc = {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "x"},
           "spec": {"model": {"base": "builtin:tiny-lm"},
                    "dataset": {"format": "jsonl", "modality": "text", "train": "x.jsonl",
                                "target": {"min": 0, "max": 1, "levels": levels}},
                    "checkpoint": {"uri": "c"}, "output": {"uri": "o"}}}
    with pytest.raises(InvalidSpec) as err:
        parse_job(doc)
    assert "spec.dataset.target" in str(err.value) and message in str(err.value)


def test_the_afinn_builtin_names_six_valence_levels():
    spec = parse_job({"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "x"},
                      "spec": {"model": {"base": "builtin:smollm2-135m-instruct"},
                               "dataset": {"format": "jsonl", "modality": "text",
                                           "train": "builtin:afinn-en-165"},
                               "checkpoint": {"uri": "c"}, "output": {"uri": "o"}}}).spec
    assert spec.dataset.target.levels[0] == "very negative" and len(spec.dataset.target.levels) == 6


def test_dataset_sampling_is_uniform_by_default_and_an_unknown_mode_names_the_field():
    from rarl.errors import InvalidSpec

    def doc(**dataset):
        return {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "x"},
                "spec": {"model": {"base": "builtin:tiny-lm"},
                         "dataset": {"format": "jsonl", "modality": "text", "train": "x.jsonl",
                                     "target": {"min": 0, "max": 1}, **dataset},
                         "checkpoint": {"uri": "c"}, "output": {"uri": "o"}}}

    assert parse_job(doc()).spec.dataset.sampling == "uniform"
    assert parse_job(doc(sampling="balanced")).spec.dataset.sampling == "balanced"
    with pytest.raises(InvalidSpec) as err:
        parse_job(doc(sampling="stratified"))
    assert "spec.dataset.sampling" in str(err.value) and "balanced" in str(err.value)
