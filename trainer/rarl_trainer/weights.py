"""Exact, strict checkpoint weights: the tensors in memory, under the names they have in memory.

Why not the HF Trainer's own weight files: ``save_pretrained`` writes transformers' *checkpoint*
key names (transformers 5 renames e.g. Qwen2.5-VL's ``model.language_model.*`` back to
``model.*`` on save), while ``Trainer._load_from_checkpoint`` reads them back with
``load_state_dict(strict=False)``: the keys no longer match, nothing is loaded and nothing is
said, so a resumed run silently continued from the base weights. Here a checkpoint holds the
model's own ``state_dict`` names, and a restore refuses any missing, unexpected or reshaped
tensor (``CheckpointMismatch``, exit code 2: retrying cannot help).

What is saved: for full fine-tuning every parameter and buffer of the model; with LoRA every
adapter's tensors (the trained ``default`` and, under GRPO with ``beta > 0``, TRL's frozen
``ref`` copy, the KL reference), since the frozen base weights are rebuilt from ``model.base``.
Tensors that share storage (tied embeddings) are stored once and re-expanded on load.

The KL reference of a fully fine-tuned GRPO stage after the first (``beta > 0``) is the policy that
stage started from, a second model (TRL's ``ref_model``): its checkpoints carry that model too
(``rarl_reference.safetensors`` or ``rarl_reference/``), since it can no longer be rebuilt from
``model.base``. With LoRA the reference is the ``ref`` adapter, saved with the weights.

A sharded model (``model.sharding: fsdp``) writes the same tensors as a torch distributed
checkpoint instead (``rarl_weights/``: each rank writes its own shards, rank 0 the metadata), so
no rank ever holds the whole model for a checkpoint; it loads strictly too, into a sharded model
or (at a stage boundary, before the next stage shards it) a whole one of any world size.

Whoever can write a job's checkpoint location must not be able to run code in the trainer (Issue 29):
only a sharded job reads a distributed checkpoint at all (a job with ``sharding: none`` refuses a
``rarl_weights/`` or ``rarl_reference/`` folder), and its ``.metadata`` (torch's reader would
``pickle.load`` it) is read with an allowlist of the checkpoint metadata types (``CheckedReader``).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from accelerate.utils import save_fsdp_optimizer
from safetensors import safe_open
from safetensors.torch import save_file
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata
from torch.distributed.tensor import DTensor, distribute_tensor
from transformers.trainer import SCHEDULER_NAME, TRAINING_ARGS_NAME

from rarl_trainer.config import ConfigError
from rarl_trainer.trl_seam import TrainerCheckpointSeam

WEIGHTS_FILE = "rarl_weights.safetensors"
WEIGHTS_DIR = "rarl_weights"  # a sharded model's: torch.distributed.checkpoint, one .distcp file per rank
REFERENCE_ADAPTER = "ref"  # the name TRL gives the frozen copy of the adapter (GRPO, beta > 0, LoRA)
REFERENCE_FILE = "rarl_reference.safetensors"  # full fine-tuning's KL reference model (a stage after the first)
REFERENCE_DIR = "rarl_reference"  # the same, of a sharded run


class CheckpointMismatch(ConfigError):
    """A checkpoint's tensors do not fit the model being trained (another model, LoRA setting or version)."""


class UnsafeCheckpoint(ConfigError):
    """A checkpoint file that names code to run when read (a pickle of anything but checkpoint metadata)."""


DCP_METADATA_GLOBALS: dict[str, frozenset[str]] = {
    "torch.distributed.checkpoint.metadata": frozenset({
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"}),
    "torch.distributed.checkpoint.filesystem": frozenset({"_StorageInfo"}),
    "torch": frozenset({"Size"}),  # and every torch dtype (_MetadataUnpickler)
    "torch.serialization": frozenset({"_get_layout"}),  # a tensor layout by its name
    "pathlib": frozenset({"PosixPath"}),  # StorageMeta.checkpoint_id
    "builtins": frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool", "bytes"}),
}
"""What a torch distributed checkpoint's ``.metadata`` pickle may name: the globals torch's own writer uses
(listed by unpickling the metadata of ``save_sharded_training_weights`` and of accelerate's sharded
optimizer state); none of them runs anything but a constructor of plain data."""


class _Refused(Exception):
    """A global outside ``DCP_METADATA_GLOBALS``, named by a metadata pickle."""


class _MetadataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``DCP_METADATA_GLOBALS`` and torch dtypes (no persistent ids)."""

    def find_class(self, module: str, name: str):
        if name in DCP_METADATA_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise _Refused(f"{module}.{name}")


def read_dcp_metadata(stream, path: str | os.PathLike):
    """A torch distributed checkpoint's ``Metadata`` from ``stream`` (the file ``path``), allowlisted types only.

    Why not torch's ``FileSystemReader.read_metadata``: it is a plain ``pickle.load``, which runs whatever
    the file names; a checkpoint comes from storage that others may write (Issue 29).
    """
    try:
        metadata = _MetadataUnpickler(stream).load()
    except _Refused as e:
        raise UnsafeCheckpoint(
            f"refusing to read {path}: it names {e}, which is not a torch distributed checkpoint metadata type, "
            "and unpickling it could run code; the checkpoint was not written by the rarl trainer (or was altered "
            "since): use a new checkpoint.uri") from None
    except Exception as e:
        raise UnsafeCheckpoint(f"{path} is not a readable torch distributed checkpoint metadata file "
                               f"({type(e).__name__}: {e}); use a new checkpoint.uri") from None
    if not isinstance(metadata, Metadata):
        raise UnsafeCheckpoint(f"{path} holds a {type(metadata).__name__}, not torch distributed checkpoint "
                               "metadata; use a new checkpoint.uri")
    return metadata


@functools.cache
def _checked_reader_class():
    class CheckedReader(FileSystemReader):
        """torch's ``FileSystemReader`` but for ``read_metadata``: ``read_dcp_metadata`` instead of ``pickle.load``."""

        def read_metadata(self, *args, **kwargs):
            path = self._get_metadata_path(kwargs.get("rank"))
            with self.fs.create_stream(path, "rb") as fh:
                metadata = read_dcp_metadata(fh, path)
            if getattr(metadata, "storage_meta", None) is None:  # as torch's read_metadata does
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return CheckedReader


def checked_reader(path: str | Path):
    """The reader for every torch distributed checkpoint the trainer loads itself (see ``read_dcp_metadata``)."""
    return _checked_reader_class()(str(path))


def check_dcp_metadata(folder: str | Path) -> int:
    """Read every distributed checkpoint's metadata in ``folder``'s subfolders with the allowlist; how many.

    Why: accelerate loads a sharded optimizer state (``optimizer_0/``) with torch's own reader, a plain
    ``pickle.load``; refused here first, the bytes it then reads name only allowlisted types.
    """
    paths = sorted(Path(folder).glob("*/*.metadata"))  # .metadata, and __<rank>.metadata (rank-local)
    for path in paths:
        with open(path, "rb") as fh:
            read_dcp_metadata(fh, path)
    return len(paths)


def _adapters(model) -> list[str]:
    return list(getattr(model, "peft_config", {}) or {})


def _adapter_of(key: str, adapters: Iterable[str]) -> str | None:
    parts = key.split(".")
    return next((a for a in adapters if a in parts), None)


def training_tensors(model, skip_adapters: Iterable[str] = ()) -> dict[str, object]:
    """The tensors a checkpoint must restore, by their in-memory names (live references, not copies).

    ``skip_adapters``: adapters left out (TRL's KL reference, when a stage starts or the model is exported).
    """
    state = model.state_dict(keep_vars=True)
    adapters = _adapters(model)
    skip = tuple(skip_adapters)
    return {k: v for k, v in state.items()
            if (not adapters or _adapter_of(k, adapters) is not None) and (not skip or _adapter_of(k, skip) is None)}


def save_training_weights(model, folder: str | Path, file: str = WEIGHTS_FILE) -> Path:
    """Write the model's training tensors into ``folder/file`` (``rarl_weights.safetensors``)."""
    stored, aliases, seen = {}, {}, {}
    for name, live in training_tensors(model).items():
        t = live.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        stored[name] = t.contiguous().cpu()
    path = Path(folder) / file
    tmp = path.with_suffix(".tmp")
    save_file(stored, str(tmp), metadata={"format": "pt", "aliases": json.dumps(aliases, sort_keys=True)})
    os.replace(tmp, path)
    return path


def save_sharded_training_weights(model, folder: str | Path, name: str = WEIGHTS_DIR) -> Path:
    """A sharded model's training tensors into ``folder/name`` (``rarl_weights/``; every rank must call it: collective)."""
    path = Path(folder) / name
    tensors = {name: t.detach() for name, t in training_tensors(model).items()}
    dcp.save(tensors, storage_writer=dcp.FileSystemWriter(str(path)))
    return path


def _examples(keys: Iterable[str], n: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_training_weights(model, folder: str | Path, skip_adapters: Iterable[str] = (), file: str = WEIGHTS_FILE,
                          sharded_dir: str = WEIGHTS_DIR, *, sharded: bool = False) -> int:
    """Copy a checkpoint's tensors into ``model`` in place; returns how many were restored.

    Every tensor the model trains must be in the file with its shape, and the file may hold
    nothing else, except tensors of the adapters named in ``skip_adapters`` (a stage-boundary
    checkpoint carries the finished stage's KL reference adapter, which the next stage rebuilds).
    ``file``/``sharded_dir``: which tensors of the checkpoint (the policy's, or ``REFERENCE_FILE``/``REFERENCE_DIR``).
    ``sharded``: the job's ``model.sharding`` is fsdp; only then is ``sharded_dir`` (a distributed checkpoint,
    whose metadata is a pickle) read at all, and a job with ``sharding: none`` refuses a checkpoint holding one.
    """
    if (Path(folder) / sharded_dir).is_dir():
        if not sharded:
            raise CheckpointMismatch(
                f"checkpoint {folder} holds {sharded_dir}/, a sharded (model.sharding: fsdp) torch distributed "
                f"checkpoint, but this job has model.sharding none, which reads only {file}; not reading it: use "
                "a new checkpoint.uri, or the sharding that wrote it")
        return _load_sharded_training_weights(model, Path(folder), tuple(skip_adapters), sharded_dir)
    path = Path(folder) / file
    if not path.is_file():
        if file == REFERENCE_FILE:
            raise CheckpointMismatch(
                f"checkpoint {folder} has no {file}: its stage trains against the KL reference model (full fine-"
                "tuning, grpo.beta > 0, a stage after the first), which an older rarl trainer did not save; "
                "start from a new checkpoint.uri")
        present = sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []
        raise CheckpointMismatch(
            f"checkpoint {folder} has no {WEIGHTS_FILE} (files: {', '.join(present) or 'none'}); it was written by "
            "an older rarl trainer whose weight files could not be restored exactly: start from a new checkpoint.uri"
        )
    with safe_open(str(path), framework="pt") as fh:
        aliases = json.loads((fh.metadata() or {}).get("aliases", "{}"))
        stored_names = list(fh.keys())
        file_keys = set(stored_names) | set(aliases)
        skip = tuple(skip_adapters)
        if skip:
            file_keys = {k for k in file_keys if _adapter_of(k, skip) is None}
        expected = training_tensors(model)
        check_fit(f"checkpoint {folder}", expected, file_keys,
                  {name: tuple(fh.get_slice(aliases.get(name, name)).get_shape()) for name in expected
                   if name in file_keys})
        with torch.no_grad():
            for name, target in expected.items():
                source = fh.get_tensor(aliases.get(name, name))
                target.copy_(source.to(dtype=target.dtype, device=target.device))
    return len(expected)


CHECKPOINT_HINT = "It was written for another model or LoRA setting: use a new checkpoint.uri (or job name)"


def check_fit(source: str, expected: dict, keys: set[str], shapes: dict[str, tuple], hint: str = CHECKPOINT_HINT) -> None:
    """Refuse (before anything is copied) a ``source`` with missing, unexpected or reshaped tensors.

    ``expected``: the model's tensors by name; ``keys`` and ``shapes``: what ``source`` holds.
    """
    tail = f". {hint}" if hint else ""
    missing, unexpected = set(expected) - keys, keys - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors of the model are missing from it ({_examples(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensors in it are not in the model ({_examples(unexpected)})")
        raise CheckpointMismatch(f"{source} does not fit this model: " + "; ".join(parts) + tail)
    for name, target in expected.items():  # every shape is checked before anything is copied
        shape = shapes[name]
        if shape != tuple(target.shape):
            raise CheckpointMismatch(f"{source}: tensor {name} has shape {shape}, the model's is "
                                     f"{tuple(target.shape)}{tail}")


def _load_sharded_training_weights(model, folder: Path, skip: tuple[str, ...], name: str = WEIGHTS_DIR) -> int:
    """``load_training_weights`` of a ``rarl_weights/`` checkpoint; collective when a process group is up.

    torch.distributed.checkpoint reads into the model's own tensors in place: each rank of a sharded
    model only the slices of its shards (whatever world size wrote them), a whole model everything.
    """
    reader = checked_reader(folder / name)
    stored = {k: tuple(v.size) for k, v in reader.read_metadata().state_dict_metadata.items()
              if isinstance(v, TensorStorageMetadata)}
    file_keys = {k for k in stored if not skip or _adapter_of(k, skip) is None}
    expected = training_tensors(model)
    check_fit(f"checkpoint {folder}", expected, file_keys, stored)
    with torch.no_grad():
        dcp.load({name: t.detach() for name, t in expected.items()}, storage_reader=reader)
    return len(expected)


def copy_into_reference(policy, reference) -> int:
    """Make ``reference`` (TRL's KL reference model) hold ``policy``'s weights, name by name; returns how many.

    Both have the same names (the same architecture); a sharded (FSDP2, DTensor) reference takes its
    local shards from a policy sharded alike, or slices them from a whole policy without communication.
    """
    source, target = policy.state_dict(), reference.state_dict()
    check_fit("the policy", target, set(source), {k: tuple(v.shape) for k, v in source.items()},
              hint="the KL reference model was built from another architecture")
    with torch.no_grad():
        for name, t in target.items():
            s = source[name]
            if isinstance(t, DTensor):
                if isinstance(s, DTensor):
                    if s.placements != t.placements or s.device_mesh.shape != t.device_mesh.shape:
                        raise RuntimeError(f"{name}: the policy is sharded as {s.placements} on mesh "
                                           f"{s.device_mesh.shape}, the KL reference as {t.placements} on "
                                           f"{t.device_mesh.shape}")
                    local = s.to_local()
                else:
                    local = distribute_tensor(s.detach().to(t.device), t.device_mesh, t.placements,
                                              src_data_rank=None).to_local()
                t.to_local().copy_(local)
            else:
                t.copy_(s.full_tensor() if isinstance(s, DTensor) else s)
    return len(target)


class ExactCheckpointMixin(TrainerCheckpointSeam):
    """For HF ``Trainer`` subclasses: checkpoints hold exact training tensors; restores are strict.

    The HF ``Trainer`` internals are overridden in ``trl_seam.TrainerCheckpointSeam``, which calls these hooks.
    ``rarl_save_checkpoint`` (HF's ``_save``, called for checkpoints only: the export saves with
    ``save_pretrained`` itself) writes ``rarl_weights.safetensors`` and the training arguments instead of HF's
    model files; ``rarl_load_checkpoint`` restores it strictly; ``rarl_check_rng_state`` refuses a checkpoint
    that lacks this process's RNG file (HF only logs that and continues with another random stream).
    A trainer whose ``rarl_checkpoint_reference`` is set also saves and restores its ``ref_model``.
    """

    rarl_checkpoint_reference = False

    def _rarl_reference(self):
        """The KL reference model that checkpoints carry (full fine-tuning, a stage after the first), or None."""
        return self.accelerator.unwrap_model(self.ref_model) if self.rarl_checkpoint_reference else None

    def rarl_save_checkpoint(self, output_dir: str | None) -> None:
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        save_training_weights(self.accelerator.unwrap_model(self.model), output_dir)
        if (reference := self._rarl_reference()) is not None:
            save_training_weights(reference, output_dir, REFERENCE_FILE)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def rarl_save_sharded_checkpoint(self, output_dir: str) -> None:
        """A sharded model (FSDP), in place of HF's ``_save_optimizer_and_scheduler``: weights and optimizer
        state as distributed checkpoints, one shard per rank.

        HF's own FSDP path would write the model too (``save_fsdp_model``: the active adapter only, without
        TRL's KL reference); ours is ``rarl_weights/`` (every training tensor), so only the optimizer and
        scheduler are taken from HF's layout (``optimizer_0/``, ``scheduler.pt``: what its resume reads).
        """
        save_sharded_training_weights(self.accelerator.unwrap_model(self.model), output_dir)
        if (reference := self._rarl_reference()) is not None:
            save_sharded_training_weights(reference, output_dir, REFERENCE_DIR)
        save_fsdp_optimizer(self.accelerator.state.fsdp_plugin, self.accelerator, self.optimizer, self.model,
                            output_dir)
        if self.args.should_save:
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_NAME))
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def rarl_load_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        fsdp = bool(getattr(self, "is_fsdp_enabled", False))
        written_sharded = (Path(resume_from_checkpoint) / WEIGHTS_DIR).is_dir()
        if written_sharded != fsdp:
            # its optimizer state is in the other layout, which HF's resume would skip without a word
            raise CheckpointMismatch(
                f"checkpoint {resume_from_checkpoint} was written with model.sharding "
                f"{'fsdp' if written_sharded else 'none'}; a run resumes mid-stage only with the same sharding "
                "(a sharded job also starts a stage from the last checkpoint of an unsharded one, never the "
                "other way)"
            )
        if fsdp:  # before accelerate reads optimizer_0/ (HF calls this first), whose reader is a plain pickle.load
            check_dcp_metadata(resume_from_checkpoint)
        load_training_weights(model if model is not None else self.accelerator.unwrap_model(self.model),
                              resume_from_checkpoint, sharded=fsdp)
        if (reference := self._rarl_reference()) is not None:
            load_training_weights(reference, resume_from_checkpoint, file=REFERENCE_FILE, sharded_dir=REFERENCE_DIR,
                                  sharded=fsdp)

    def rarl_check_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            name = f"rng_state_{self.args.process_index}.pth" if self.args.world_size > 1 else "rng_state.pth"
            if not (Path(checkpoint) / name).is_file():
                raise CheckpointMismatch(
                    f"checkpoint {checkpoint} has no {name}: it was written with another number of processes "
                    f"(this run has {self.args.world_size}); resume with the same world size or use a new "
                    "checkpoint.uri"
                )
