"""deploy/: the kustomize base — Namespace, one ServiceAccount per role with exactly its RBAC, the
Argo executor's account and its token Secret, the rendered WorkflowTemplates and CronWorkflows. Objects
are plain dicts (RBAC needs no Hera); `workflows.cli` writes them as YAML files.

Where a role's rules are granted:
* `namespaced` rules: a ClusterRole `faultflow-<role>` bound by a RoleBinding in each target
  namespace (DEFAULT_TARGET_NAMESPACES; add a RoleBinding per further namespace you opt in), so a
  role cannot touch a namespace nobody bound it in;
* `installation` rules: a Role `faultflow-<role>-installation` in faultflow's own namespace (the run
  ledgers live only there, ConfigMap faultflow-config, the toggle-off pods);
* `nvsentinel` rules: a Role in NVSentinel's namespace;
* `cluster` rules (nodes, namespaces; the janitor's sweep): a ClusterRole `faultflow-<role>-cluster`
  with a ClusterRoleBinding.
"""

from __future__ import annotations

from dataclasses import dataclass

from steps import installation_names as install
from workflows.declaration import Role, Rule
from workflows.roles import EXECUTOR_RULES, EXECUTOR_SERVICE_ACCOUNT, ROLES
from workflows.stages.common import NODE_AGENT_IMAGE, SHIM_IMAGE, STEPS_IMAGE, TOGGLE_DIR_PATH

NAMESPACE = "faultflow"
DEFAULT_TARGET_NAMESPACES = ("dynamo",)
NVSENTINEL_NAMESPACE = "nvsentinel"
LABELS = {"app.kubernetes.io/part-of": "faultflow"}
RBAC = "rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class DeployConfig:
    namespace: str = NAMESPACE
    target_namespaces: tuple[str, ...] = DEFAULT_TARGET_NAMESPACES
    nvsentinel_namespace: str = NVSENTINEL_NAMESPACE


def _meta(name: str, namespace: str | None = None, **extra) -> dict:
    meta = {"name": name, "labels": dict(LABELS), **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _rules(rules: tuple[Rule, ...]) -> list[dict]:
    return [{"apiGroups": [r.group], "resources": list(r.resources), "verbs": list(r.verbs)} for r in rules]


def _subject(account: str, namespace: str) -> list[dict]:
    return [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]


def service_account(name: str, namespace: str, token: bool = True) -> dict:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)}
    if not token:
        sa["automountServiceAccountToken"] = False
    return sa


def role_objects(role: Role, config: DeployConfig) -> list[dict]:
    """The ServiceAccount and exactly the grants `role` declares."""
    account = role.service_account
    objects = [service_account(account, config.namespace, role.token)]
    if role.namespaced:
        objects.append({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": _meta(account), "rules": _rules(role.namespaced)})
        for target in (config.namespace,) if role.home else config.target_namespaces:
            objects.append(
                {
                    "apiVersion": RBAC,
                    "kind": "RoleBinding",
                    "metadata": _meta(account, target),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
                    "subjects": _subject(account, config.namespace),
                }
            )
    if role.installation:
        name = f"{account}-installation"
        objects.append({"apiVersion": RBAC, "kind": "Role", "metadata": _meta(name, config.namespace), "rules": _rules(role.installation)})
        objects.append(
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": _meta(name, config.namespace),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": _subject(account, config.namespace),
            }
        )
    if role.nvsentinel:
        objects.append(
            {"apiVersion": RBAC, "kind": "Role", "metadata": _meta(account, config.nvsentinel_namespace), "rules": _rules(role.nvsentinel)}
        )
        objects.append(
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": _meta(account, config.nvsentinel_namespace),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
                "subjects": _subject(account, config.namespace),
            }
        )
    if role.cluster:
        name = f"{account}-cluster"
        objects.append({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": _meta(name), "rules": _rules(role.cluster)})
        objects.append(
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": _meta(name),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": _subject(account, config.namespace),
            }
        )
    return objects


def token_secret(account: str, namespace: str) -> dict:
    """The long-lived token Secret Argo mounts for an executor account (`<account>.service-account-token`,
    into every pod's init and wait containers). Since Kubernetes 1.24 nothing creates one by itself:
    kube-controller-manager's token controller fills a Secret of this type that names the account.
    Without it every pod of the scenario stays ContainerCreating."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": _meta(f"{account}.service-account-token", namespace, annotations={"kubernetes.io/service-account.name": account}),
    }


def executor_objects(config: DeployConfig) -> list[dict]:
    """Argo's executor (init/wait containers) reports results; nothing else."""
    return [
        service_account(EXECUTOR_SERVICE_ACCOUNT, config.namespace),
        token_secret(EXECUTOR_SERVICE_ACCOUNT, config.namespace),
        {
            "apiVersion": RBAC,
            "kind": "Role",
            "metadata": _meta(EXECUTOR_SERVICE_ACCOUNT, config.namespace),
            "rules": _rules(EXECUTOR_RULES),
        },
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": _meta(EXECUTOR_SERVICE_ACCOUNT, config.namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EXECUTOR_SERVICE_ACCOUNT},
            "subjects": _subject(EXECUTOR_SERVICE_ACCOUNT, config.namespace),
        },
    ]


def config_object(config: DeployConfig) -> dict:
    """ConfigMap faultflow-config: the installation's images and node toggle directory, the only
    source the steps take them from (`steps.run.install`); kustomize's `images:` rewrites the image
    values here as it does the containers' (kustomizeconfig.yaml)."""
    return install.config_object(config.namespace, STEPS_IMAGE, SHIM_IMAGE, TOGGLE_DIR_PATH, NODE_AGENT_IMAGE)


# Pod Security Admission, set explicitly: the node agent's pods (inject-xid, shim on) are privileged
# and mount host paths, so `enforce` must be privileged here; the ValidatingAdmissionPolicy
# (workflows.admission) decides which pods may be. `warn`/`audit` at baseline name every such pod.
PSA_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "baseline",
    "pod-security.kubernetes.io/warn-version": "latest",
    "pod-security.kubernetes.io/audit": "baseline",
    "pod-security.kubernetes.io/audit-version": "latest",
}


def namespace_object(config: DeployConfig) -> dict:
    meta = _meta(config.namespace)
    meta["labels"].update(PSA_LABELS)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


ARGO_NAMESPACE = "argo"


def argo_controller_config() -> dict:
    """What faultflow asks of Argo's own configuration (not part of the kustomize base: it belongs to
    Argo's install; merge its `data` into Argo's workflow-controller-configmap). `Strict`: the
    controller runs only Workflows that reference a WorkflowTemplate, so a Workflow in faultflow's
    namespace cannot bring its own templates to run as faultflow's accounts (Argo 3.6 to 4.0 all
    read `workflowRestrictions`)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap", "namespace": ARGO_NAMESPACE},
        "data": {"workflowRestrictions": "templateReferencing: Strict\n"},
    }


def admission_objects(config: DeployConfig) -> list[dict]:
    from workflows.admission import policy_objects

    return policy_objects(config.namespace)


def rbac_objects(config: DeployConfig) -> list[dict]:
    objects = executor_objects(config)
    for role in ROLES:
        objects.extend(role_objects(role, config))
    return objects


def image_entry(reference: str) -> dict:
    """A kustomize `images:` entry that pins `reference` as written: `[host[:port]/]path[:tag][@digest]`.
    The tag is after the last `:` of the last path component only (a registry's port is no tag), and
    a digest (`@sha256:…`) is kept (issue 15 item 15: installations pin images by digest)."""
    name, at, digest = reference.partition("@")
    host_and_path, slash, last = name.rpartition("/")
    entry: dict = {"name": name}
    if ":" in last:
        repository, _, tag = last.rpartition(":")
        entry = {"name": f"{host_and_path}{slash}{repository}", "newTag": tag}
    if at:
        entry["digest"] = digest
    return entry


def kustomization(config: DeployConfig, resources: list[str]) -> dict:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
        # The override point for the pinned images: `newName`/`newTag`/`digest` here retarget every
        # step container of the templates (the node agent's stages: node-agent-image), the
        # steps-image/shim-image parameter defaults and ConfigMap faultflow-config, from which the
        # steps take the images of the pods they create (toggle-off: the node-agent image)
        # (kustomizeconfig.yaml tells kustomize where those fields are). A run cannot choose an
        # image: preflight refuses a steps-image/shim-image parameter other than the configured one.
        "images": [image_entry(STEPS_IMAGE), image_entry(SHIM_IMAGE), image_entry(NODE_AGENT_IMAGE)],
        "configurations": ["kustomizeconfig.yaml"],
    }


def kustomize_config() -> dict:
    """Field specs so kustomize's `images:` transformer finds images inside Argo objects."""
    specs = []
    for kind in ("WorkflowTemplate", "CronWorkflow"):
        base = "spec/workflowSpec" if kind == "CronWorkflow" else "spec"
        specs.append({"path": f"{base}/templates/container/image", "kind": kind})
        # Parameter defaults: the transformer rewrites only values that name one of the images.
        specs.append({"path": f"{base}/arguments/parameters/value", "kind": kind})
    for key in (install.STEPS_IMAGE, install.SHIM_IMAGE, install.NODE_AGENT_IMAGE):
        specs.append({"path": f"data/{key}", "kind": "ConfigMap"})
    return {"images": specs}
