"""The README's CI recipe, its output redirected to a file as a CI runner does: the log shows every step.

Real parts: the ``rarlctl`` process, kopf operator and API emulator; the trainer's status reports go
through its real ``KubernetesStatusReporter``. Played by the test (no kubelet or GPU here): the pods,
and the trainer process whose reports they would send.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from rarl.progress import Progress
from rarl.progress_k8s import KubernetesStatusReporter
from tests.conftest import RARLCTL
from tests.operator.conftest import job_doc, wait_phase
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]


def ci_submit_line() -> list[str]:
    """The README's ``rarlctl ... submit --wait`` line of "Use from CI", as arguments."""
    block = REPO.joinpath("README.md").read_text().split("### Use from CI", 1)[1].split("```bash", 1)[1].split("```")[0]
    line = next(x for x in block.splitlines() if x.startswith("rarlctl") and " submit " in x)
    return shlex.split(line.split("#", 1)[0])


def test_submit_wait_redirected_to_a_file_prints_each_step(kube, operator, kubelet, name, tmp_path):
    args = ci_submit_line()
    assert args[args.index("submit") + 1:][:4] == ["-f", "rarljob.yaml", "--wait", "--timeout"], args
    args[args.index("-n") + 1] = "default"  # the emulator's namespace, instead of the README's "ml"
    stages = [{"name": "regression-warmup", "kind": "grpo", "steps": 1, "listSizes": [1]},
              {"name": "ranking-aware", "kind": "grpo", "steps": 2, "listSizes": [1, 2]}]  # 3 steps in all
    (tmp_path / "rarljob.yaml").write_text(yaml.safe_dump(job_doc(name, stages=stages)))
    rarlctl = [str(RARLCTL), "--kubeconfig", str(kube.kubeconfig), *args[1:]]
    log = tmp_path / "out.log"
    with log.open("w") as out:  # stdout is a file: no terminal
        proc = subprocess.Popen(rarlctl, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env={**os.environ, "RARL_PROGRESS_SECONDS": "0"})
    try:
        kubelet.start_pods(name, 1)
        wait_phase(kube, name, "Running")
        reporter = KubernetesStatusReporter(name, "default", min_interval=0.0, api_client=kube.client())
        for step in (1, 2, 3):
            reporter.report(Progress(stage="regression-warmup", step=step, total_steps=3, reward=0.25 * step))
            wait_for(lambda s=step: f"step {s}/3" in log.read_text(), timeout=20,
                     what=f"step {step} in the log: {log.read_text()[-2000:]}")
        reporter.close()
        kubelet.complete(name, 1)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = log.read_text().splitlines()
    steps = [m.group(0) for line in lines if (m := re.search(r"Running stage regression-warmup step \d/3 reward \S+", line))]
    assert steps == [f"Running stage regression-warmup step {s}/3 reward {0.25 * s:.3f}" for s in (1, 2, 3)], lines
    assert any(line.startswith(f"rarljob/{name} Succeeded") for line in lines), lines


def test_quiet_wait_prints_only_the_outcome(kube, operator, kubelet, name, tmp_path):
    (tmp_path / "rarljob.yaml").write_text(yaml.safe_dump(job_doc(name)))
    kube.kubectl("apply", "--validate=false", "-f", str(tmp_path / "rarljob.yaml"))
    kubelet.start_pods(name, 1)
    kubelet.complete(name, 1)
    wait_phase(kube, name, "Succeeded")
    proc = subprocess.run([str(RARLCTL), "--backend", "kubernetes", "--kubeconfig",
                           str(kube.kubeconfig), "-n", "default", "wait", name, "--quiet"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"rarljob/{name} Succeeded"]
