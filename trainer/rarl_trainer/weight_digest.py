"""A test seam: each rank writes a sha256 of its trainable weights, so a test can check DDP kept them in sync.

Only the test of two torchrun processes sets ``$RARL_WEIGHT_DIGEST_DIR``; a run without it writes nothing.
It is an environment variable because the test reaches the trainer through torchrun subprocesses.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHT_DIGEST_DIR_ENV = "RARL_WEIGHT_DIGEST_DIR"
"""The folder each rank writes ``rank-<rank>.sha256`` into, at the end of training (test seam)."""


def write_weight_digest(model, rank: int) -> None:
    """With ``$RARL_WEIGHT_DIGEST_DIR`` set, write this rank's digest of ``model``'s trainable weights there."""
    folder = os.environ.get(WEIGHT_DIGEST_DIR_ENV)
    if not folder:
        return
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().cpu().float().numpy().tobytes())
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"rank-{rank}.sha256").write_text(digest.hexdigest())
