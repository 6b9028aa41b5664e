"""The one place rarl_trainer overrides or reaches into TRL / transformers internals.

None of what follows is API: a release may rename, reorder or stop calling any of it, and an
override would then be skipped or called wrongly without an error. So every such override lives
here, each is a thin adapter that hands over to RARL's own ``rarl_*`` hooks on the trainer (where
the behaviour is), and ``tests/trainer/test_trl_seam.py`` pins the library signature of every
internal named below (and fails when a class outside this module overrides a private library member).

Pinned against trl 1.16.0 and transformers 5.24.0 (``constraints-trainer.txt``).

``GRPOSeam`` (``trl.GRPOTrainer``, used by ``grpo.RARLGRPOTrainer``):

* ``_generate_and_score_completions``: hands the batch's targets to RARL (``rarl_before_batch``) and
  logs RARL's per-step figures into TRL's private ``_metrics`` afterwards (``rarl_after_batch``);
  TRL's call runs with ``use_vllm`` set (below).
* ``_generate_single_turn``: RMO and the merged rollout engine sit between TRL's generation and its
  tensors (``rarl_generate_single_turn``); TRL's own generation stays reachable through
  ``trl_generate_single_turn``.
* ``_tokenize_prompts``: ``grpo.maxPromptLength``' left truncation after TRL's tokenization
  (``rarl_truncate_prompts``).
* ``_get_per_token_logps_and_entropies``: per-token type ids rebuilt to the truncated width
  (``rarl_logps_kwargs``).
* ``compute_loss`` (public, but only to flip ``use_vllm``) and the ``use_vllm`` flip itself
  (``trl_use_vllm``): TRL applies its importance-sampling correction only under ``use_vllm``, so
  the flag is set for the spans that compute and use it and cleared around TRL's own generation
  call (there is no vLLM engine to reach for).
* ``_tokenizer``: TRL's private tokenizer attribute, read through ``trl_tokenizer``.

``TrainerCheckpointSeam`` (``transformers.Trainer``, base of ``weights.ExactCheckpointMixin``):
``_save``, ``_save_optimizer_and_scheduler``, ``_load_from_checkpoint`` and ``_load_rng_state`` hand
over to ``rarl_save_checkpoint``, ``rarl_save_sharded_checkpoint``, ``rarl_load_checkpoint`` and
``rarl_check_rng_state``: checkpoints hold the exact training tensors and restore strictly.

transformers' generation (``GenerationMixin``, models):

* ``_get_logits_processor``: ``appending_logits_processor`` wraps it on one model object for one
  span, to append a processor after the sampling warpers (``rollout.recording_logprobs``).
* ``_is_fsdp_managed_module``: the flag transformers' ``generate`` reads to step all ranks together
  (``synced_gpus``), set by ``mark_fsdp_managed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class TrainerCheckpointSeam:
    """``transformers.Trainer``'s checkpoint internals, handed over to RARL's checkpoint hooks."""

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        self.rarl_save_checkpoint(output_dir)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not getattr(self, "is_fsdp_enabled", False):
            super()._save_optimizer_and_scheduler(output_dir)
            return
        self.rarl_save_sharded_checkpoint(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self.rarl_load_checkpoint(resume_from_checkpoint, model)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        self.rarl_check_rng_state(checkpoint)
        super()._load_rng_state(checkpoint)


class GRPOSeam:
    """``trl.GRPOTrainer``'s internals, handed over to RARL's GRPO hooks (``grpo.RARLGRPOTrainer``).

    Expects ``rarl_vllm`` (TRL's own vLLM generation) and ``rarl_is_correction`` (merged rollouts with
    sampling log-probs) on the trainer.
    """

    @contextmanager
    def trl_use_vllm(self, on: bool) -> Iterator[None]:
        """TRL applies its sampling correction only under ``use_vllm``: the flag is set for the spans that compute
        and use it (old log-probs + ratio in ``_generate_and_score_completions``, the product in the loss) and
        cleared again around TRL's own generation call, so TRL never reaches for a vLLM engine (there is none)."""
        saved = self.use_vllm
        self.use_vllm = on
        try:
            yield
        finally:
            self.use_vllm = saved

    @property
    def trl_tokenizer(self):
        """TRL's tokenizer (the processor's, for a VLM)."""
        return self._tokenizer

    def _generate_and_score_completions(self, inputs):
        self.rarl_before_batch(inputs)
        with self.trl_use_vllm(self.rarl_vllm or self.rarl_is_correction):
            output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        for name, value in self.rarl_after_batch().items():
            self._metrics[mode][name].append(value)
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss; with engine log-probs, TRL multiplies in the importance-sampling ratio it computed."""
        on = self.rarl_vllm or (self.rarl_is_correction and "importance_sampling_ratio" in inputs)
        with self.trl_use_vllm(on):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    def _tokenize_prompts(self, prompts: list):
        prompt_ids, images, fields = super()._tokenize_prompts(prompts)
        return self.rarl_truncate_prompts(prompt_ids, images, fields)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        kwargs = self.rarl_logps_kwargs(input_ids, kwargs)
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, *args,
                                                          **kwargs)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        return self.rarl_generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def trl_generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's own generation (``GRPOTrainer._generate_single_turn``): (completion ids, sampling log-probs or None)."""
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)


@contextmanager
def appending_logits_processor(model, make: Callable[[], object]) -> Iterator[dict]:
    """Every ``generate`` call on ``model`` inside gets ``make()`` appended last to its logits processors.

    Yields a dict whose ``recorder`` is the last call's (None until ``generate`` runs). Wraps transformers'
    private ``GenerationMixin._get_logits_processor`` on this model object only, for the duration: a
    ``logits_processor=`` argument would run *before* the sampling warpers (``generate`` appends
    temperature/top-k/top-p after the caller's processors), i.e. would see the wrong distribution.
    """
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT's generate forwards to it
    state: dict = {"recorder": None}
    build = hf._get_logits_processor

    def get_logits_processor(*args, **kwargs):
        processors = build(*args, **kwargs)
        state["recorder"] = make()
        processors.append(state["recorder"])
        return processors

    hf._get_logits_processor = get_logits_processor
    try:
        yield state
    finally:
        del hf._get_logits_processor


def mark_fsdp_managed(model) -> None:
    """Let ``generate`` know the model is sharded, so ranks step together (``synced_gpus``).

    transformers reads ``_is_fsdp_managed_module`` (set by its own ``apply_fsdp2``, not by accelerate's).
    """
    for m in (model, getattr(model, "get_base_model", lambda: None)()):
        if m is not None:
            m._is_fsdp_managed_module = True
