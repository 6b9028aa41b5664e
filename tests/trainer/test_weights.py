"""Checkpoint weights: in-memory names, exact round trip, and loud refusals (never a silent partial load)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from rarl.api.types import LoRASpec, ModelSpec
from rarl_trainer.models import load_model
from rarl_trainer.weights import (
    WEIGHTS_FILE,
    CheckpointMismatch,
    load_training_weights,
    save_training_weights,
    training_tensors,
)

VLM = "builtin:tiny-qwen2.5-vl"


def _perturb(model) -> None:
    with torch.no_grad():
        for t in training_tensors(model).values():
            if t.is_floating_point():
                t.add_(0.01)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in training_tensors(model).items()}


def test_full_model_round_trip_restores_every_tensor_under_the_vlm_key_names(tmp_path):
    """Qwen2.5-VL's in-memory names (model.language_model.*) differ from what save_pretrained writes."""
    trained = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    _perturb(trained)
    save_training_weights(trained, tmp_path)
    assert any(k.startswith("model.language_model.") for k in load_file(tmp_path / WEIGHTS_FILE))
    fresh = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    assert load_training_weights(fresh, tmp_path) == len(training_tensors(trained))
    want, got = _snapshot(trained), _snapshot(fresh)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_lora_saves_only_adapter_tensors_and_restores_them(tmp_path):
    trained = load_model(ModelSpec(base=VLM)).model
    _perturb(trained)
    save_training_weights(trained, tmp_path)
    keys = set(load_file(tmp_path / WEIGHTS_FILE))
    assert keys and all(".lora_" in k and ".default." in k for k in keys)
    fresh = load_model(ModelSpec(base=VLM)).model
    load_training_weights(fresh, tmp_path)
    want, got = _snapshot(trained), _snapshot(fresh)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_same_seed_same_adapter_init_other_seed_another():
    a, b = (load_model(ModelSpec(base=VLM), seed=7).model for _ in range(2))
    c = load_model(ModelSpec(base=VLM), seed=8).model
    sa, sb, sc = _snapshot(a), _snapshot(b), _snapshot(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_a_missing_tensor_is_refused_by_name(tmp_path):
    model = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    save_training_weights(model, tmp_path)
    tensors = load_file(tmp_path / WEIGHTS_FILE)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointMismatch, match=rf"1 tensors of the model are missing from it \({dropped}\)"):
        load_training_weights(model, tmp_path)


def test_an_adapter_checkpoint_does_not_load_into_a_full_model(tmp_path):
    save_training_weights(load_model(ModelSpec(base=VLM)).model, tmp_path)
    full = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    before = _snapshot(full)
    with pytest.raises(CheckpointMismatch, match="not in the model") as err:
        load_training_weights(full, tmp_path)
    assert "new checkpoint.uri" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in _snapshot(full).items())  # nothing half-loaded


def test_a_reshaped_tensor_is_refused_before_anything_is_copied(tmp_path):
    saved = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    _perturb(saved)
    save_training_weights(saved, tmp_path)
    tensors = load_file(tmp_path / WEIGHTS_FILE)
    last = [k for k in training_tensors(saved) if k in tensors][-1]  # the last one a restore copies
    tensors[last] = torch.zeros(3, 3)
    save_file(tensors, str(tmp_path / WEIGHTS_FILE))
    model = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    before = _snapshot(model)
    with pytest.raises(CheckpointMismatch, match=f"tensor {last} has shape"):
        load_training_weights(model, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in _snapshot(model).items())  # nothing half-loaded


def test_a_lora_rank_change_is_refused(tmp_path):
    save_training_weights(load_model(ModelSpec(base=VLM, lora=LoRASpec(r=4))).model, tmp_path)
    with pytest.raises(CheckpointMismatch, match="has shape"):
        load_training_weights(load_model(ModelSpec(base=VLM, lora=LoRASpec(r=8))).model, tmp_path)


def test_a_reference_adapter_is_restored_or_skipped_only_when_asked(tmp_path):
    from peft import LoraConfig

    model = load_model(ModelSpec(base=VLM)).model
    model.add_adapter("ref", model.peft_config["default"])
    with_ref = training_tensors(model)
    assert any(".ref." in k for k in with_ref)
    save_training_weights(model, tmp_path)
    fresh = load_model(ModelSpec(base=VLM)).model  # only "default", as at a stage start
    with pytest.raises(CheckpointMismatch, match=r"lora_A\.ref"):
        load_training_weights(fresh, tmp_path)
    assert load_training_weights(fresh, tmp_path, skip_adapters=("ref",)) == len(with_ref) // 2
    assert isinstance(model.peft_config["ref"], LoraConfig)


def test_a_folder_without_the_weights_file_names_what_it_holds(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointMismatch, match=r"no rarl_weights\.safetensors \(files: model\.safetensors\)"):
        load_training_weights(load_model(ModelSpec(base=VLM)).model, tmp_path)
