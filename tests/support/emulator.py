"""A Kubernetes API for tests: the patched kmock emulator served on 127.0.0.1, with a kubeconfig.

``KubeEmulator`` runs ``PatchedEmulator`` (tests/support/kmock_patches.py) on a free port in a
background thread, registers the RARLJob resource from the CRD, creates the ``default`` namespace
and writes a kubeconfig, so that real ``kubectl``, the ``kubernetes`` client and kopf all talk to it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import kmock
import yaml

from tests.support.kmock_patches import PatchedEmulator, timestamp_now

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
KUBECTL = str(VENV_BIN / "kubectl")


class KubeEmulator:
    """The emulator on 127.0.0.1 in a background thread: ``with KubeEmulator(tmp) as kube: ...``."""

    def __init__(self, workdir: Path, crds: list[dict[str, Any]] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.crds = crds
        self.port = 0
        self.emulator: PatchedEmulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the API emulator did not start: {self._error!r}")
        self._write_kubeconfig()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        emulator = PatchedEmulator()
        emulator.resources.load_bundled()
        for crd in self.crds if self.crds is not None else [_rarl_crd()]:
            emulator.register_crd(crd)
        emulator.objects["v1/namespaces", None, "default"] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default", "uid": str(uuid.uuid4()), "creationTimestamp": timestamp_now(),
                         "resourceVersion": "1"},
            "status": {"phase": "Active"},
        }
        self.emulator = emulator
        async with emulator, kmock.Server(emulator, host="127.0.0.1", port=None) as server:
            self.port = server.port
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                         "namespace": "default"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))

    # ---------------------------------------------------------------- test helpers

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> str:
        """Run the real kubectl against the emulator; returns stdout."""
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, check=False, input=input, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc.stdout

    def client(self) -> Any:
        """A kubernetes ApiClient configured from the kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/merge-patch+json") -> Any:
        """A raw JSON call through the kubernetes client (for kinds and verbs without typed helpers)."""
        api = self.client()
        try:
            resp = api.call_api(path, method, body=body, header_params={"Content-Type": content_type,
                                                                        "Accept": "application/json"},
                                auth_settings=["BearerToken"], _preload_content=False,
                                _return_http_data_only=True)
            return json.loads(resp.data) if resp.data else None
        finally:
            api.close()

    def objects(self, plural: str, namespace: str = "default") -> dict[str, dict[str, Any]]:
        """Live objects of a resource ("batch/v1/jobs", "v1/pods", ...) by name, read in memory."""
        assert self.emulator is not None and self._loop is not None
        res = kmock.resource(plural)
        emulator = self.emulator

        async def snapshot() -> dict[str, dict[str, Any]]:
            # Runs on the emulator's loop: its server mutates the object store there, so iterating
            # from the test thread raced with it ("dictionary changed size during iteration").
            out = {}
            for (r, ns, name), obj in emulator.objects.items():
                if r == res and ns == namespace and not obj.deleted:
                    out[name] = copy.deepcopy(dict(obj.raw))
            return out

        return asyncio.run_coroutine_threadsafe(snapshot(), self._loop).result(timeout=30)

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.objects(plural, namespace).get(name)


def _rarl_crd() -> dict[str, Any]:
    try:
        from rarl.api.crd import build_crd

        return build_crd()
    except ImportError:
        return yaml.safe_load((REPO / "charts/rarl-operator/crds/rarljobs.rarl.dev.yaml").read_text())


if __name__ == "__main__":  # python -m tests.support.emulator: a standalone emulator for manual kubectl use
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".rarl/kube")
    with KubeEmulator(workdir) as kube:
        print(f"export KUBECONFIG={kube.kubeconfig}  # {kube.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
