"""Adapter between the HF Trainer's checkpoint folders and ``rarl.storage.CheckpointStore``.

Why HF's own folders: ``Trainer.train(resume_from_checkpoint=...)`` already restores optimizer,
scheduler, every rank's RNG and the data position (it skips the consumed batches). The weights in
them are ours (``weights.py``: in-memory names, strict restore, the KL reference adapter
included), every rank's RNG file is collected on rank 0, and ``rarl_state.json`` adds stage, step
within the stage, the RMO random stream, the training settings, the metrics and the per-step
history. We move those folders through the store (``step-<global step>/``, files first, manifest
last, uploaded in the background).

Global steps count over all stages; the step inside a stage is the HF trainer's own counter.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from rarl_trainer.config import DistInfo, StagePlan, json_default, transfer_progress
from rarl_trainer.weights import REFERENCE_ADAPTER, CheckpointMismatch, load_training_weights

log = logging.getLogger(__name__)

STATE_FILE = "rarl_state.json"


@dataclass
class Restored:
    """A checkpoint restored into a local folder."""

    path: Path
    step: int
    state: dict[str, Any]

    @property
    def stage_index(self) -> int:
        return int(self.state["stage_index"])

    @property
    def stage_step(self) -> int:
        return int(self.state["stage_step"])

    @property
    def stage_complete(self) -> bool:
        return bool(self.state.get("stage_complete"))


def _barrier(dist_info: DistInfo) -> None:
    if dist_info.distributed:
        dist.barrier()


def restore_for_resume(store, dest: Path, dist_info: DistInfo) -> Restored | None:
    """Every node's local rank 0 restores the newest checkpoint that verifies into ``dest``; all ranks then agree.

    Why not rank 0 restores, then a broadcast: downloading a checkpoint (a full model's weights
    and optimizer) can outlast the process-group timeout while the other ranks wait in that
    broadcast. Here each node downloads on its own, at the same time as the others: its local
    rank 0 holds an exclusive file lock beside ``dest`` (the run folder, which is per node) from
    before a barrier until the restore is done, and the node's other ranks wait on that lock,
    not in a collective. The one collective afterwards (every rank's step, gathered) waits only
    as long as the slowest node's restore takes beyond the others'.

    Damaged or manifest-less step folders are skipped by the store (with a warning). Nodes that
    restored different steps (a checkpoint that verified on one node and not on another) are an
    error: the attempt fails rather than resume ranks from different weights.
    """
    if not dist_info.distributed:
        clean_dir(dest)
        info = store.restore_latest(dest, progress=transfer_progress("restore"))
        return None if info is None else Restored(dest, int(info.step), read_state(dest))
    # kept here: POSIX-only (the module stays importable elsewhere); only resumes lock
    import fcntl

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    marker = dest.parent / f".{dest.name}.restored.json"  # local rank 0's outcome, for its node's other ranks
    with open(dest.parent / f".{dest.name}.lock", "a") as lock:
        if dist_info.local_rank == 0:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # before the barrier: node-mates cannot read a stale marker
            marker.unlink(missing_ok=True)
            clean_dir(dest)
        dist.barrier()
        if dist_info.local_rank == 0:
            info = store.restore_latest(dest, progress=transfer_progress("restore"))
            marker.write_text(json.dumps({"step": None if info is None else info.step}))
        else:
            fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # released when local rank 0 is done (or dies)
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    if not marker.is_file():
        raise RuntimeError(f"rank {dist_info.rank}: local rank 0 ended without restoring a checkpoint into {dest}")
    step = json.loads(marker.read_text())["step"]
    steps: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(steps, step)
    if len(set(steps)) > 1:
        raise RuntimeError(f"the nodes restored different checkpoints from {store.uri} (step by rank: {steps}); "
                           "not resuming ranks from different weights")
    if step is None:
        return None
    return Restored(dest, int(step), read_state(dest))


def read_state(folder: Path) -> dict[str, Any]:
    """A restored checkpoint's ``rarl_state.json``; one without ``config_hash`` is refused.

    Why: the resume compares ``config_hash`` with this job's to tell a checkpoint of other training
    settings (``checkpoint.onSpecChange``); a state without it would skip that check (Issue 29).
    """
    path = Path(folder) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointMismatch(f"checkpoint state {path} cannot be read ({type(e).__name__}: {e}); "
                                 "use a new checkpoint.uri") from None
    if not isinstance(state, dict) or not isinstance(state.get("config_hash"), str) or not state["config_hash"]:
        raise CheckpointMismatch(
            f"checkpoint state {path} has no config_hash, so which training settings wrote it cannot be checked "
            "against this job's (checkpoint.onSpecChange); not resuming from it: use a new checkpoint.uri (or "
            "delete its checkpoints)")
    return state


def load_stage_start_weights(model, folder: Path, sharded: bool) -> None:
    """A stage-boundary checkpoint's trained weights into ``model`` (strict), before the next stage's trainer.

    The finished stage's KL reference adapter in it is skipped: the next GRPO trainer copies the
    restored adapter into a new one, exactly as the uninterrupted run did at that stage's start.
    A distributed checkpoint (``rarl_weights/``) is read only by a ``sharded`` job (``model.sharding: fsdp``);
    any other job refuses one: its metadata is a pickle, not to be opened where it is not expected.
    """
    load_training_weights(model, folder, skip_adapters=(REFERENCE_ADAPTER,), sharded=sharded)


def collect_rng_files(folder: Path, dist_info: DistInfo) -> None:
    """Every rank's ``rng_state_<rank>.pth`` into rank 0's checkpoint folder (the one that is uploaded).

    HF writes each rank's file on that rank's own disk: on other nodes it would never reach the
    store, and a resumed run there would sample from another random stream.
    """
    if not dist_info.distributed:
        return

    name = f"rng_state_{dist_info.rank}.pth"
    mine = (folder / name).read_bytes() if (folder / name).is_file() else None
    everyone: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(everyone, (name, mine))
    if dist_info.is_main:
        for rank, (rank_name, data) in enumerate(everyone):
            if data is None:
                raise RuntimeError(f"rank {rank} wrote no {rank_name} into its checkpoint folder")
            path = folder / rank_name
            if not path.is_file():
                path.write_bytes(data)


@dataclass(frozen=True)
class NodeLayout:
    """Which ranks upload what of a sharded checkpoint when the job's nodes do not share a disk.

    Each rank writes its shards (``*.distcp``) into its node's checkpoint folder. Rank 0 uploads
    its folder (its node-mates' shards included) and writes the manifest; the lowest rank of every
    other node (a *part leader*) uploads that node's shards as a part rank 0 waits for.
    """

    leader: bool = False  # this rank uploads its node's part
    parts: tuple[str, ...] = ()  # every part of a save, the same list on every rank (empty: one folder)

    @property
    def split(self) -> bool:
        return bool(self.parts)


def node_layout(dist_info: DistInfo, run_dir: Path) -> NodeLayout:
    """Collective: ranks grouped by (host, run folder); every group but rank 0's is a part of each save.

    Why the folder and not only the host: two launches on one host with separate run folders are two
    disks as far as the checkpoint is concerned (that is how the tests make two nodes).
    """
    if not dist_info.distributed:
        return NodeLayout()

    mine = (socket.gethostname(), str(Path(run_dir).resolve()))
    everyone: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(everyone, mine)
    groups: dict[tuple, list[int]] = {}
    for rank, key in enumerate(everyone):
        groups.setdefault(tuple(key), []).append(rank)
    leaders = sorted(min(ranks) for ranks in groups.values() if 0 not in ranks)
    return NodeLayout(leader=dist_info.rank in leaders, parts=tuple(part_name(r) for r in leaders))


def part_name(rank: int) -> str:
    return f"rank-{rank}"


def shard_files(folder: Path) -> list[str]:
    """The torch distributed checkpoint shards in a checkpoint folder (written by this node's ranks)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.distcp"))


class StopFlag:
    """Set from a signal handler; read at step ends on every rank (agreed through an all-reduce)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str = "SIGTERM") -> None:
        self.signal_name = self.signal_name or name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def agreed(self, dist_info: DistInfo) -> bool:
        if not dist_info.distributed:
            return self.is_set()

        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = torch.tensor([1.0 if self.is_set() else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if t.item() > 0:
            self.set(self.signal_name or "SIGTERM")
            return True
        return False


class StoreCheckpointCallback(TrainerCallback):
    """Checkpoint every ``every_steps`` global steps, at the stage's end and on a stop request."""

    def __init__(
        self,
        uploader,
        plan: StagePlan,
        every_steps: int,
        dist_info: DistInfo,
        stop: StopFlag,
        run_state: Callable[[int, bool], dict[str, Any]],
        config_hash: str,
        after_save: Callable[[], None] | None = None,
        layout: NodeLayout | None = None,
        parts_timeout: float = 3600.0,
    ):
        self.uploader = uploader  # rank 0's, or a part leader's (layout), else None
        self.plan = plan
        self.every_steps = every_steps
        self.dist_info = dist_info
        self.stop = stop
        self.run_state = run_state
        self.config_hash = config_hash
        self.after_save = after_save  # rank 0, after each checkpoint is handed to the uploader (dashboards)
        self.layout = layout or NodeLayout()
        self.parts_timeout = parts_timeout
        self.saved_steps: list[int] = []
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        global_step = self.plan.offset + state.global_step
        if self.stop.agreed(self.dist_info):
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        if global_step % self.every_steps == 0 or state.global_step >= self.plan.stage.steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _barrier(self.dist_info)  # every rank has written its RNG state
        collect_rng_files(folder, self.dist_info)
        token = self.save_token()
        global_step = self.plan.offset + state.global_step
        if self.layout.leader:
            self.uploader.submit_part(folder, global_step, name=part_name(self.dist_info.rank), token=token,
                                      paths=shard_files(folder))
        if self.dist_info.is_main:
            complete = state.global_step >= self.plan.stage.steps
            run_state = self.run_state(state.global_step, complete)
            (folder / STATE_FILE).write_text(json.dumps(run_state, default=json_default))
            self.uploader.submit(
                folder,
                step=global_step,
                stage=self.plan.stage.name,
                config_hash=self.config_hash,
                extra={"stage_index": self.plan.index, "stage_step": state.global_step, "stage_complete": complete,
                       "training_settings": run_state["training_settings"]},
                parts=self.layout.parts,
                token=token,
                parts_timeout=self.parts_timeout,
            )
            self.saved_steps.append(global_step)
            if self.after_save is not None:
                self.after_save()
        return control

    def save_token(self) -> str | None:
        """Rank 0's name for this save, known to every rank (its parts carry it: an older attempt's do not)."""
        if not self.layout.split:
            return None

        token = [uuid.uuid4().hex if self.dist_info.is_main else None]
        dist.broadcast_object_list(token, src=0)
        return token[0]


def upload_tensorboard(ckpt_store, folder: Path) -> None:
    """``folder`` (the run's TensorBoard event files) to ``<checkpoint.uri>/tensorboard/``, next to the steps.

    Event-file names are unique per writer (time, host, pid), so a resumed attempt adds its files beside
    the earlier ones. Not part of any checkpoint: restores never read it. A failed upload is a warning.
    """
    if not folder.is_dir():
        return
    try:
        ckpt_store.store.upload_tree(folder, "tensorboard")
    except Exception as e:
        log.warning(f"rarl: warning: uploading the TensorBoard logs to {ckpt_store.uri}/tensorboard failed: {e}")


def finish_uploads(uploader, timeout: float | None = None) -> bool:
    """Wait for the last upload; False (logged) when it failed or is still running."""
    if uploader is None:
        return True
    try:
        done = uploader.wait(timeout)
    except Exception as e:
        log.warning(f"rarl: checkpoint upload failed: {e}")
        return False
    return done


def clean_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
