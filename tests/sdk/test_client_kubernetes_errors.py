"""The Kubernetes backend's errors when there is no usable cluster (no emulator needed)."""

from __future__ import annotations

import socket
import time

import pytest

from rarl import BackendUnavailable, Client

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "http://127.0.0.1:{port}"}}
contexts:
- name: ctx
  context: {{cluster: c, user: u, namespace: ml}}
current-context: ctx
users:
- name: u
  user: {{token: not-a-real-token}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_cluster_configured(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(BackendUnavailable, match="no Kubernetes cluster configured"):
        Client("kubernetes")


def test_explicit_kubeconfig_that_does_not_exist(tmp_path):
    with pytest.raises(BackendUnavailable, match="cannot load kubeconfig"):
        Client("kubernetes", kubeconfig=str(tmp_path / "nope"))


def test_unreachable_api_server_fails_fast_with_the_address(tmp_path):
    port = free_port()
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(KUBECONFIG.format(port=port))
    client = Client("kubernetes", kubeconfig=str(cfg))
    assert client.backend.namespace == "ml", "the context's namespace is the default"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=f"cannot reach the Kubernetes API at http://127.0.0.1:{port}"):
        client.list()
    assert time.monotonic() - started < 20
    with pytest.raises(BackendUnavailable):
        client.get("x")
