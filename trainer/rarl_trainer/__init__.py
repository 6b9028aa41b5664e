"""RARL trainer: ranking-aware GRPO (TRL + PEFT) for VLMs and text LMs.

Entry points: ``python -m rarl_trainer --config job.yaml`` (one process, or each torchrun worker)
and ``python -m rarl_trainer.entrypoint <torchrun args>`` (torchrun that keeps exit codes 2/3).
Heavy imports (torch, transformers, trl) happen in the submodules, not here.
"""
