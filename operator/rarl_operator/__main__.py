"""``python -m rarl_operator``: kopf run with namespaces, liveness and log format from env.

RARL_WATCH_NAMESPACES (comma-separated; empty: cluster-wide), RARL_LIVENESS_PORT
(default 8081; 0 disables), RARL_LOG_FORMAT (plain|full|json, default json),
RARL_STANDALONE (default true: no peering objects needed).
"""

from __future__ import annotations

import logging
import os

import kopf

import rarl_operator.handlers  # noqa: F401  (registers the handlers)
from rarl_operator.settings import SETTINGS


def main() -> None:
    fmt = os.environ.get("RARL_LOG_FORMAT", "json").lower()
    log_format = {"json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL}.get(fmt, kopf.LogFormat.PLAIN)
    kopf.configure(log_format=log_format, verbose=os.environ.get("RARL_VERBOSE") == "1")
    logging.getLogger("rarl_operator").setLevel(logging.INFO)
    port = int(os.environ.get("RARL_LIVENESS_PORT", "8081"))
    namespaces = list(SETTINGS.watch_namespaces)
    kopf.run(
        standalone=os.environ.get("RARL_STANDALONE", "true").lower() != "false",
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz" if port > 0 else None,
    )


if __name__ == "__main__":
    main()
