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


# --------------------------------------------------------------------------- sharded (FSDP) checkpoints


def test_a_sharded_checkpoint_folder_loads_strictly_into_a_whole_model(tmp_path):
    """``rarl_weights/`` (torch distributed checkpoint) written by one process here; the two-rank runs are in
    test_fsdp.py. A whole model is what a stage-boundary restore loads it into, whatever world size wrote it."""
    from rarl_trainer.weights import WEIGHTS_DIR, save_sharded_training_weights

    trained = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    _perturb(trained)
    save_sharded_training_weights(trained, tmp_path)
    assert (tmp_path / WEIGHTS_DIR / ".metadata").is_file() and not (tmp_path / WEIGHTS_FILE).exists()
    fresh = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    assert load_training_weights(fresh, tmp_path, sharded=True) == len(training_tensors(trained))
    want, got = _snapshot(trained), _snapshot(fresh)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    lora = load_model(ModelSpec(base=VLM)).model  # an adapter model: every base tensor is "unexpected"
    before = _snapshot(lora)
    with pytest.raises(CheckpointMismatch, match="not in the model"):
        load_training_weights(lora, tmp_path, sharded=True)
    assert all(torch.equal(before[k], v) for k, v in _snapshot(lora).items())  # nothing half-loaded


def test_a_sharded_checkpoint_missing_a_tensor_or_reshaped_is_refused_by_name(tmp_path):
    from rarl_trainer.weights import save_sharded_training_weights

    model = load_model(ModelSpec(base=VLM)).model
    save_sharded_training_weights(model, tmp_path / "r8")
    other = load_model(ModelSpec(base=VLM, lora=LoRASpec(r=4))).model
    with pytest.raises(CheckpointMismatch, match="has shape"):
        load_training_weights(other, tmp_path / "r8", sharded=True)


def test_a_checkpoint_of_the_other_sharding_is_refused_mid_stage(tmp_path):
    """Its optimizer state is in the other layout, which HF's resume would skip without a word."""
    from rarl_trainer.weights import ExactCheckpointMixin, save_sharded_training_weights

    model = load_model(ModelSpec(base=VLM)).model
    (tmp_path / "ddp").mkdir()
    save_training_weights(model, tmp_path / "ddp")
    save_sharded_training_weights(model, tmp_path / "fsdp")

    class Trainer(ExactCheckpointMixin):
        def __init__(self, fsdp: bool):
            self.is_fsdp_enabled = fsdp

    with pytest.raises(CheckpointMismatch, match=r"written with model\.sharding none"):
        Trainer(True)._load_from_checkpoint(str(tmp_path / "ddp"), model)
    with pytest.raises(CheckpointMismatch, match=r"written with model\.sharding fsdp"):
        Trainer(False)._load_from_checkpoint(str(tmp_path / "fsdp"), model)
    Trainer(True)._load_from_checkpoint(str(tmp_path / "fsdp"), model)  # the same sharding loads


# --------------------------------------------------------------------------- float32 master weights


def test_full_finetuning_trains_float32_masters_and_lora_keeps_the_base_in_the_spec_dtype():
    """bf16 weights under AdamW at lr 1e-5 drop most updates (below half a bf16 ulp): full fine-tuning keeps
    float32 masters whatever model.dtype says; LoRA's frozen base stays in it (its adapters are float32)."""
    full = load_model(ModelSpec(base=VLM, dtype="bfloat16", lora=LoRASpec(enabled=False)))
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}
    assert full.dtype == torch.bfloat16  # compute (autocast) and export dtype
    lora = load_model(ModelSpec(base=VLM, dtype="bfloat16"))
    trained = {p.dtype for p in lora.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in lora.model.parameters() if not p.requires_grad}
    assert trained == {torch.float32} and frozen == {torch.bfloat16}
    export = load_model(ModelSpec(base=VLM, dtype="bfloat16", lora=LoRASpec(enabled=False)), master_weights=False)
    assert {p.dtype for p in export.model.parameters()} == {torch.bfloat16}


def test_an_update_of_lr_1e5_survives_in_float32_masters_and_rounds_away_in_bfloat16():
    """Why the masters: one AdamW step (each update ~lr) applied to the same weights in both dtypes."""
    model = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    weight = next(p for n, p in model.named_parameters() if n.endswith("q_proj.weight")).detach()
    changed = {}
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.nn.Parameter(weight.clone().to(dtype))
        opt = torch.optim.AdamW([w], lr=1e-5, weight_decay=0.0)
        w.grad = torch.ones_like(w)
        opt.step()
        changed[dtype] = (w.detach() != weight.to(dtype)).float().mean().item()
    assert changed[torch.float32] == 1.0
    assert changed[torch.bfloat16] < 0.5


def test_gathered_export_weights_load_strictly_before_anything_is_copied(tmp_path):
    """The export's copy takes exactly the gathered tensors (the two-rank run is in test_fsdp.py)."""
    from rarl_trainer.sharding import gather_to_files, load_gathered

    trained = load_model(ModelSpec(base=VLM)).model
    _perturb(trained)
    gather_to_files(trained, tmp_path, is_main=True)
    fresh = load_model(ModelSpec(base=VLM)).model
    assert load_gathered(fresh, tmp_path) == len(training_tensors(trained))
    want, got = _snapshot(trained), _snapshot(fresh)
    assert all(torch.equal(want[k], got[k]) for k in want)

    other = load_model(ModelSpec(base=VLM, lora=LoRASpec(r=4))).model
    before = _snapshot(other)
    with pytest.raises(CheckpointMismatch, match="has shape"):
        load_gathered(other, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in _snapshot(other).items())  # nothing half-loaded


def test_copy_into_reference_makes_the_reference_hold_the_policy_exactly():
    """Full fine-tuning's KL reference of a later stage: TRL built it from model.base, it must hold the policy."""
    from rarl_trainer.weights import copy_into_reference

    policy = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    _perturb(policy)
    reference = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    assert copy_into_reference(policy, reference) == len(reference.state_dict())
    want, got = policy.state_dict(), reference.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_a_checkpoint_without_the_reference_model_is_refused_by_name(tmp_path):
    from rarl_trainer.weights import REFERENCE_FILE

    model = load_model(ModelSpec(base=VLM, lora=LoRASpec(enabled=False))).model
    save_training_weights(model, tmp_path)  # the policy only, as an older trainer wrote it
    with pytest.raises(CheckpointMismatch, match=f"has no {REFERENCE_FILE}: .*KL reference model"):
        load_training_weights(model, tmp_path, file=REFERENCE_FILE)
    save_training_weights(model, tmp_path, REFERENCE_FILE)
    assert load_training_weights(model, tmp_path, file=REFERENCE_FILE) == len(training_tensors(model))
