"""The run: stages in order (GRPO or SFT), evaluations, checkpoints, progress and the export.

One ``Run`` per process; under torchrun every rank runs the same code and only rank 0 writes
checkpoints, progress and exports. Stage k+1 trains the very model object stage k left, so it
starts from stage k's weights (for LoRA: the same adapter keeps training, with a fresh optimizer).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from rarl.api.settings import changed_settings, config_hash, describe_changes, spec_change_refusal, training_settings
from rarl_trainer.checkpointing import (
    Restored,
    StopFlag,
    StoreCheckpointCallback,
    clean_dir,
    finish_uploads,
    load_stage_start_weights,
    restore_for_resume,
)
from rarl_trainer.config import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    DistInfo,
    StagePlan,
    json_default,
    stage_plan,
)

UPLOAD_GRACE_S = 90.0


def make_reporter(run_dir: Path):
    """The Kubernetes status reporter inside a cluster job, else progress.json in the run folder."""
    from rarl.progress import FileProgressReporter

    name, ns = os.environ.get("RARL_JOB_NAME"), os.environ.get("RARL_JOB_NAMESPACE")
    if name and ns and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            from rarl.progress_k8s import KubernetesStatusReporter

            return KubernetesStatusReporter(name, ns)
        except Exception as e:
            print(f"rarl: Kubernetes status reporting unavailable ({e}); writing progress.json", file=sys.stderr)
    return FileProgressReporter(run_dir / "progress.json")


HISTORY_KEYS = ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy", "step_time",
                "frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio")


def history_key(key: str) -> bool:
    """Per-step figures kept in history.json and checkpoints (the rest of TRL's log is dropped)."""
    return key in HISTORY_KEYS or key.startswith(("rarl/", "rewards/"))


class RunCallback(TrainerCallback):
    """Per logged step: history row, plain progress line and a progress report (rank 0); periodic eval."""

    def __init__(self, run: Run, plan: StagePlan):
        self.run = run
        self.plan = plan
        self.t0 = time.monotonic()
        self.start_step: int | None = None
        self.seconds = 0.0  # time spent in logging/progress (benchmarks report it)

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.monotonic()
        self.start_step = state.global_step

    def eta(self, stage_step: int) -> float | None:
        done = stage_step - (self.start_step or 0)
        if done <= 0:
            return None
        per_step = (time.monotonic() - self.t0) / done
        return per_step * (self.run.spec.total_steps() - (self.plan.offset + stage_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        t0 = time.perf_counter()
        try:
            self._on_log(state, logs)
        finally:
            self.seconds += time.perf_counter() - t0

    def _on_log(self, state, logs) -> None:
        if not logs or ("loss" not in logs and "reward" not in logs):
            return
        global_step = self.plan.offset + state.global_step
        row = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and history_key(k)}
        row.update(global_step=global_step, stage=self.plan.stage.name, stage_step=state.global_step)
        if self.run.dist.is_main:
            self.run.history.append(row)
            eta = self.eta(state.global_step)
            self.run.report(reward=row.get("reward"), eta=eta)
            parts = [f"[{self.plan.stage.name}] step {global_step}/{self.run.spec.total_steps()}"]
            if "reward" in row:
                parts.append(f"reward {row['reward']:.3f}")
                terms = [f"{t[:3]} {row.get(f'rewards/{t}/mean', float('nan')):.2f}"
                         for t in ("format", "regression", "ranking")]
                parts.append("(" + " ".join(terms) + ")")
                parts.append(f"mut {row.get('rarl/mutation_rate', 0.0):.2f}")
            if "loss" in row:
                parts.append(f"loss {row['loss']:.4f}")
            if eta is not None:
                parts.append(f"eta {eta:.0f}s")
            print(" ".join(parts), flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        every = self.run.spec.grpo.eval_every_steps
        global_step = self.plan.offset + state.global_step
        if every and global_step % every == 0 and state.global_step < self.plan.stage.steps:
            metrics = self.run.evaluate(f"step {global_step}")
            if self.run.dist.is_main:
                self.run.metrics.setdefault("during", []).append({"global_step": global_step, **metrics})
        return control


class Run:
    """Everything one trainer process does for a job."""

    def __init__(self, job, run_dir: Path, resume: str = "auto", reporter=None, dist: DistInfo | None = None):
        self.job = job
        self.spec = job.spec
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.dist = dist or DistInfo.from_env()
        self.reporter = reporter
        self.stop = StopFlag()
        self.metrics: dict[str, Any] = {"baseline": None, "stages": {}}
        self.history: list[dict[str, Any]] = []
        self.last_eval_rows: list[dict[str, Any]] = []
        self.samples: dict[str, list[dict[str, Any]]] = {}  # a few answers per evaluation, for the report
        self.started = time.monotonic()
        self.seconds_before = 0.0  # training time of earlier attempts (from the checkpoint)
        self.train_seconds: float | None = None  # all attempts, up to the newest checkpoint
        self.latest_checkpoint: str | None = None
        self.current_stage: str | None = None
        self.current_step = 0
        self.config_hash = config_hash(self.spec)
        self.uploader = None
        self.ckpt_store = None

    # ------------------------------------------------------------------ helpers
    def barrier(self) -> None:
        if self.dist.distributed:
            import torch.distributed as dist

            dist.barrier()

    def report(self, reward: float | None = None, eta: float | None = None, model_uri: str | None = None,
               message: str | None = None) -> None:
        if not self.dist.is_main or self.reporter is None:
            return
        from rarl.progress import Progress

        if self.uploader is not None and self.uploader.last_completed is not None:
            self.latest_checkpoint = self.uploader.last_completed.uri
        latest = self.latest_metrics()
        try:
            self.reporter.report(Progress(
                stage=self.current_stage, step=self.current_step, total_steps=self.spec.total_steps(),
                reward=reward, metrics=latest, latest_checkpoint=self.latest_checkpoint, eta_seconds=eta,
                model_uri=model_uri, message=message,
            ))
        except Exception as e:
            print(f"rarl: progress report failed: {e}", file=sys.stderr)

    def latest_metrics(self) -> dict[str, float]:
        latest: dict[str, float] = dict(self.metrics.get("baseline") or {})
        for m in (self.metrics.get("stages") or {}).values():
            if m.get("end"):
                latest = dict(m["end"])
        keep = ("n1/mae", "n1/acc", "n1/srcc", "n1/plcc", "invalid_rate")
        return {k: v for k, v in latest.items() if k in keep or k.endswith("/tau")}

    def install_signal_handlers(self) -> None:
        def handler(signum, frame):
            name = signal.Signals(signum).name
            if self.dist.is_main:
                print(f"rarl: {name} received: checkpointing at the end of this step", file=sys.stderr, flush=True)
            self.stop.set(name)

        signal.signal(signal.SIGTERM, handler)
        if threading_main():
            signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------ setup
    def rank0_first(self, fn) -> None:
        """Run ``fn`` on rank 0, then on the others (caches and generators write files others reuse).

        A ConfigError on rank 0 is shared with every rank, so all exit 2 together instead of the
        others waiting in a barrier.
        """
        error: list[str | None] = [None]
        if self.dist.is_main:
            try:
                fn()
            except ConfigError as e:
                error[0] = str(e)
        if self.dist.distributed:
            import torch.distributed as dist

            dist.broadcast_object_list(error, src=0)
        if error[0] is not None:
            raise ConfigError(error[0])
        if not self.dist.is_main:
            fn()

    def load_data(self) -> None:
        from rarl_trainer.data import DataError, load_items

        def load() -> None:
            try:
                self.train_items = load_items(self.spec.dataset, "train", storage=self.spec.storage).items
                self.eval_items = load_items(self.spec.dataset, "eval", storage=self.spec.storage).items
            except DataError as e:
                raise ConfigError(f"dataset: {e}") from None

        self.rank0_first(load)

    def load_model(self) -> None:
        import torch

        from rarl_trainer.models import ModelLoadError, load_model, resolve_dtype

        device = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else None

        def load() -> None:
            try:
                self.loaded = load_model(self.spec.model, self.spec.storage, device=device, seed=self.spec.grpo.seed)
            except ModelLoadError as e:
                raise ConfigError(f"model: {e}") from None

        self.rank0_first(load)
        self.use_cpu = not torch.cuda.is_available()
        self.bf16 = resolve_dtype(self.spec.model.dtype) == torch.bfloat16
        if self.spec.dataset.modality == "image" and not self.loaded.is_vlm:
            raise ConfigError(
                f"model: {self.spec.model.base} is a text model but dataset.modality is 'image'; "
                "use a vision-language model or a text dataset"
            )

    def eval_table(self):
        from rarl_trainer.evaluation import eval_queries
        from rarl_trainer.grpo import QueryTable

        if not hasattr(self, "_eval_table"):
            g = self.spec.grpo
            queries = eval_queries(self.eval_items, g.eval_list_sizes, g.eval_queries, g.seed)
            self._eval_table = QueryTable(queries, self.spec.dataset, self.spec.dataset.modality,
                                          self.loaded.string_content)
        return self._eval_table

    def evaluate(self, label: str) -> dict[str, float]:
        from rarl_trainer.evaluation import run_eval

        t0 = time.monotonic()
        metrics, rows = run_eval(self.loaded, self.eval_table(), self.spec.grpo.max_completion_length,
                                 float(self.spec.dataset.target.precision), self.dist.rank, self.dist.world_size,
                                 max_prompt_length=self.spec.grpo.max_prompt_length)
        self.last_eval_rows = rows
        if label == "baseline" or label.startswith("end of"):
            self.samples[label] = sample_rows(rows)
        if self.dist.is_main:
            shown = {k: round(v, 3) for k, v in metrics.items()
                     if k in ("n1/mae", "n1/acc", "invalid_rate") or k.endswith("/tau")}
            print(f"[eval {label}] {json.dumps(shown)} ({time.monotonic() - t0:.1f}s)", flush=True)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def open_checkpoints(self) -> None:
        from rarl.storage import AsyncCheckpointUploader, CheckpointStore

        self.ckpt_store = CheckpointStore(self.spec.checkpoint.uri, self.spec.storage)
        if self.dist.is_main:
            self.uploader = AsyncCheckpointUploader(self.ckpt_store, keep=self.spec.checkpoint.keep,
                                                    delete_local=True)

    def try_resume(self) -> Restored | None:
        if self.resume != "auto":
            if self.dist.is_main and self.ckpt_store.latest() is not None:
                print(f"rarl: warning: --resume never, but {self.spec.checkpoint.uri} already holds checkpoints; "
                      "they will be overwritten step by step", file=sys.stderr)
            return None
        dest = self.run_dir / "resume"
        if self.dist.local_rank == 0:
            clean_dir(dest)
        self.barrier()
        restored = restore_for_resume(self.ckpt_store, dest, self.dist)
        if restored is None:
            return None
        restored = self.check_settings(restored)
        if restored is None:
            return None
        state = restored.state
        self.metrics = state.get("metrics") or self.metrics
        self.history = state.get("history") or []
        self.last_eval_rows = state.get("eval_rows") or []
        self.samples = state.get("samples") or {}
        self.train_seconds = state.get("train_seconds")
        self.seconds_before = self.train_seconds or 0.0
        if self.dist.is_main:
            where = (f"the end of stage {state.get('stage_name')}" if restored.stage_complete
                     else f"stage {state.get('stage_name')}, step {restored.stage_step}")
            print(f"rarl: resuming from checkpoint step {restored.step} of {self.spec.total_steps()} ({where}) "
                  f"at {self.spec.checkpoint.uri}", flush=True)
        return restored

    def check_settings(self, restored: Restored) -> Restored | None:
        """A checkpoint belongs to one set of training settings: ``checkpoint.onSpecChange`` decides otherwise.

        Returns the checkpoint to resume, or None when the old checkpoints were deleted (restart).
        """
        state = restored.state
        if state.get("config_hash") in (None, self.config_hash):
            return restored
        old = state.get("training_settings")
        what = describe_changes(changed_settings(old, training_settings(self.spec, by_alias=True)) if old else [])
        where = f"checkpoint step {restored.step} at {self.spec.checkpoint.uri}"
        policy = self.spec.checkpoint.on_spec_change
        if policy == "fail":
            raise ConfigError(spec_change_refusal(where, what))
        if policy == "resume":
            if self.dist.is_main:
                print(f"rarl: warning: {where} was written under other training settings ({what}); "
                      "continuing from it (checkpoint.onSpecChange: resume)", file=sys.stderr, flush=True)
            return restored
        if self.dist.is_main:
            deleted = self.ckpt_store.delete_all()
            print(f"rarl: {where} was written under other training settings ({what}): deleted its "
                  f"{len(deleted)} checkpoint folder(s) and starting from step 0 (checkpoint.onSpecChange: restart)",
                  file=sys.stderr, flush=True)
        self.barrier()
        return None

    def run_state(self, trainer, plan: StagePlan):
        def build(stage_step: int, complete: bool) -> dict[str, Any]:
            self.train_seconds = round(self.seconds_before + time.monotonic() - self.started, 1)
            return {
                "stage_index": plan.index,
                "stage_name": plan.stage.name,
                "stage_step": stage_step,
                "global_step": plan.offset + stage_step,
                "stage_complete": complete,
                "config_hash": self.config_hash,
                "training_settings": training_settings(self.spec, by_alias=True),
                "metrics": self.metrics,
                "history": self.history,
                "eval_rows": self.last_eval_rows,
                "samples": self.samples,
                "train_seconds": self.train_seconds,
                "rarl": trainer.rarl_state() if hasattr(trainer, "rarl_state") else {},
            }

        return build

    # ------------------------------------------------------------------ stages
    def drop_reference_adapter(self) -> None:
        """TRL copies the adapter into a frozen "ref" adapter (the KL reference) per trainer; drop the old one."""
        model = self.loaded.model
        if hasattr(model, "peft_config") and "ref" in model.peft_config:
            model.delete_adapter("ref")
            model.set_adapter("default")

    def check_rollout_engine(self) -> str:
        """grpo.rolloutEngine resolved (auto -> merged); a vLLM engine that cannot run here is a ConfigError."""
        from rarl_trainer.rollout import RolloutEngineError, resolve_engine

        if not any(s.kind == "grpo" for s in self.spec.stages):
            return "trl"
        try:
            return resolve_engine(self.spec.grpo.rollout_engine)
        except RolloutEngineError as e:
            raise ConfigError(str(e)) from None

    def train_strata(self) -> list[int] | None:
        """Each training item's stratum under ``dataset.sampling: balanced`` (None: uniform sampling)."""
        if self.spec.dataset.sampling != "balanced":
            return None
        from rarl_trainer.prompts import balanced_strata

        return balanced_strata(self.train_items, self.spec.dataset.target)

    def make_trainer(self, plan: StagePlan):
        from rarl_trainer.grpo import QueryTable, draw_queries

        self.drop_reference_adapter()
        stage, spec = plan.stage, self.spec
        out_dir = str(self.run_dir / "hf" / stage.name)
        seed = spec.grpo.seed * 1000 + plan.index
        if stage.kind == "sft":
            from rarl_trainer.sft import make_sft_trainer, queries_per_step

            count = stage.steps * queries_per_step(spec, self.dist.world_size)
            table = QueryTable(draw_queries(self.train_items, stage.list_sizes, count, seed, self.train_strata()),
                               spec.dataset, spec.dataset.modality, self.loaded.string_content)
            trainer = make_sft_trainer(self.loaded, table, spec, stage, out_dir, world_size=self.dist.world_size,
                                       use_cpu=self.use_cpu, bf16=self.bf16, callbacks=[])
        else:
            from trl import GRPOConfig

            from rarl_trainer.grpo import RARLGRPOTrainer, RewardTerms, grpo_config_kwargs, prompts_per_step
            from rarl_trainer.rewards import RewardConfig
            from rarl_trainer.rmo import RMOConfig
            from rarl_trainer.rollout import vllm_config_kwargs

            engine = self.check_rollout_engine()
            count = stage.steps * prompts_per_step(spec, self.dist.world_size)
            table = QueryTable(draw_queries(self.train_items, stage.list_sizes, count, seed, self.train_strata()),
                               spec.dataset, spec.dataset.modality, self.loaded.string_content)
            reward_cfg = RewardConfig.from_spec(spec, stage)
            terms = RewardTerms(reward_cfg, spec.grpo.num_generations)
            args = GRPOConfig(
                output_dir=out_dir,
                **grpo_config_kwargs(spec, stage, world_size=self.dist.world_size, use_cpu=self.use_cpu,
                                     bf16=self.bf16),
                reward_weights=terms.weights(),
                generation_kwargs=self.loaded.generation_kwargs() or None,
                gradient_checkpointing=spec.model.gradient_checkpointing,
                **(vllm_config_kwargs() if engine == "vllm" else {}),
            )
            trainer = RARLGRPOTrainer(
                model=self.loaded.model,
                reward_funcs=terms.functions(),
                args=args,
                train_dataset=table.to_dataset(),
                processing_class=self.loaded.processor,
                reward_config=reward_cfg,
                rmo_config=RMOConfig.from_spec(stage.rmo, spec.dataset.target),
                rmo_seed=seed,
                rollout_engine=engine,
                max_prompt_length=spec.grpo.max_prompt_length,
            )
            trainer.rarl_reward_terms = terms
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        trainer.rarl_run_callback = RunCallback(self, plan)
        trainer.add_callback(trainer.rarl_run_callback)
        ckpt_cb = StoreCheckpointCallback(self.uploader, plan, self.spec.checkpoint.every_steps, self.dist,
                                          self.stop, self.run_state(trainer, plan), self.config_hash)
        trainer.add_callback(ckpt_cb)
        return trainer, ckpt_cb

    def stage_metrics(self, name: str) -> dict[str, Any]:
        return self.metrics["stages"].setdefault(name, {})

    def run_stages(self, restored: Restored | None) -> int:
        plans = stage_plan(self.spec)
        start, resume_dir, rarl_state = 0, None, {}
        if restored is not None:
            rarl_state = restored.state.get("rarl") or {}
            if restored.stage_complete:  # the next stage starts from these weights (all done: the export does)
                start = restored.stage_index + 1
                load_stage_start_weights(self.loaded.model, restored.path)
            else:
                start, resume_dir = restored.stage_index, restored.path
        if self.metrics.get("baseline") is None:
            self.current_stage = plans[0].stage.name
            self.metrics["baseline"] = self.evaluate("baseline")
            self.report(message="baseline evaluated")
        for plan in plans[start:]:
            self.current_stage = plan.stage.name
            self.current_step = plan.offset + (restored.stage_step if resume_dir is not None else 0)
            trainer, ckpt_cb = self.make_trainer(plan)
            self.ensure_previous_end(plans, plan)
            sm = self.stage_metrics(plan.stage.name)
            if "start" not in sm:
                prev = self.metrics["stages"].get(plans[plan.index - 1].stage.name, {}) if plan.index else {}
                sm["start"] = prev.get("end") or self.metrics["baseline"]
            if resume_dir is not None and hasattr(trainer, "load_rarl_state"):
                trainer.load_rarl_state(rarl_state)
            self._track_steps(trainer, plan)
            # Mid-stage: HF restores optimizer, scheduler, RNG and data position; our trainers restore the
            # exact weights, KL reference adapter included (weights.ExactCheckpointMixin).
            trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir is not None else None)
            resume_dir = None
            if ckpt_cb.stopped:
                return self.interrupted()
            sm["end"] = self.evaluate(f"end of {plan.stage.name}")
            self.report(message=f"stage {plan.stage.name} done")
        self.ensure_previous_end(plans, None)
        return EXIT_OK

    def ensure_previous_end(self, plans: list[StagePlan], plan: StagePlan | None) -> None:
        """A resumed run may have checkpointed a finished stage before its end evaluation: run it now."""
        index = plan.index - 1 if plan is not None else len(plans) - 1
        if index < 0:
            return
        sm = self.stage_metrics(plans[index].stage.name)
        if "end" not in sm:
            sm["end"] = self.evaluate(f"end of {plans[index].stage.name}")

    def _track_steps(self, trainer, plan: StagePlan) -> None:
        run = self

        class Steps(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                run.current_step = plan.offset + state.global_step

        trainer.add_callback(Steps())

    def interrupted(self) -> int:
        ok = finish_uploads(self.uploader, UPLOAD_GRACE_S) if self.dist.is_main else True
        if self.dist.is_main:
            last = self.uploader.last_completed if self.uploader else None
            if ok and last is not None:
                self.latest_checkpoint = last.uri
                msg = f"interrupted ({self.stop.signal_name}) after checkpoint {last.uri}"
                self.report(message=msg)
                print(f"rarl: {msg}", file=sys.stderr, flush=True)
                write_termination_log(msg)
        flags = [1 if ok else 0]
        if self.dist.distributed:
            import torch.distributed as dist

            dist.broadcast_object_list(flags, src=0)
        return EXIT_INTERRUPTED if flags[0] else 1

    # ------------------------------------------------------------------ export
    def export(self) -> str | None:
        from rarl_trainer.export import RunSummary, export_run

        uri = None
        if self.dist.is_main:
            dest = self.run_dir / "export"
            clean_dir(dest)
            self.metrics["final"] = self.latest_full_metrics()
            self.drop_reference_adapter()
            summary = RunSummary(self.job.name, self.spec, list(self.spec.grpo.eval_list_sizes), self.samples,
                                 self.train_seconds)
            uri = export_run(self.loaded, dest, self.spec.output.uri, self.spec.storage, self.metrics, self.history,
                             self.last_eval_rows, summary, merge=self.spec.output.merge_adapter)
            (self.run_dir / "metrics.json").write_text(json.dumps(self.metrics, indent=2, default=json_default))
            self.current_step = self.spec.total_steps()
            self.report(model_uri=uri, message="exported")
            print(f"rarl: model exported to {uri}", flush=True)
        self.barrier()
        return uri

    def latest_full_metrics(self) -> dict[str, float]:
        latest = self.metrics.get("baseline") or {}
        for m in self.metrics["stages"].values():
            if m.get("end"):
                latest = m["end"]
        return dict(latest)

    def write_weight_digest(self) -> None:
        """With $RARL_WEIGHT_DIGEST_DIR, each rank writes a sha256 of its trainable weights (checks DDP sync)."""
        folder = os.environ.get("RARL_WEIGHT_DIGEST_DIR")
        if not folder:
            return
        import hashlib

        digest = hashlib.sha256()
        for name, param in sorted(self.loaded.model.named_parameters()):
            if param.requires_grad:
                digest.update(name.encode())
                digest.update(param.detach().cpu().float().numpy().tobytes())
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"rank-{self.dist.rank}.sha256").write_text(digest.hexdigest())

    # ------------------------------------------------------------------ main
    def execute(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.install_signal_handlers()
        if self.reporter is None and self.dist.is_main:
            self.reporter = make_reporter(self.run_dir)
        self.rollout_engine = self.check_rollout_engine()
        self.load_data()
        self.load_model()
        self.open_checkpoints()
        restored = self.try_resume()
        self.report(message=f"resumed from checkpoint step {restored.step}" if restored else "started")
        code = self.run_stages(restored)
        if code != EXIT_OK:
            return code
        self.write_weight_digest()
        ok = finish_uploads(self.uploader, None) if self.dist.is_main else True
        if not ok:
            print("rarl: warning: the last checkpoint upload failed", file=sys.stderr)
        self.export()
        if self.reporter is not None:
            self.reporter.close()
        return EXIT_OK


def sample_rows(rows: list[dict[str, Any]], per_size: int = 2) -> list[dict[str, Any]]:
    """The first ``per_size`` evaluation rows of every list size (the same queries at every evaluation)."""
    seen: dict[int, int] = {}
    out = []
    for r in rows:
        n = len(r["target"])
        if seen.get(n, 0) < per_size:
            seen[n] = seen.get(n, 0) + 1
            out.append({k: r[k] for k in ("target", "pred", "completion") if k in r})
    return out


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def write_termination_log(message: str, path: str | None = None) -> None:
    """Kubernetes shows this file as the container's termination message; written only where it exists."""
    path = path or os.environ.get("RARL_TERMINATION_LOG", "/dev/termination-log")
    try:
        if os.path.isfile(path) and os.access(path, os.W_OK):
            with open(path, "w") as fh:
                fh.write(message[:4000])
    except OSError:
        pass
