"""A run's checkpoints: the store at ``checkpoint.uri``, its uploaders, resuming from it, and each stage's saves.

Rank 0 uploads the checkpoints (its ``uploader``); in a sharded run each node's shards are on its own disk and
the node's lowest rank uploads them (``part_uploader``, ``checkpointing.NodeLayout``).
"""

from __future__ import annotations

import logging
from typing import Any

from rarl.api.rules import resume_decision
from rarl.api.settings import training_settings
from rarl.storage import AsyncCheckpointUploader, CheckpointStore
from rarl_trainer.checkpointing import (
    NodeLayout,
    Restored,
    StoreCheckpointCallback,
    finish_uploads,
    node_layout,
    restore_for_resume,
    upload_tensorboard,
)
from rarl_trainer.config import ConfigError, StagePlan
from rarl_trainer.run_context import RunContext
from rarl_trainer.sharding import sharded

log = logging.getLogger(__name__)


class CheckpointSession:
    """The checkpoint store and this rank's uploaders for one run (``open`` makes it)."""

    def __init__(self, ctx: RunContext, resume: str, store: CheckpointStore,
                 uploader: AsyncCheckpointUploader | None, layout: NodeLayout,
                 part_uploader: AsyncCheckpointUploader | None):
        self.ctx = ctx
        self.resume = resume  # "auto": continue from the newest checkpoint; "never": start over
        self.store = store
        self.uploader = uploader  # rank 0's
        self.layout = layout  # a sharded run's nodes
        self.part_uploader = part_uploader  # a part leader's uploader of its node's shards

    @classmethod
    def open(cls, ctx: RunContext, resume: str) -> CheckpointSession:
        spec = ctx.spec
        store = CheckpointStore(spec.checkpoint.uri, spec.storage)
        uploader = (AsyncCheckpointUploader(store, keep=spec.checkpoint.keep, delete_local=True)
                    if ctx.dist.is_main else None)
        layout, part_uploader = NodeLayout(), None
        if sharded(spec):  # each node's shards are on its own disk: its lowest rank uploads them
            layout = node_layout(ctx.dist, ctx.run_dir)
            if layout.leader:
                part_uploader = AsyncCheckpointUploader(store, delete_local=True)
        return cls(ctx, resume, store, uploader, layout, part_uploader)

    # ------------------------------------------------------------------ resume
    def try_resume(self) -> Restored | None:
        """The checkpoint to continue from (its record continued in ``ctx.progress``), or None: from the start."""
        ctx, spec = self.ctx, self.ctx.spec
        if self.resume != "auto":
            if ctx.dist.is_main and self.store.latest() is not None:
                log.warning(f"rarl: warning: --resume never, but {spec.checkpoint.uri} already holds checkpoints; "
                            "they will be overwritten step by step")
            return None
        restored = restore_for_resume(self.store, ctx.run_dir / "resume", ctx.dist)
        if restored is None:
            return None
        restored = self.check_settings(restored)
        if restored is None:
            return None
        state = restored.state
        ctx.progress.resume_from(state)
        if ctx.dist.is_main:
            where = (f"the end of stage {state.get('stage_name')}" if restored.stage_complete
                     else f"stage {state.get('stage_name')}, step {restored.stage_step}")
            log.info(f"rarl: resuming from checkpoint step {restored.step} of {spec.total_steps()} ({where}) "
                     f"at {spec.checkpoint.uri}")
        return restored

    def check_settings(self, restored: Restored) -> Restored | None:
        """A checkpoint belongs to one set of training settings: ``checkpoint.onSpecChange`` decides otherwise.

        Returns the checkpoint to resume, or None when the old checkpoints were deleted (restart).
        """
        ctx = self.ctx
        state = restored.state  # its config_hash is there: checkpointing.read_state refuses a state without
        decision = resume_decision(ctx.spec, restored.step, state["config_hash"], state.get("training_settings"))
        where, what = decision.where, decision.what
        if decision.action == "refuse":
            raise ConfigError(decision.message)
        if decision.action == "resume":
            if decision.changed and ctx.dist.is_main:
                log.warning(f"rarl: warning: {where} was written under other training settings ({what}); "
                            "continuing from it (checkpoint.onSpecChange: resume)")
            return restored
        if ctx.dist.is_main:
            deleted = self.store.delete_all()
            log.warning(f"rarl: {where} was written under other training settings ({what}): deleted its "
                        f"{len(deleted)} checkpoint folder(s) and starting from step 0 "
                        "(checkpoint.onSpecChange: restart)")
        ctx.barrier()
        return None

    # ------------------------------------------------------------------ saving
    def run_state(self, trainer, plan: StagePlan):
        """The state file a checkpoint of ``plan``'s stage carries, built at save time."""
        ctx = self.ctx

        def build(stage_step: int, complete: bool) -> dict[str, Any]:
            record = ctx.progress.record
            record.train_seconds = ctx.train_seconds()
            return {
                "stage_index": plan.index,
                "stage_name": plan.stage.name,
                "stage_step": stage_step,
                "global_step": plan.offset + stage_step,
                "stage_complete": complete,
                "config_hash": ctx.config_hash,
                "training_settings": training_settings(ctx.spec, by_alias=True),
                **record.to_state(),
                "rarl": trainer.rarl_state() if hasattr(trainer, "rarl_state") else {},
            }

        return build

    def checkpoint_callback(self, trainer, plan: StagePlan) -> StoreCheckpointCallback:
        """The callback that saves ``plan``'s stage every ``checkpoint.everySteps`` (and at its end, or a stop)."""
        ctx, spec = self.ctx, self.ctx.spec
        return StoreCheckpointCallback(self.uploader or self.part_uploader, plan, spec.checkpoint.every_steps,
                                       ctx.dist, ctx.stop, self.run_state(trainer, plan), ctx.config_hash,
                                       after_save=self.upload_tensorboard, layout=self.layout,
                                       parts_timeout=spec.run_policy.collective_timeout_seconds)

    def upload_tensorboard(self) -> None:
        """Rank 0: the TensorBoard event files to ``<checkpoint.uri>/tensorboard/`` (with each checkpoint, at the end)."""
        if self.ctx.tensorboard and self.ctx.dist.is_main:
            upload_tensorboard(self.store, self.ctx.tensorboard_dir)

    def latest_uri(self) -> str | None:
        """Rank 0: the newest checkpoint uploaded in full, or None (none yet in this process)."""
        if self.uploader is not None and self.uploader.last_completed is not None:
            return self.uploader.last_completed.uri
        return None

    def finish(self) -> bool:
        """After the run's last collective: wait for this rank's uploads (False, warned: one failed)."""
        if not self.ctx.dist.is_main:
            ok = finish_uploads(self.part_uploader, None)  # rank 0's last checkpoint waits for this part
            if not ok:
                log.warning("rarl: warning: uploading this node's part of the last checkpoint failed")
            return ok
        ok = finish_uploads(self.uploader, None)
        if not ok:
            log.warning("rarl: warning: the last checkpoint upload failed")
        return ok
