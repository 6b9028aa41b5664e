"""A test seam: each rank writes a sha256 of its trainable weights, so a test can check DDP kept them in sync,
and what it holds of each parameter, so a test can check FSDP sharded them.

Only the test of two torchrun processes sets ``$RARL_WEIGHT_DIGEST_DIR``; a run without it writes nothing.
It is an environment variable because the test reaches the trainer through torchrun subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

WEIGHT_DIGEST_DIR_ENV = "RARL_WEIGHT_DIGEST_DIR"
"""The folder each rank writes ``rank-<rank>.sha256`` and ``rank-<rank>.shards.json`` into, at the end of training."""


def write_weight_digest(model, rank: int) -> None:
    """With ``$RARL_WEIGHT_DIGEST_DIR`` set, write this rank's digest of ``model``'s trainable weights there."""
    folder = os.environ.get(WEIGHT_DIGEST_DIR_ENV)
    if not folder:
        return

    for module in model.modules():  # what a rank holds at rest, not the layers its last forward left gathered
        if isinstance(module, FSDPModule):
            module.reshard()
    digest = hashlib.sha256()
    held: dict[str, dict] = {}
    for name, param in sorted(model.named_parameters()):
        local = param.to_local() if isinstance(param, DTensor) else param
        held[name] = {"local": list(local.shape), "full": list(param.shape),
                      "local_bytes": local.numel() * local.element_size(),
                      "full_bytes": param.numel() * param.element_size()}
        if param.requires_grad:
            full = param.full_tensor() if isinstance(param, DTensor) else param  # sharded (FSDP): every rank gathers
            digest.update(name.encode())
            digest.update(full.detach().cpu().float().clone().numpy().tobytes())  # (numpy pins the storage)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"rank-{rank}.sha256").write_text(digest.hexdigest())
    (Path(folder) / f"rank-{rank}.shards.json").write_text(json.dumps(held, indent=1))
