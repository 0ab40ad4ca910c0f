"""Issue 15 item 3: the ValidatingAdmissionPolicy of deploy/admission.yaml, in the real kube-apiserver
(admissionregistration.k8s.io/v1, GA since 1.30): pods in faultflow's namespace as Argo creates them
from the rendered templates are admitted; every pod that uses the janitor or node-agent account for
anything else, or touches the host without being the node agent or the toggle-off pod, is refused.

Pods are created with dryRun=All: admission runs in full, nothing is stored."""

from __future__ import annotations

import copy
import threading
import time

import pytest

from lab.rest import ApiError
from steps.gpu.toggle_pod import toggle_off_pod
from steps.run import install
from tests.workflows.test_render import nvsentinel_mount
from workflows.admission import EMISSARY, JANITOR_ACCOUNT, NODE_AGENT_ACCOUNT, POLICY, policy_objects
from workflows.deploy import PSA_LABELS, DeployConfig, namespace_object
from workflows.render import scenario_template
from workflows.scenarios import by_name
from workflows.schedules import janitor_template
from workflows.stages.common import NODE_AGENT_IMAGE, SHIM_IMAGE, STEPS_IMAGE, TOGGLE_DIR_PATH

EXECUTOR_IMAGE = "argoexec:v4.0.5"
VAP_PLURALS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def _path(obj: dict) -> str:
    return f"/apis/admissionregistration.k8s.io/v1/{VAP_PLURALS[obj['kind']]}"


# The executor's log flags Argo's controller (v3.7.18 and v4.0.5 alike, seen on the real controller in
# tests/lab/test_real_argo_faultflow.py) puts into every executor command line, and between `emissary`
# and `--` in the main container's.
ARGO_LOG_FLAGS = ["--loglevel", "info", "--log-format", "text", "--gloglevel", "0"]


def argo_pod(template: dict, account: str, namespace: str) -> dict:
    """The pod Argo's controller makes of a container template (emissary executor: `init` copies
    argoexec, `wait` reports, `main` runs the command through argoexec)."""
    c = template["container"]
    main = {
        "name": "main",
        "image": c["image"],
        "command": [*EMISSARY[:2], *ARGO_LOG_FLAGS, EMISSARY[2], *c["command"]],
        "args": list(c.get("args") or []),
        "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}] + list(c.get("volumeMounts") or []),
    }
    if c.get("securityContext"):
        main["securityContext"] = c["securityContext"]
    volumes = [{"name": "var-run-argo", "emptyDir": {}}] + list(template.get("volumes") or [])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{template['name']}-1", "namespace": namespace, "labels": {"workflows.argoproj.io/workflow": "w"}},
        "spec": {
            "serviceAccountName": account,
            "restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": EXECUTOR_IMAGE, "command": ["argoexec", "init", *ARGO_LOG_FLAGS]}],
            "containers": [{"name": "wait", "image": EXECUTOR_IMAGE, "command": ["argoexec", "wait", *ARGO_LOG_FLAGS]}, main],
            "volumes": volumes,
        },
    }


def with_patch(pod: dict, patch: dict) -> dict:
    """A podSpecPatch of volumes and container mounts applied as Argo's strategic merge does (by name)."""
    new = copy.deepcopy(pod)
    new["spec"]["volumes"] += patch.get("volumes", [])
    for container in patch.get("containers", []):
        target = next(c for c in new["spec"]["containers"] if c["name"] == container["name"])
        target["volumeMounts"] += container.get("volumeMounts", [])
    return new


def _templates(name: str) -> dict[str, dict]:
    return {t["name"]: t for t in scenario_template(by_name(name)).to_dict()["spec"]["templates"]}


@pytest.fixture
def home(cluster, new_namespace):
    """faultflow's namespace with its configuration, accounts and the policy."""
    rest = cluster.rest()
    ns = new_namespace(cluster)
    rest.post(f"/api/v1/namespaces/{ns}/configmaps", install.config_object(ns, STEPS_IMAGE, SHIM_IMAGE, TOGGLE_DIR_PATH, NODE_AGENT_IMAGE))
    for account in (JANITOR_ACCOUNT, NODE_AGENT_ACCOUNT, "faultflow-preflight"):
        rest.post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}})
    objects = policy_objects(ns)
    for obj in objects:
        try:
            rest.post(_path(obj), obj)
        except ApiError as error:
            if error.status != 409:
                raise
            current = rest.get(f"{_path(obj)}/{obj['metadata']['name']}")
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            rest.put(f"{_path(obj)}/{obj['metadata']['name']}", obj)
    yield ns
    for obj in objects:
        try:
            rest.delete(f"{_path(obj)}/{obj['metadata']['name']}")
        except ApiError as error:
            if error.status != 404:
                raise


def admitted(rest, pod: dict) -> tuple[bool, str]:
    try:
        rest.post(f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods?dryRun=All", pod)
    except ApiError as error:
        return False, str(error)
    return True, ""


def _wait_for_policy(rest, ns: str, forbidden: dict) -> None:
    """The policy and binding reach the admission plugin through informers: wait until a pod the
    policy must refuse is refused by it (the condition itself, polled). (Its status' type check is
    written by kube-controller-manager, which the lab does not run.)"""
    deadline = time.monotonic() + 60
    tick = threading.Event()
    why = ""
    while time.monotonic() < deadline:
        ok, why = admitted(rest, forbidden)
        if not ok and "ValidatingAdmissionPolicy" in why:
            return
        tick.wait(0.2)
    raise AssertionError(f"the policy never took effect: {why or 'admitted'}")


def test_item3_admission_policy_limits_the_janitor_and_node_agent_accounts(cluster, home, new_namespace):
    rest = cluster.rest()
    janitor = argo_pod(janitor_template().to_dict()["spec"]["templates"][0], JANITOR_ACCOUNT, home)
    node = argo_pod(_templates("gpu-fault")["inject-xid"], NODE_AGENT_ACCOUNT, home)
    node_watched = with_patch(node, nvsentinel_mount(_templates("gpu-fault")["inject-xid"])[2])  # NVSentinel expected
    toggle_on = argo_pod(_templates("cuda-only")["toggle-on"], NODE_AGENT_ACCOUNT, home)
    preflight = argo_pod(_templates("gpu-fault")["preflight"], "faultflow-preflight", home)
    toggle_off = toggle_off_pod("run-1", home, "gpu-0", TOGGLE_DIR_PATH, NODE_AGENT_IMAGE)

    def changed(pod: dict, change) -> dict:
        new = copy.deepcopy(pod)
        change(new)
        return new

    def main(pod: dict) -> dict:
        return next(c for c in pod["spec"]["containers"] if c["name"] == "main")

    host_etc = {"name": "etc", "hostPath": {"path": "/etc"}}
    forged = {
        "janitor: another image": changed(janitor, lambda p: main(p).update(image="attacker/evil:1")),
        "janitor: a shell": changed(janitor, lambda p: main(p).update(command=["sh", "-c", "id"], args=[])),
        "janitor: its own toggle-off image": changed(janitor, lambda p: main(p)["args"].extend(["--node-agent-image", "evil:1"])),
        "janitor: a sidecar": changed(janitor, lambda p: p["spec"]["containers"].append({"name": "debug", "image": "busybox:1"})),
        "janitor: a 'wait' sidecar of its own": changed(
            janitor, lambda p: p["spec"]["containers"].__setitem__(0, {"name": "wait", "image": "busybox:1", "command": ["sh"]})
        ),
        "janitor: a shell behind the emissary's flags": changed(
            janitor, lambda p: main(p).update(command=[*EMISSARY[:2], *ARGO_LOG_FLAGS, EMISSARY[2], "sh", "-c", "id"], args=[])
        ),
        "janitor: one argument more": changed(janitor, lambda p: main(p)["args"].append("--all")),
        "janitor: a host path": changed(janitor, lambda p: p["spec"]["volumes"].append(host_etc)),
        "janitor: host network": changed(janitor, lambda p: p["spec"].update(hostNetwork=True)),
        "node agent: /etc": changed(node, lambda p: p["spec"]["volumes"].append(host_etc)),
        "node agent: a shell": changed(node, lambda p: main(p).update(command=["bash"], args=[])),
        "node agent: the janitor's command": changed(
            node, lambda p: main(p).update(command=[*EMISSARY, "faultflow", "step", "janitor"], args=[])
        ),
        "node agent: a shell before a second '--'": changed(
            node, lambda p: main(p).update(command=[*EMISSARY, "sh", "--", "faultflow", "step", "inject-xid"], args=[])
        ),
        "node agent: another image": changed(node, lambda p: main(p).update(image="attacker/evil:1")),
        "node agent: host network": changed(node, lambda p: p["spec"].update(hostNetwork=True)),
        # The steps image holds the Kubernetes client: the node's privileged pod runs the node-agent image only.
        "node agent: the steps image": changed(node, lambda p: main(p).update(image=STEPS_IMAGE)),
        "shim on: the steps image": changed(toggle_on, lambda p: main(p).update(image=STEPS_IMAGE)),
        "toggle-off shape: /etc": changed(toggle_off, lambda p: p["spec"]["volumes"][0]["hostPath"].update(path="/etc")),
        "toggle-off shape: another image": changed(toggle_off, lambda p: p["spec"]["containers"][0].update(image="evil:1")),
        "toggle-off shape: the steps image": changed(toggle_off, lambda p: p["spec"]["containers"][0].update(image=STEPS_IMAGE)),
        "toggle-off shape: privileged": changed(
            toggle_off, lambda p: p["spec"]["containers"][0].update(securityContext={"privileged": True})
        ),
        "preflight account: a host path": changed(preflight, lambda p: p["spec"]["volumes"].append(host_etc)),
        "preflight account: privileged": changed(preflight, lambda p: main(p).update(securityContext={"privileged": True})),
        "default account: privileged": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x", "namespace": home},
            "spec": {"containers": [{"name": "x", "image": "busybox:1", "securityContext": {"privileged": True}}]},
        },
    }
    _wait_for_policy(rest, home, forged["janitor: a shell"])
    for name, pod in {
        "janitor": janitor,
        "inject-xid": node,
        "inject-xid with NVSentinel's metadata": node_watched,
        "shim on": toggle_on,
        "toggle-off": toggle_off,
        "preflight": preflight,
    }.items():
        ok, why = admitted(rest, pod)
        assert ok, f"{name} as rendered was refused: {why}"
    let_through = [name for name, pod in forged.items() if admitted(rest, pod)[0]]
    # A debug container added to a running janitor pod (the ephemeralcontainers subresource).
    stored = rest.post(f"/api/v1/namespaces/{home}/pods", janitor)
    stored["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox:1", "command": ["sh"]}]
    try:
        rest.put(f"/api/v1/namespaces/{home}/pods/{janitor['metadata']['name']}/ephemeralcontainers?dryRun=All", stored)
        let_through.append("janitor: an ephemeral container")
    except ApiError as error:
        assert "ValidatingAdmissionPolicy" in str(error), error
    total = len(forged) + 1
    print(f"forged inputs refused: {total - len(let_through)} of {total} (item 3, pods in faultflow's namespace)")
    assert let_through == []
    # Another namespace is not the policy's business.
    other = new_namespace(cluster)
    other_ok, why = admitted(rest, {**forged["default account: privileged"], "metadata": {"name": "x", "namespace": other}})
    assert other_ok, why


def test_item3_faultflow_namespace_sets_pod_security_labels_explicitly():
    labels = namespace_object(DeployConfig())["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == PSA_LABELS[f"pod-security.kubernetes.io/{mode}"]
        assert labels[f"pod-security.kubernetes.io/{mode}-version"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # the node agent's pods run here


def test_item3_admission_policy_is_rendered_into_deploy():
    from workflows.cli import render_files

    files = render_files()
    assert "admission.yaml" in files and "admission.yaml" in files["kustomization.yaml"]
    assert f"name: {POLICY}" in files["admission.yaml"]
    assert "templateReferencing: Strict" in files["argo/workflow-controller-configmap.yaml"]
