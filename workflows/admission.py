"""deploy/admission.yaml: a ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA since
Kubernetes 1.30) that limits which pods in faultflow's namespace may use the two accounts whose
rights reach furthest, and which pods there may touch the host at all.

Why: whoever may create a Workflow in faultflow's namespace makes Argo create pods there, and Argo
lets a Workflow set `serviceAccountName`, `podSpecPatch` and images. `templateReferencing: Strict`
(Argo's controller configuration, README "Who can do what") limits Workflows to our
WorkflowTemplates, but a Workflow referencing one may still override those fields. This policy checks
the pod Argo creates, whatever the Workflow said:

* `faultflow-janitor`: the main container is the installed steps image running exactly
  `faultflow step janitor --timeout 5m`; no host paths, not privileged, no host namespaces;
* `faultflow-node-agent`: the main container is the installed node-agent image running
  `faultflow step inject-xid` or `faultflow shim on`; host paths only /dev/kmsg and the installed
  toggle directory; no host network;
* any other pod there: no host path and nothing privileged, except the toggle-off pod exactly as
  `steps.gpu.toggle_pod` builds it (installed node-agent image, `faultflow shim off --file <toggle-dir>/toggle`,
  only the toggle directory, no token);
* for both accounts, every container besides `main` is Argo's executor (`init`/`wait` running
  argoexec; with `executor-image` in ConfigMap faultflow-config, exactly that image), and no
  ephemeral container can be added.

The installed images and toggle directory are the policy's parameters: ConfigMap faultflow-config in
the same namespace (the one kustomize's `images:` rewrites), so the policy and the steps never
disagree about what is installed.
"""

from __future__ import annotations

from steps import installation_names as install
from workflows.schedules import JANITOR_ARGS, JANITOR_COMMAND

POLICY = "faultflow-pods"
ADMISSION = "admissionregistration.k8s.io/v1"
JANITOR_ACCOUNT = "faultflow-janitor"
NODE_AGENT_ACCOUNT = "faultflow-node-agent"
# Argo's emissary executor runs the main container's command through its own binary.
EMISSARY = ("/var/run/argo/argoexec", "emissary", "--")
KMSG = "/dev/kmsg"
# NVSentinel's metadata-collector directory: inject-xid reads gpu_metadata.json there (the expected action).
NVSENTINEL_DIR = "/var/lib/nvsentinel"


def _containers(field: str) -> str:
    return f"(has(object.spec.{field}) ? object.spec.{field} : [])"


VARIABLES = [
    ("sa", "has(object.spec.serviceAccountName) ? object.spec.serviceAccountName : 'default'"),
    ("config", "params.data"),
    ("main", "object.spec.containers.filter(c, c.name == 'main')"),
    (
        "argv",
        "variables.main.size() == 1 ? (has(variables.main[0].command) ? variables.main[0].command : [])"
        " + (has(variables.main[0].args) ? variables.main[0].args : []) : []",
    ),
    # The faultflow command line, with Argo's emissary wrapper taken off (k: where it starts). Argo
    # puts its executor's log flags between `emissary` and `--` (`--loglevel info --log-format text
    # --gloglevel 0` in v3.7 and v4.0, seen on the real controller), so the command starts after the
    # first `--`, as the emissary's own flag parser reads it.
    (
        "k",
        f"variables.argv.size() > 2 && variables.argv[0] == '{EMISSARY[0]}' && variables.argv[1] == '{EMISSARY[1]}'"
        f" && variables.argv.indexOf('{EMISSARY[2]}') > 1 ? variables.argv.indexOf('{EMISSARY[2]}') + 1 : 0",
    ),
    ("hostPaths", f"{_containers('volumes')}.filter(v, has(v.hostPath)).map(v, v.hostPath.path)"),
    (
        "privileged",
        f"({_containers('containers')} + {_containers('initContainers')}).exists(c, has(c.securityContext)"
        " && has(c.securityContext.privileged) && c.securityContext.privileged)",
    ),
    (
        "hostNamespaces",
        "(has(object.spec.hostNetwork) && object.spec.hostNetwork) || (has(object.spec.hostIPC) && object.spec.hostIPC)"
        " || (has(object.spec.hostPID) && object.spec.hostPID)",
    ),  # no faultflow pod uses hostPID (issue 19)
    ("mainImage", f"variables.main.size() == 1 && variables.main[0].image == variables.config['{install.STEPS_IMAGE}']"),
    # The node agent's pods run the node-agent image (images/node-agent: no cluster client).
    ("agentImage", f"variables.main.size() == 1 && variables.main[0].image == variables.config['{install.NODE_AGENT_IMAGE}']"),
    # Argo's executor: init/wait containers running argoexec (exactly the configured image when there is one).
    (
        "executorOnly",
        f"object.spec.containers.all(c, c.name == 'main' || (c.name == 'wait' && has(c.command) && c.command.size() > 0"
        " && c.command[0].endsWith('argoexec') && (!('executor-image' in variables.config)"
        " || c.image == variables.config['executor-image'])))"
        f" && {_containers('initContainers')}.all(c, c.name == 'init' && has(c.command) && c.command.size() > 0"
        " && c.command[0].endsWith('argoexec') && (!('executor-image' in variables.config)"
        " || c.image == variables.config['executor-image']))",
    ),
    (
        "toggleOff",
        "object.spec.containers.size() == 1 && !has(object.spec.initContainers)"
        f" && object.spec.containers[0].image == variables.config['{install.NODE_AGENT_IMAGE}']"
        " && has(object.spec.containers[0].command) && !has(object.spec.containers[0].args)"
        " && object.spec.containers[0].command == ['faultflow', 'shim', 'off', '--file', variables.config['toggle-dir'] + '/toggle']"
        " && variables.hostPaths.all(p, p == variables.config['toggle-dir'])"
        " && !variables.privileged && !variables.hostNamespaces && !(has(object.spec.hostPID) && object.spec.hostPID)"
        " && has(object.spec.automountServiceAccountToken) && !object.spec.automountServiceAccountToken",
    ),
]

JANITOR_ARGV = (*JANITOR_COMMAND, *JANITOR_ARGS)


def _command_is(argv: tuple[str, ...]) -> str:
    """The main container runs exactly `argv` (behind the emissary wrapper or not)."""
    items = " && ".join(f"variables.argv[variables.k + {i}] == '{a}'" for i, a in enumerate(argv))
    return f"(variables.argv.size() == variables.k + {len(argv)} && {items})"


VALIDATIONS = [
    (
        f"variables.sa != '{JANITOR_ACCOUNT}' || (variables.mainImage && variables.executorOnly"
        f" && {_command_is(JANITOR_ARGV)}"
        " && variables.hostPaths.size() == 0 && !variables.privileged && !variables.hostNamespaces"
        " && !(has(object.spec.hostPID) && object.spec.hostPID))",
        f"the {JANITOR_ACCOUNT} account runs only `{' '.join(JANITOR_ARGV)}` in the installed steps image",
    ),
    (
        f"variables.sa != '{NODE_AGENT_ACCOUNT}' || (variables.agentImage && variables.executorOnly"
        " && variables.argv.size() >= variables.k + 3 && variables.argv[variables.k] == 'faultflow'"
        " && ((variables.argv[variables.k + 1] == 'step' && variables.argv[variables.k + 2] == 'inject-xid')"
        " || (variables.argv[variables.k + 1] == 'shim' && variables.argv[variables.k + 2] == 'on'))"
        f" && variables.hostPaths.all(p, p == '{KMSG}' || p == '{NVSENTINEL_DIR}' || p == variables.config['toggle-dir'])"
        " && !variables.hostNamespaces)",
        f"the {NODE_AGENT_ACCOUNT} account runs only `faultflow step inject-xid` / `faultflow shim on` in the installed node-agent "
        "image, with host paths /dev/kmsg, NVSentinel's metadata directory and the installed toggle directory only",
    ),
    (
        f"(variables.hostPaths.size() == 0 && !variables.privileged) || variables.sa == '{NODE_AGENT_ACCOUNT}' || variables.toggleOff",
        f"only the {NODE_AGENT_ACCOUNT} account and the toggle-off pod may use host paths or privileged containers here",
    ),
    (
        f"!(variables.sa in ['{JANITOR_ACCOUNT}', '{NODE_AGENT_ACCOUNT}']) || !has(object.spec.ephemeralContainers)"
        " || size(object.spec.ephemeralContainers) == 0",
        "no ephemeral containers in the janitor's or the node agent's pods",
    ),
]


def policy_objects(namespace: str) -> list[dict]:
    """The policy and its binding for faultflow's namespace `namespace`."""
    labels = {"app.kubernetes.io/part-of": "faultflow"}
    policy = {
        "apiVersion": ADMISSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                # Pod specs are immutable after CREATE but for ephemeral containers (their subresource).
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]},
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods/ephemeralcontainers"]},
                ],
            },
            "variables": [{"name": n, "expression": e} for n, e in VARIABLES],
            "validations": [{"expression": e, "message": msg} for e, msg in VALIDATIONS],
        },
    }
    binding = {
        "apiVersion": ADMISSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY, "labels": labels},
        "spec": {
            "policyName": POLICY,
            "validationActions": ["Deny"],
            # faultflow-config of the pod's own namespace; without it every pod there is refused.
            "paramRef": {"name": install.CONFIG_NAME, "namespace": namespace, "parameterNotFoundAction": "Deny"},
        },
    }
    return [policy, binding]
