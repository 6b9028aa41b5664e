"""The operator as a killable subprocess: ``kopf run`` against a ``KubeEmulator``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.emulator import REPO, KubeEmulator
from tests.support.polling import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """``kopf run -m rarl_operator.handlers --standalone -A`` against the emulator, as a killable subprocess."""

    def __init__(self, kube: KubeEmulator, log_path: Path, env: dict[str, str] | None = None):
        self.kube = kube
        self.log_path = Path(log_path)
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.liveness_port = 0
        self.metrics_port = 0

    def start(self, wait: bool = True) -> OperatorProcess:
        self.liveness_port, self.metrics_port = free_port(), free_port()
        env = {**self.kube.env(), "RARL_METRICS_PORT": str(self.metrics_port), "PYTHONUNBUFFERED": "1",
               "RARL_RESYNC_SECONDS": "0.5", **self.extra_env}
        cmd = [sys.executable, "-m", "kopf", "run", "-m", "rarl_operator.handlers", "--standalone", "-A",
               f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz", "--log-format=plain"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
        if wait:
            wait_for(self.healthy, timeout=30, interval=0.1, what="operator liveness endpoint")
        return self

    def healthy(self) -> bool:
        import urllib.request

        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc and self.proc.returncode}):\n{self.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
            return resp.read().decode()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crashed or evicted operator."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()
