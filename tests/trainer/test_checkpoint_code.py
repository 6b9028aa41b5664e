"""Issue 29, checkpoints cannot run code: whoever can write a job's checkpoint location must not run code in the trainer.

A torch distributed checkpoint's ``.metadata`` is a pickle, which torch's ``FileSystemReader`` reads with a
plain ``pickle.load``: it is read only by a sharded (``model.sharding: fsdp``) job, and with an allowlist of
the checkpoint metadata types. A ``rarl_state.json`` without ``config_hash`` is refused, not resumed unchecked.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from rarl.api.types import LoRASpec, ModelSpec
from rarl_trainer.config import DistInfo
from rarl_trainer.weights import (
    REFERENCE_DIR,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    ExactCheckpointMixin,
    load_training_weights,
    save_sharded_training_weights,
    save_training_weights,
    training_tensors,
)


class Gadget:
    """What an attacker plants: unpickling it calls ``os.mkdir(marker)`` (harmless, and visible)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))


def _plant(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".metadata").write_bytes(pickle.dumps(Gadget(marker)))


def _trainer(fsdp: bool, reference=None):
    class Trainer(ExactCheckpointMixin):
        rarl_checkpoint_reference = reference is not None

        def __init__(self):
            self.is_fsdp_enabled = fsdp

        def _rarl_reference(self):
            return reference

    return Trainer()


def _refused_without_running(call, marker: Path, where: str) -> str:
    """``call()`` raises, the gadget never ran, and the refusal names the file and what it named; its message."""
    with pytest.raises(Exception) as info:
        call()
    assert not marker.exists(), f"unpickling the checkpoint's {where} ran the planted code"
    from rarl_trainer.weights import UnsafeCheckpoint

    assert isinstance(info.value, UnsafeCheckpoint), repr(info.value)
    assert f"{where}/.metadata" in str(info.value) and "posix.mkdir" in str(info.value), str(info.value)
    return str(info.value)


def test_a_pickle_gadget_in_a_sharded_jobs_weights_metadata_is_refused_and_never_runs(tmp_path):
    """Issue 29, checkpoints cannot run code: a sharded job's resume read rarl_weights/.metadata with pickle.load."""
    marker = tmp_path / "ran"
    _plant(tmp_path / "ckpt" / WEIGHTS_DIR, marker)
    message = _refused_without_running(lambda: _trainer(fsdp=True)._load_from_checkpoint(str(tmp_path / "ckpt"),
                                                                                           _model()),
                                       marker, WEIGHTS_DIR)
    assert "refusing to read" in message and "use a new checkpoint.uri" in message


def test_a_pickle_gadget_in_a_sharded_jobs_reference_metadata_is_refused_and_never_runs(tmp_path):
    """Issue 29, checkpoints cannot run code: full fine-tuning's KL reference (rarl_reference/) too."""
    marker = tmp_path / "ran"
    model = _model()
    save_sharded_training_weights(model, tmp_path / "ckpt")
    _plant(tmp_path / "ckpt" / REFERENCE_DIR, marker)
    _refused_without_running(
        lambda: _trainer(fsdp=True, reference=_model())._load_from_checkpoint(str(tmp_path / "ckpt"), model),
        marker, REFERENCE_DIR)


def test_a_pickle_gadget_in_the_sharded_optimizer_metadata_is_refused_before_accelerate_reads_it(tmp_path):
    """Issue 29, checkpoints cannot run code: accelerate reads optimizer_0/.metadata with torch's plain reader,
    after ``_load_from_checkpoint``; that is where it is refused (old code: nothing refused it)."""
    marker = tmp_path / "ran"
    model = _model()
    save_sharded_training_weights(model, tmp_path / "ckpt")
    _plant(tmp_path / "ckpt" / "optimizer_0", marker)
    _refused_without_running(lambda: _trainer(fsdp=True)._load_from_checkpoint(str(tmp_path / "ckpt"), model),
                             marker, "optimizer_0")


def test_a_stage_start_of_a_sharded_job_refuses_a_pickle_gadget(tmp_path):
    """Issue 29, checkpoints cannot run code: the stage-boundary restore of a sharded job."""
    from rarl_trainer.checkpointing import load_stage_start_weights

    marker = tmp_path / "ran"
    _plant(tmp_path / "ckpt" / WEIGHTS_DIR, marker)
    model = _model()
    _refused_without_running(lambda: load_stage_start_weights(model, tmp_path / "ckpt", sharded=True), marker,
                             WEIGHTS_DIR)


def test_a_job_without_sharding_never_reads_a_distributed_checkpoint(tmp_path):
    """Issue 29, checkpoints cannot run code: any job took the DCP branch when rarl_weights/ existed; one with
    model.sharding none now refuses it by name without opening it (old code: the planted code ran)."""
    from rarl_trainer.checkpointing import load_stage_start_weights
    from rarl_trainer.weights import CheckpointMismatch

    marker = tmp_path / "ran"
    _plant(tmp_path / "ckpt" / WEIGHTS_DIR, marker)
    with pytest.raises(Exception) as info:
        load_stage_start_weights(_model(), tmp_path / "ckpt", sharded=False)  # a stage boundary: any checkpoint loaded before
    assert not marker.exists(), "a job with model.sharding none unpickled rarl_weights/.metadata"
    assert isinstance(info.value, CheckpointMismatch), repr(info.value)
    assert (f"holds {WEIGHTS_DIR}/" in str(info.value) and "model.sharding none" in str(info.value)
            and WEIGHTS_FILE in str(info.value)), str(info.value)


def test_a_job_without_sharding_refuses_a_distributed_reference_or_weights_beside_its_own(tmp_path):
    """Issue 29, checkpoints cannot run code: a genuine DCP folder, even beside the safetensors weights the job
    needs, is refused (rarl_weights/ first, and full fine-tuning's rarl_reference/ too), never loaded."""
    from rarl_trainer.checkpointing import load_stage_start_weights
    from rarl_trainer.weights import CheckpointMismatch

    model = _model()
    save_training_weights(model, tmp_path)
    save_sharded_training_weights(model, tmp_path, REFERENCE_DIR)
    with pytest.raises(CheckpointMismatch, match=f"holds {REFERENCE_DIR}/.*model.sharding none"):
        _trainer(fsdp=False, reference=_model())._load_from_checkpoint(str(tmp_path), model)
    save_sharded_training_weights(model, tmp_path)
    with pytest.raises(CheckpointMismatch, match=f"holds {WEIGHTS_DIR}/.*model.sharding none"):
        load_stage_start_weights(model, tmp_path, sharded=False)


def _state_checkpoint(tmp_path: Path, state: dict):
    from rarl.storage import CheckpointStore

    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "rarl_state.json").write_text(json.dumps(state))
    store = CheckpointStore(str(tmp_path / "ckpt"))
    store.save(folder, 2)
    return store


def test_a_checkpoint_state_without_config_hash_is_refused(tmp_path):
    """Issue 29, checkpoints cannot run code: a rarl_state.json without config_hash skipped the settings check
    (checkpoint.onSpecChange) and resumed whatever it held; it is refused by name now."""
    from rarl_trainer.checkpointing import restore_for_resume
    from rarl_trainer.weights import CheckpointMismatch

    state = {"stage_index": 0, "stage_name": "warmup", "stage_step": 2, "global_step": 2, "stage_complete": False}
    store = _state_checkpoint(tmp_path, state)
    with pytest.raises(CheckpointMismatch, match=r"rarl_state\.json has no config_hash.*not resuming"):
        restore_for_resume(store, tmp_path / "resume", DistInfo())


def test_a_checkpoint_state_with_its_config_hash_still_resumes(tmp_path):
    """Issue 29, checkpoints cannot run code: the refusal is of a missing config_hash only (the loop compares it)."""
    from rarl_trainer.checkpointing import read_state, restore_for_resume

    state = {"stage_index": 0, "stage_name": "warmup", "stage_step": 2, "global_step": 2, "stage_complete": False,
             "config_hash": "0123456789abcdef"}
    restored = restore_for_resume(_state_checkpoint(tmp_path, state), tmp_path / "resume", DistInfo())
    assert restored.step == 2 and restored.state == state == read_state(restored.path)


def test_real_distributed_checkpoints_still_load_through_the_allowlist(tmp_path):
    """Issue 29, checkpoints cannot run code: the allowlist is not too narrow. The trainer's own DCP weights
    (a tiny model, full and LoRA) and an AdamW state as accelerate saves it read back exactly as pickle.load
    reads them, and load strictly into a sharded job's model."""
    from torch.distributed.checkpoint import FileSystemWriter, save
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    from rarl_trainer.models import load_model
    from rarl_trainer.sharding import mark_fsdp_managed
    from rarl_trainer.weights import check_dcp_metadata, checked_reader

    for lora in (False, True):
        spec = ModelSpec(base="builtin:tiny-lm", lora=LoRASpec(enabled=lora))
        trained = load_model(spec).model
        with torch.no_grad():
            for t in training_tensors(trained).values():
                t.add_(0.01)
        params = [p for p in trained.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3)
        sum(p.sum() for p in params).backward()
        opt.step()
        folder = tmp_path / f"lora-{lora}"
        save_sharded_training_weights(trained, folder)
        save({"optimizer": get_optimizer_state_dict(trained, opt)},
             storage_writer=FileSystemWriter(str(folder / "optimizer_0")))
        assert check_dcp_metadata(folder) == 2
        for sub in (WEIGHTS_DIR, "optimizer_0"):
            with open(folder / sub / ".metadata", "rb") as fh:
                plain = pickle.load(fh)
            checked = checked_reader(folder / sub).read_metadata()
            assert checked.state_dict_metadata == plain.state_dict_metadata
            assert checked.storage_data == plain.storage_data and checked.planner_data == plain.planner_data
        fresh = load_model(spec).model
        mark_fsdp_managed(fresh)
        _trainer(fsdp=True)._load_from_checkpoint(str(folder), fresh)
        want, got = training_tensors(trained), training_tensors(fresh)
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
        assert load_training_weights(load_model(spec).model, folder, sharded=True) == len(want)
