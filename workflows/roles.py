"""The least-privilege roles: one ServiceAccount per kind of step, its rules, and the executor's account."""

from __future__ import annotations

from workflows.declaration import (
    Role,
    Rule,
)

DGD = "nvidia.com"


DGD_RESOURCES = ("dynamographdeployments",)


WORKLOADS = ("deployments", "statefulsets")
# NVML consumers (inject-cuda-shim --nvml-consumers): granted where these roles are bound, e.g. a
# RoleBinding in gpu-operator; faultflow still touches only a DaemonSet labelled to opt in itself.
CONSUMERS = ("daemonsets",)


# The run ledgers and ConfigMap faultflow-config: only in faultflow's own namespace (`installation`).
LEDGER = Rule("", ("configmaps",), ("get", "update"))
# The toggle-off pod (steps.gpu.toggle_pod) runs in faultflow's own namespace.
TOGGLE_PODS = Rule("", ("pods",), ("create", "get", "watch", "delete"))
# Reverting checks that the run's namespace still opts in (steps.run.revert.opted_in).
OPT_IN = Rule("", ("namespaces",), ("get",))


# --- roles: the verbs/resources are read off the steps' code (steps/kube.py calls) --------------
PREFLIGHT = Role(
    "preflight",
    "preflight: reads the target and its nodes, checks NVSentinel, opens the run ledger",
    namespaced=(
        Rule(DGD, DGD_RESOURCES, ("get",)),
        Rule("apps", WORKLOADS, ("get",)),
        Rule("", ("pods",), ("list",)),
        # Would the namespace admit the shim's init container (steps.run.preconditions, item 11)?
        Rule("", ("resourcequotas", "limitranges"), ("list",)),
    ),
    # list: earlier runs' ledgers (NVSentinel's dedup window), all in faultflow's namespace.
    installation=(Rule("", ("configmaps",), ("get", "list", "create", "update")),),
    # list nodes: NVSentinel's breaker counts the cordoned GPU nodes.
    cluster=(Rule("", ("namespaces",), ("get",)), Rule("", ("nodes",), ("get", "list"))),
    nvsentinel=(Rule("", ("configmaps",), ("get",)), Rule("", ("pods",), ("list",))),
)


SHIM_INJECTOR = Role(
    "shim-injector",
    "inject-cuda-shim: patches the GPU workers, watches the rollout, reads worker logs",
    namespaced=(
        Rule(DGD, DGD_RESOURCES, ("get", "list", "watch", "patch")),
        Rule("apps", WORKLOADS, ("get", "list", "watch", "patch")),
        Rule("apps", CONSUMERS, ("get", "list", "watch", "patch")),
        Rule("", ("pods",), ("list",)),
        Rule("", ("pods/log",), ("get",)),
    ),
    installation=(LEDGER,),
)


CORDON_WATCHER = Role(
    "cordon-watcher",
    "wait-for-cordon / watch-reach: watches the node, the workers leaving it and their logs",
    namespaced=(
        Rule(DGD, DGD_RESOURCES, ("get",)),
        Rule("apps", WORKLOADS, ("get",)),
        Rule("", ("pods",), ("list", "watch")),
        Rule("", ("pods/log",), ("get",)),  # watch-reach: the shim's "injecting XID" lines
    ),
    cluster=(Rule("", ("nodes",), ("get", "list", "watch")),),
)


CLEANUP = Role(
    "cleanup",
    "cleanup-dgd / heal-network: reverts this run's ledger entries, toggle-off pod on the node",
    namespaced=(
        Rule(DGD, DGD_RESOURCES, ("get", "patch")),
        Rule("apps", WORKLOADS, ("get", "patch")),
        Rule("apps", CONSUMERS, ("get", "patch")),
        Rule("", ("pods",), ("get", "delete", "list")),  # verify-partition's probe pod; the workers (--expect-cuda-faults)
        Rule("", ("pods/log",), ("get",)),
        Rule("networking.k8s.io", ("networkpolicies",), ("get", "delete")),
        Rule("chaos-mesh.org", ("networkchaos",), ("get", "delete")),
    ),
    installation=(LEDGER, TOGGLE_PODS),
    cluster=(Rule("", ("nodes",), ("get",)), OPT_IN),
)


NETWORK_INJECTOR = Role(
    "network-injector",
    "partition-network / degrade-network / verify-partition: creates this run's policies and chaos",
    namespaced=(
        Rule(DGD, DGD_RESOURCES, ("get",)),
        Rule("", ("pods",), ("list", "create", "get", "watch", "delete")),  # verify-partition's probe pod
        Rule("networking.k8s.io", ("networkpolicies",), ("create", "get", "list", "delete")),
        Rule("chaos-mesh.org", ("networkchaos",), ("create", "get", "list", "delete")),
    ),
    # Pod CIDRs (nodes), the API server's addresses (default/kubernetes Service and EndpointSlices),
    # namespaces for verify-partition's evaluation of namespaceSelectors.
    installation=(LEDGER,),
    cluster=(
        Rule("", ("nodes", "namespaces"), ("list",)),
        OPT_IN,
        Rule("", ("services",), ("get",)),
        Rule("discovery.k8s.io", ("endpointslices",), ("list",)),
    ),
)


# The janitor reads the ledgers in faultflow's own namespace only, and reverts only in the target
# namespaces (where the injecting roles are bound: a run can have changed nothing elsewhere). It never
# uncordons a node (no nodes patch) and creates pods only in faultflow's namespace (toggle-off).
JANITOR = Role(
    "janitor",
    "janitor: reverts orphaned runs (TTL passed, workflow gone or finished) from the ledgers in faultflow's namespace",
    namespaced=(
        # list: workloads still carrying a run's shim whose ledger is gone (steps.run.orphans, item 8).
        Rule(DGD, DGD_RESOURCES, ("get", "list", "patch")),
        Rule("apps", WORKLOADS, ("get", "list", "patch")),
        Rule("apps", CONSUMERS, ("get", "patch")),
        Rule("", ("pods",), ("get", "delete")),  # verify-partition's probe pod
        Rule("networking.k8s.io", ("networkpolicies",), ("get", "delete")),
        Rule("chaos-mesh.org", ("networkchaos",), ("get", "delete")),
    ),
    installation=(
        Rule("", ("configmaps",), ("list", "get", "update")),
        Rule("argoproj.io", ("workflows",), ("get", "list")),
        TOGGLE_PODS,
    ),
    # list namespaces: the opted-in ones, where a workload may still carry an orphaned shim.
    cluster=(Rule("", ("nodes",), ("get",)), Rule("", ("namespaces",), ("get", "list"))),
)


NODE_AGENT = Role("node-agent", "inject-xid / shim on: runs on the node, writes /dev/kmsg and the toggle; no API access", token=False)


OBSERVER = Role("observer", "load / verify-inference / report: HTTP to the frontend and files; no API access", token=False)


# The abort watcher (issue 18): reads the nodes (breaker, cordoned conditions) and stops its own run
# the way `argo stop` does — get and patch Workflows, in faultflow's namespace only. It never reverts
# anything itself: the stopped Workflow's exit handler does, as the cleanup account.
ABORT_WATCHER = Role(
    "abort-watcher",
    "watch-abort: evaluates the run's stop conditions and stops its Workflow when one fires",
    installation=(Rule("argoproj.io", ("workflows",), ("get", "patch")),),
    cluster=(Rule("", ("nodes",), ("list",)),),
)


# Runs the scenarios of the nightly suite as child Workflows (resource templates).
SUITE = Role(
    "suite",
    "nightly-resilience: submits each scenario as a Workflow and waits for it",
    namespaced=(
        Rule("argoproj.io", ("workflows",), ("create", "get", "list", "watch")),
        Rule("argoproj.io", ("workflowtaskresults",), ("create", "patch")),
    ),
    home=True,
)


ROLES = (PREFLIGHT, SHIM_INJECTOR, CORDON_WATCHER, CLEANUP, NETWORK_INJECTOR, JANITOR, NODE_AGENT, OBSERVER, SUITE, ABORT_WATCHER)


# Argo's executor (init/wait containers) reports results through WorkflowTaskResults; it runs under
# its own account so no step role needs Argo permissions and token-less pods still report.
EXECUTOR_SERVICE_ACCOUNT = "faultflow-executor"


EXECUTOR_RULES = (Rule("argoproj.io", ("workflowtaskresults",), ("create", "patch")),)
