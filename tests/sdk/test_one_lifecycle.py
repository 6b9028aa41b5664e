"""One lifecycle for both backends (issue 30): the same attempt outcomes give the same phases, reasons,
conditions and events on the operator and on the local backend.

Each scenario is a list of what the trainer does in each attempt. The local side runs the real supervisor
in-process over a stand-in trainer (a short Python command that acts out the outcome, as in
``test_status_history``) and the real ``LocalBackend`` for submit and resume. The operator side runs the
operator's real observation (``job_view``, ``pod_view``, ``observe``) and ``decide`` over batch Job bodies
made by ``manifests.attempt_job``; the kubelet that would run the pods is simulated (no kubelet runs here),
so each pod's phase and exit code are written as the kubelet would write them. Times are not compared
(the two run on different clocks); everything else of the status and every event is.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from rarl import Client, manifests
from rarl.api.types import RARLJob
from rarl.api.vocabulary import LABEL_ATTEMPT, LABEL_JOB
from rarl.backends import supervisor as supervisor_mod
from rarl.backends.local import LocalBackend
from rarl.backends.local_state import JobFiles
from rarl.lifecycle import decide
from rarl_operator.reconciler import job_view, observe, pod_view
from tests.sdk.test_phase_rules import _doc
from tests.support.supervise import run_supervisor

OK, CRASH, CONFIG, PREEMPTED, HANG = "ok", "crash", "config", "preempted", "hang"
"""What the trainer does in one attempt: exit 0; write 'boom' and exit 1; write a configuration error and exit 2;
get preempted (SIGTERM from outside, checkpoint, exit 3); run until stopped (SIGTERM: checkpoint, exit 3)."""

EXIT = {OK: 0, CRASH: 1, CONFIG: 2, PREEMPTED: 3}
LAST_WORDS = {CRASH: "boom", CONFIG: "dataset: spec.dataset.train: no such file"}


@dataclass(frozen=True)
class Scenario:
    name: str
    attempts: tuple[str, ...]  # the trainer's action per attempt
    max_restarts: int = 1
    deadline: int | None = None  # activeDeadlineSeconds: the HANG attempt runs past it
    suspend_in: int | None = None  # suspend while this attempt runs (it hangs), then resume


SCENARIOS = [
    Scenario("success", (OK,)),
    Scenario("crash-then-success", (CRASH, OK)),
    Scenario("config-error", (CONFIG,)),
    Scenario("preemption-is-free", (PREEMPTED, OK), max_restarts=0),
    Scenario("deadline", (HANG,), deadline=2),
    Scenario("suspend-resume", (HANG, OK), suspend_in=1),
    Scenario("restart-budget-spent", (CRASH, CRASH)),
]


def _spec_doc(sc: Scenario, name: str) -> dict:
    doc = _doc(name)
    doc["spec"]["runPolicy"] = {"maxRestarts": sc.max_restarts}
    if sc.deadline:
        doc["spec"]["runPolicy"]["activeDeadlineSeconds"] = sc.deadline
    doc["spec"]["checkpoint"] = {"uri": f"s3://ckpt-bucket/{name}"}
    doc["spec"]["output"] = {"uri": f"s3://model-bucket/{name}"}
    return doc


def _summary(status: dict[str, Any], events: list[tuple[str, str, str]]) -> dict[str, Any]:
    """What must agree: everything but the times."""
    return {
        "phase": status.get("phase"), "attempt": status.get("attempt"), "restarts": status.get("restarts"),
        "modelURI": status.get("modelURI"), "finished": status.get("completionTime") is not None,
        "conditions": [(c["type"], c["status"], c.get("reason"), c.get("message"))
                       for c in status.get("conditions", [])],
        "events": events,
    }


# --------------------------------------------------------------------------- the local backend


STAND_IN = """
import os, signal, sys, time
action = sys.argv[1:][int(os.environ["RARL_ATTEMPT"]) - 1]
words = {words!r}.get(action)
if words:
    open(os.environ["RARL_TERMINATION_LOG"], "w").write(words)
if action == "hang":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
    open(os.environ["RARL_TERMINATION_LOG"] + ".ready", "w").close()
    time.sleep(60)
    sys.exit(1)
time.sleep(0.3)
sys.exit({exits!r}[action])
"""


def run_local(sc: Scenario, tmp_path, monkeypatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    backend = LocalBackend(tmp_path / "home")
    monkeypatch.setattr(LocalBackend, "_start_runner", lambda self, files: 0)  # the test runs the supervisor
    code = STAND_IN.format(words=LAST_WORDS, exits=EXIT)
    monkeypatch.setattr(supervisor_mod, "trainer_command",
                        lambda f, gpus: [sys.executable, "-c", code, *sc.attempts])
    client = Client(backend)
    backend.submit(RARLJob.model_validate(_spec_doc(sc, sc.name)))  # not Client.submit: it would read S3
    files = JobFiles(backend.jobs_dir / sc.name)
    ready = files.termination_log.with_name("termination-log.ready")  # the trainer's SIGTERM handler is in place
    run_supervisor(files, sigterm_when=ready.exists if sc.suspend_in else None)
    if sc.suspend_in:
        assert client.get(sc.name).status.phase == "Suspended"
        client.resume(sc.name)
        run_supervisor(files)
    job = client.get(sc.name)
    status = job.status.model_dump(by_alias=True, exclude_none=True)
    return _summary(status, [(e.type, e.reason, e.message) for e in client.events(sc.name)])


# --------------------------------------------------------------------------- the operator


class SimulatedCluster:
    """The operator's observe + decide over Job and pod bodies; the kubelet's part is acted out here."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        doc = _spec_doc(sc, sc.name)
        doc["metadata"]["namespace"] = "default"
        self.job = RARLJob.model_validate(doc)
        self.body: dict[str, Any] = {"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                                     "metadata": {**doc["metadata"], "uid": "rj-uid", "generation": 1},
                                     "spec": doc["spec"], "status": {}}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.pods: dict[int, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)

    def reconcile(self) -> None:
        obs = observe(self.body, [job_view(j) for j in self.jobs.values()],
                      [pod_view(p) for p in self.pods.values()], self.now)
        plan = decide(obs)
        for name in plan.delete_jobs:  # foreground deletion: the trainer gets SIGTERM, checkpoints, exits 3
            attempt = next(a for a, j in self.jobs.items() if j["metadata"]["name"] == name)
            self.jobs[attempt]["metadata"]["deletionTimestamp"] = "now"
            self._terminate(attempt, 3)
        if plan.ensure_attempt is not None and plan.ensure_attempt not in self.jobs:
            attempt = plan.ensure_attempt
            job = manifests.attempt_job(self.job, "rj-uid", attempt, plan.restarts_for_attempt)
            job["metadata"]["uid"] = f"job-{attempt}"
            self.jobs[attempt] = job
        self.body["status"] = plan.status
        self.events.extend(plan.events)

    def kubelet(self) -> None:
        """One step of the newest live attempt: its pod starts, then ends as the scenario says."""
        live = [a for a, j in self.jobs.items() if not j["metadata"].get("deletionTimestamp")
                and not j.get("status")]
        if not live:
            return
        attempt = max(live)
        action = self.sc.attempts[attempt - 1]
        if attempt not in self.pods:
            self.pods[attempt] = {
                "metadata": {"name": f"{self.sc.name}-attempt-{attempt}-0",
                             "labels": {LABEL_JOB: self.sc.name, LABEL_ATTEMPT: str(attempt)},
                             "ownerReferences": [{"kind": "Job", "name": "x", "uid": f"job-{attempt}"}]},
                "status": {"phase": "Running"}}
        elif action != HANG:
            self._terminate(attempt, EXIT[action])

    def _terminate(self, attempt: int, code: int) -> None:
        pod = self.pods.get(attempt)
        if pod is None or pod["status"]["phase"] != "Running":
            return
        action = self.sc.attempts[attempt - 1]
        pod["status"] = {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
            {"state": {"terminated": {"exitCode": code, "message": LAST_WORDS.get(action, "")}}}]}
        job = self.jobs[attempt]
        if not job["metadata"].get("deletionTimestamp"):
            job["status"] = ({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]} if code == 0
                             else {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                                "reason": "PodFailurePolicy"}]})

    def set_suspend(self, value: bool) -> None:
        self.body["spec"] = {**self.body["spec"],
                             "runPolicy": {**self.body["spec"]["runPolicy"], "suspend": value}}
        self.job = RARLJob.model_validate({**self.body, "status": {}})

    def run(self) -> dict[str, Any]:
        for _ in range(40):
            self.reconcile()
            phase = self.body["status"].get("phase")
            if phase in ("Succeeded", "Failed"):
                self.reconcile()  # a finished job's next reconcile changes nothing
                break
            if phase == "Suspended":
                self.reconcile()  # sees how the stopped trainer ended
                self.jobs = {a: j for a, j in self.jobs.items() if not j["metadata"].get("deletionTimestamp")}
                self.set_suspend(False)
                continue
            running = [a for a, p in self.pods.items() if p["status"]["phase"] == "Running"]
            attempt = self.body["status"].get("attempt")
            if self.sc.suspend_in == attempt and attempt in running and not self.body["spec"]["runPolicy"].get(
                    "suspend") and phase == "Running":
                self.set_suspend(True)
                continue
            if self.sc.deadline and phase == "Running" and self.sc.attempts[attempt - 1] == HANG:
                self.now += dt.timedelta(seconds=self.sc.deadline + 1)
                continue
            self.kubelet()
        return _summary(self.body["status"], self.events)


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_both_backends_give_the_same_status_and_events(sc, tmp_path, monkeypatch):
    on_cluster = SimulatedCluster(sc).run()
    local = run_local(sc, tmp_path, monkeypatch)
    assert local == on_cluster
    assert on_cluster["phase"] == ("Failed" if sc.name in ("config-error", "deadline", "restart-budget-spent")
                                   else "Succeeded")


def test_the_scenarios_end_as_the_retry_policy_says(tmp_path, monkeypatch):
    """The table is not vacuous: each scenario's reasons are the ones the vocabulary names for it."""
    reasons = {sc.name: SimulatedCluster(sc).run() for sc in SCENARIOS}

    def failed_reason(name: str) -> str | None:
        return next((c[2] for c in reasons[name]["conditions"] if c[0] == "Failed" and c[1] == "True"), None)

    assert failed_reason("config-error") == "ConfigurationError"
    assert failed_reason("deadline") == "DeadlineExceeded"
    assert failed_reason("restart-budget-spent") == "RestartBudgetExhausted"
    assert reasons["preemption-is-free"]["restarts"] == 0 and reasons["crash-then-success"]["restarts"] == 1
    assert ("Warning", "Restarting") in [(t, r) for t, r, _ in reasons["crash-then-success"]["events"]]
    suspended = next(c for c in reasons["suspend-resume"]["conditions"] if c[0] == "Suspended")
    assert suspended[1:3] == ("False", "Resumed")
    assert [r for _, r, _ in reasons["suspend-resume"]["events"]] == [
        "Created", "Running", "Suspended", "Resumed", "Running", "Succeeded"]
