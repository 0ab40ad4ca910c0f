"""Network fault steps against a real kube-apiserver with the real Chaos Mesh NetworkChaos CRD.

"Which pods does a policy select / allow" is always answered by the API server's own label-selector
evaluation (`list pods?labelSelector=` built from the policy's selectors) on real Pod objects that
carry the Dynamo operator's labels, for a v1alpha1 and a v1beta1 DGD.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from steps.kube.client import Kube, Ref, Unprocessable
from steps.network.selectors import requirements_of, selector_string
from steps.network.verify import allowed_by_peers, ip_allowed
from steps.run import ledger as L
from tests.steps.network_world import POD_CIDR, NetWorld, make_net_world

POLICIES = Ref("networking.k8s.io/v1", "networkpolicies", None, "")
CHAOS = Ref("chaos-mesh.org/v1alpha1", "networkchaos", None, "")


def in_ns(ref: Ref, ns: str) -> Ref:
    return Ref(ref.api_version, ref.plural, ns, "")


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def preflight(c, w: NetWorld, *extra):
    return c.faultflow("step", "preflight", "--fault", "network", "--run-id", w.run, "--namespace", w.ns, "--target", "dgd/llm", *extra)


def partition(c, w: NetWorld, *extra):
    return c.faultflow(
        "step", "partition-network", "--run-id", w.run, "--namespace", w.ns, "--target", "dgd/llm", "--pod-cidr", POD_CIDR, *extra
    )


def degrade(c, w: NetWorld, *extra):
    return c.faultflow("step", "degrade-network", "--run-id", w.run, "--namespace", w.ns, "--target", "dgd/llm", *extra)


def run_objects(kube: Kube, ns: str, run: str) -> list[dict]:
    out = []
    for ref in (POLICIES, CHAOS):
        out += kube.list(in_ns(ref, ns), label_selector=f"{L.RUN_LABEL}={run}").get("items") or []
    return out


# --- every partition type selects exactly the intended pods ---------------------------------------

# partition → (extra options, role/pod set of the sources, of the cut-off pods)
CASES = {
    "frontend-worker": ([], ("role", "frontend"), ("role", "worker")),
    "worker-worker": ([], ("role", "worker"), ("role", "worker")),
    "prefill-decode": ([], ("role", "prefill"), ("role", "decode")),
    "worker-nats": ([], ("role", "worker"), ("pods", "nats")),
    "worker-nats+etcd": (["--include-etcd", "--etcd-namespace", "{ns2}"], ("role", "worker"), ("pods", "nats", "etcd2")),
    "frontend-nats": (["--nats-namespace", "{ns2}"], ("role", "frontend"), ("pods", "nats2")),
    "custom": (
        ["--source-selector", "app=web", "--peer-selector", "app.kubernetes.io/name in (etcd)", "--peer-namespace", "{ns2}"],
        ("pods", "web"),
        ("pods", "etcd2"),
    ),
}


def expected(w: NetWorld, spec: tuple) -> set[tuple[str, str]]:
    if spec[0] == "role":
        return w.in_ns(w.roles[spec[1]])
    return {(w.ns2 if key.endswith("2") else w.ns, name) for key in spec[1:] for name in w.pods[key]}


@pytest.mark.parametrize("case", list(CASES))
def test_partition_selects_exactly_the_intended_pods(gpu_cluster, unique, case):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    extra, sources, cut = CASES[case]
    assert preflight(c, w).returncode == 0
    done = partition(c, w, "--partition", case.split("+")[0], "--direction", "both", *[a.format(ns2=w.ns2) for a in extra])
    assert done.returncode == 0, done.stderr
    assert [e["event"] for e in events(done.stdout)] == ["fault_injected"]
    policies = w.kube.list(in_ns(POLICIES, w.ns), label_selector=f"{L.RUN_LABEL}={w.run}")["items"]
    assert policies, "no policy created"
    universe, selected = w.universe(), set()
    for policy in policies:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        # The API server itself says which pods the podSelector selects.
        selector = selector_string(requirements_of(spec["podSelector"]))
        selected |= {(w.ns, p["metadata"]["name"]) for p in w.kube.list(Ref("v1", "pods", w.ns, ""), label_selector=selector)["items"]}
        for rules, key in ((spec["egress"], "to"), (spec["ingress"], "from")):
            peers = [p for rule in rules if "ports" not in rule for p in rule.get(key) or []]
            allowed = allowed_by_peers(w.kube, w.ns, peers, {w.ns, w.ns2})
            assert universe - allowed == expected(w, cut), f"{key}: cut off {sorted(universe - allowed)}"
            ips = {
                p["metadata"]["name"]: p["status"]["podIP"] for ns in (w.ns, w.ns2) for p in w.kube.list(Ref("v1", "pods", ns, ""))["items"]
            }
            assert not any(ip_allowed(ip, peers) for ip in ips.values())  # pod IPs only through label peers
            assert ip_allowed("8.8.8.8", peers) and ip_allowed("2001:db8::1", peers)  # off-cluster stays open
        dns = [r for r in spec["egress"] if "ports" in r]
        assert dns == [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]  # to anywhere
        api_ip = w.kube.get(Ref("v1", "services", "default", "kubernetes"))["spec"]["clusterIP"]
        assert ip_allowed(api_ip, [p for r in spec["egress"] for p in r.get("to") or []])
    assert selected == expected(w, sources)


def test_partition_is_idempotent_verified_and_healed(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    planned = partition(c, w, "--partition", "worker-nats", "--dry-run")  # a dry run needs no ledger and changes nothing
    assert planned.returncode == 0, planned.stderr
    assert [e["object"]["kind"] for e in events(planned.stdout) if e["event"] == "planned_change"] == ["NetworkPolicy"]
    assert run_objects(w.kube, w.ns, w.run) == [] and L.LedgerStore(w.kube).load(w.ns, w.run) is None
    assert preflight(c, w).returncode == 0
    assert partition(c, w, "--partition", "worker-nats").returncode == 0
    first = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in run_objects(w.kube, w.ns, w.run)}
    again = partition(c, w, "--partition", "worker-nats")
    assert again.returncode == 0 and events(again.stdout)[0]["already"] is True
    assert {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in run_objects(w.kube, w.ns, w.run)} == first
    other = partition(c, w, "--partition", "worker-nats", "--direction", "egress")
    assert other.returncode == 2 and "other settings" in other.stderr

    verified = c.faultflow("step", "verify-partition", "--run-id", w.run, "--namespace", w.ns, "--outputs-dir", str(tmp_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    summary = [e for e in events(verified.stdout) if e["event"] == "partition_verified"][0]
    assert summary["probe"] == "skipped (no --probe-image)" and "selected pods" in summary["checked"]
    checks = json.loads((tmp_path / "verify.json").read_text())
    assert {c_["name"].split(":")[1] for c_ in checks} >= {
        "exists",
        "unchanged",
        "selects_pods",
        "peers_exist",
        "to_cut",
        "from_cut",
        "dns_allowed",
        "api_server_allowed",
    }

    # Someone edits the policy so it no longer cuts NATS off: verify must notice.
    name = next(iter(first))
    w.kube.json_patch(
        Ref("networking.k8s.io/v1", "networkpolicies", w.ns, name),
        [{"op": "add", "path": "/spec/egress/0/to/-", "value": {"podSelector": {}}}],
    )
    broken = c.faultflow("step", "verify-partition", "--run-id", w.run, "--namespace", w.ns)
    assert broken.returncode == 1 and "to_cut" in broken.stderr

    healed = c.faultflow("step", "heal-network", "--run-id", w.run, "--namespace", w.ns)
    assert healed.returncode == 0 and "fault_cleared" in [e["event"] for e in events(healed.stdout)]
    assert run_objects(w.kube, w.ns, w.run) == []
    twice = c.faultflow("step", "heal-network", "--run-id", w.run, "--namespace", w.ns)
    assert twice.returncode == 0 and [e["event"] for e in events(twice.stdout)] == ["already_clean"]


def test_heal_never_deletes_an_object_that_is_not_the_runs(gpu_cluster, unique):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    assert preflight(c, w).returncode == 0 and partition(c, w, "--partition", "frontend-nats").returncode == 0
    (policy,) = run_objects(w.kube, w.ns, w.run)
    ref = Ref("networking.k8s.io/v1", "networkpolicies", w.ns, policy["metadata"]["name"])
    w.kube.merge_patch(ref, {"metadata": {"labels": {L.RUN_LABEL: "someone-else"}}})  # taken over by another owner
    assert c.faultflow("step", "heal-network", "--run-id", w.run, "--namespace", w.ns).returncode == 0
    assert w.kube.get_or_none(ref) is not None


def test_partition_refuses_pods_another_policy_already_selects(gpu_cluster, unique):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    assert preflight(c, w).returncode == 0
    w.kube.create(
        in_ns(POLICIES, w.ns),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
        },
    )
    refused = partition(c, w, "--partition", "worker-nats", "--direction", "egress")
    assert refused.returncode == 1 and "deny-all" in refused.stderr
    assert run_objects(w.kube, w.ns, w.run) == []
    ingress_only = partition(c, w, "--partition", "worker-nats", "--direction", "ingress")
    assert ingress_only.returncode == 0, ingress_only.stderr  # different direction: no widening


def test_verify_probe_pod_spec_and_result(gpu_cluster, unique):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    assert preflight(c, w).returncode == 0 and partition(c, w, "--partition", "frontend-worker", "--direction", "egress").returncode == 0
    seen: list[dict] = []

    def probe_kubelet_simulator():
        """Reports the probe pod finished as the kubelet would: phase and the container's termination message."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            for pod in w.kube.list(Ref("v1", "pods", w.ns, ""), label_selector="faultflow.dev/purpose=network-probe")["items"]:
                seen.append(pod)
                command = pod["spec"]["containers"][0]["command"]
                results = [dict(check, got=check["expect"]) for check in json.loads(command[3])]
                w.kube.request(
                    "PATCH",
                    f"/api/v1/namespaces/{w.ns}/pods/{pod['metadata']['name']}/status",
                    content_type="application/merge-patch+json",
                    body={
                        "status": {
                            "phase": "Succeeded",
                            "containerStatuses": [
                                {
                                    "name": "probe",
                                    "image": "probe:1",
                                    "imageID": "",
                                    "ready": False,
                                    "restartCount": 0,
                                    "state": {"terminated": {"exitCode": 0, "message": json.dumps(results), "reason": "Completed"}},
                                }
                            ],
                        }
                    },
                )
            threading.Event().wait(0.1)  # polling a list; the deadline bounds it

    thread = threading.Thread(target=probe_kubelet_simulator)
    thread.start()
    result = c.faultflow(
        "step", "verify-partition", "--run-id", w.run, "--namespace", w.ns, "--probe-image", "probe:1", "--probe-timeout", "60s"
    )
    thread.join()
    assert result.returncode == 0, result.stdout + result.stderr
    (pod,) = seen
    labels = pod["metadata"]["labels"]
    assert labels["nvidia.com/dynamo-graph-deployment-name"] == "llm" and labels["nvidia.com/dynamo-component-type"] == "frontend"
    assert pod["spec"]["automountServiceAccountToken"] is False and pod["spec"]["restartPolicy"] == "Never"
    checks = json.loads(pod["spec"]["containers"][0]["command"][3])
    worker_ips = {
        p["status"]["podIP"] for p in w.kube.list(Ref("v1", "pods", w.ns, ""))["items"] if p["metadata"]["name"] in w.roles["worker"]
    }
    assert checks[0]["host"] in worker_ips and checks[0]["port"] == 8000 and checks[0]["expect"] == "blocked"
    assert checks[1]["host"] == "kubernetes.default.svc" and checks[1]["expect"] == "open"
    assert any(e["event"] == "check_passed" and e["check"].endswith(":probe") for e in events(result.stdout))
    assert w.kube.list(Ref("v1", "pods", w.ns, ""), label_selector="faultflow.dev/purpose=network-probe")["items"] == []


# --- Chaos Mesh ------------------------------------------------------------------------------------


def test_degrade_every_action_accepted_by_the_crd(gpu_cluster, unique):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    assert preflight(c, w).returncode == 0
    done = degrade(
        c,
        w,
        "--pods",
        "worker",
        "--peer",
        "nats",
        "--direction",
        "both",
        "--mode",
        "fixed-percent",
        "--mode-value",
        "50",
        "--loss",
        "25",
        "--loss-correlation",
        "10",
        "--delay",
        "100ms",
        "--jitter",
        "10ms",
        "--bandwidth",
        "10mbps",
        "--corrupt",
        "1.5",
        "--duplicate",
        "2",
        "--duration",
        "90s",
    )
    assert done.returncode == 0, done.stderr
    objs = {o["spec"]["action"]: o for o in w.kube.list(in_ns(CHAOS, w.ns), label_selector=f"{L.RUN_LABEL}={w.run}")["items"]}
    assert sorted(objs) == ["bandwidth", "corrupt", "delay", "duplicate", "loss"]
    spec = objs["delay"]["spec"]
    assert spec["delay"] == {"latency": "100ms", "jitter": "10ms", "correlation": "0"}
    assert spec["duration"] == "90s" and spec["mode"] == "fixed-percent" and spec["value"] == "50"
    assert objs["bandwidth"]["spec"]["bandwidth"] == {"rate": "10mbps", "limit": 20480, "buffer": 10000}
    # Chaos Mesh's selectors, evaluated by the API server: the workers, and NATS as the target.
    for side, want in (("selector", w.in_ns(w.roles["worker"])), ("target", w.in_ns(w.pods["nats"]))):
        sel = spec[side] if side == "selector" else spec[side]["selector"]
        reqs = requirements_of({"matchLabels": sel.get("labelSelectors") or {}, "matchExpressions": sel.get("expressionSelectors") or []})
        (ns,) = sel["namespaces"]
        got = {(ns, p["metadata"]["name"]) for p in w.kube.list(Ref("v1", "pods", ns, ""), label_selector=selector_string(reqs))["items"]}
        assert got == want, side
    verified = c.faultflow("step", "verify-partition", "--run-id", w.run, "--namespace", w.ns)
    assert verified.returncode == 0, verified.stderr
    again = degrade(
        c,
        w,
        "--pods",
        "worker",
        "--peer",
        "nats",
        "--direction",
        "both",
        "--mode",
        "fixed-percent",
        "--mode-value",
        "50",
        "--loss",
        "25",
        "--loss-correlation",
        "10",
        "--delay",
        "100ms",
        "--jitter",
        "10ms",
        "--bandwidth",
        "10mbps",
        "--corrupt",
        "1.5",
        "--duplicate",
        "2",
        "--duration",
        "90s",
    )
    assert again.returncode == 0 and events(again.stdout)[0]["already"] is True
    assert c.faultflow("step", "heal-network", "--run-id", w.run, "--namespace", w.ns).returncode == 0
    assert run_objects(w.kube, w.ns, w.run) == []


def test_malformed_networkchaos_is_rejected_by_the_crd(gpu_cluster, unique):
    w = make_net_world(gpu_cluster, unique)
    base = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"namespace": w.ns},
        "spec": {
            "action": "loss",
            "mode": "all",
            "loss": {"loss": "50", "correlation": "0"},
            "selector": {"namespaces": [w.ns], "labelSelectors": {"app": "web"}},
        },
    }
    ok = json.loads(json.dumps(base))
    ok["metadata"]["name"] = "well-formed"
    w.kube.create(in_ns(CHAOS, w.ns), ok)  # the control: the same object, well formed, is accepted
    # The reference's shape: selector fields directly under target, matchExpressions inside labelSelectors.
    bad = json.loads(json.dumps(base))
    bad["metadata"]["name"] = "reference-shape"
    bad["spec"]["target"] = {
        "mode": "all",
        "namespaces": [w.ns],
        "labelSelectors": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["nats"]}]},
    }
    with pytest.raises(Unprocessable):
        w.kube.create(in_ns(CHAOS, w.ns), bad)
    strings = json.loads(json.dumps(base))
    strings["metadata"]["name"] = "string-limits"
    strings["spec"].update(action="bandwidth", bandwidth={"rate": "1mbps", "limit": "20480", "buffer": "10000"})
    with pytest.raises(Unprocessable):
        w.kube.create(in_ns(CHAOS, w.ns), strings)


# --- duration: the janitor heals expired entries of a live run ------------------------------------


def test_janitor_heals_expired_network_entries_of_a_live_run(gpu_cluster, unique):
    c, w = gpu_cluster, make_net_world(gpu_cluster, unique)
    assert preflight(c, w).returncode == 0  # no workflow recorded, inside its TTL: a live run
    assert partition(c, w, "--partition", "worker-nats", "--duration", "1s").returncode == 0
    assert partition(c, w, "--partition", "frontend-nats", "--duration", "1h").returncode == 0
    ledger = L.LedgerStore(w.kube).load(w.ns, w.run)
    deadline = max(e.data["expires_ms"] for e in ledger.active() if "worker-nats" in e.id)
    while L.now_ms() <= deadline:  # wait for the 1 s duration to pass (a deadline, not a guess)
        threading.Event().wait(max(0.0, (deadline - L.now_ms()) / 1000 + 0.01))
    sweep = c.faultflow("step", "janitor", "--namespace", w.ns)
    assert sweep.returncode == 0, sweep.stderr
    left = sorted(o["metadata"]["name"] for o in run_objects(w.kube, w.ns, w.run))
    assert left == [f"faultflow-{w.run}-frontend-nats-0"]
    assert {(e["event"], e["reason"]) for e in events(sweep.stdout) if "reason" in e} == {("fault_cleared", "entry-expired")}


# --- kill matrix ------------------------------------------------------------------------------------

# Each step runs ~0.3-0.5 s here (start-up ~0.2 s): the points spread over its life, so kills land
# before the ledger entry, between entry and create, between objects, and after the end.
KILL_POINTS = [
    ("preflight", 0.05),
    ("preflight", 0.3),
    ("partition-network", 0.1),
    ("partition-network", 0.25),
    ("partition-network", 0.35),
    ("partition-network", 0.45),
    ("degrade-network", 0.1),
    ("degrade-network", 0.2),
    ("degrade-network", 0.25),
    ("degrade-network", 0.3),
    ("heal-network", 0.2),
    ("heal-network", 0.3),
]
DEGRADE = ["--loss", "10", "--delay", "50ms", "--bandwidth", "1mbps", "--corrupt", "1", "--duplicate", "1"]


def _spawn(c, w: NetWorld, step: str):
    common = ["--run-id", w.run, "--namespace", w.ns]
    if step == "preflight":
        return c.popen("step", "preflight", "--fault", "network", *common, "--target", "dgd/llm", "--workflow-name", f"wf-{w.run}")
    if step == "partition-network":
        return c.popen("step", step, *common, "--target", "dgd/llm", "--partition", "worker-nats", "--pod-cidr", POD_CIDR)
    if step == "degrade-network":
        return c.popen("step", step, *common, "--target", "dgd/llm", *DEGRADE)
    return c.popen("step", step, *common)


def test_kill_matrix_janitor_removes_everything(gpu_cluster, unique):
    c = gpu_cluster
    order = ["preflight", "partition-network", "degrade-network", "heal-network"]
    leftovers, total, states = [], 0, {}
    for step, after in KILL_POINTS:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            w = make_net_world(c, f"{unique}-{total}")
            for earlier in order[: order.index(step)]:
                p = _spawn(c, w, earlier)
                p.communicate(timeout=60)
                assert p.returncode == 0, p.stderr
            proc = _spawn(c, w, step)
            time.sleep(after)  # a point in the step's life, not a stand-in for a condition
            proc.send_signal(sig)
            proc.communicate(timeout=60)
            ledger = L.LedgerStore(w.kube).load(w.ns, w.run)
            state = f"{step}/{len(ledger.active()) if ledger else 'no ledger'}"
            states[state] = states.get(state, 0) + 1
            # The workflow is gone (never created): the janitor must revert the run.
            janitor = c.faultflow("step", "janitor", "--namespace", w.ns)
            total += 1
            ledger = L.LedgerStore(w.kube).load(w.ns, w.run)
            active = [e.id for e in ledger.active()] if ledger else []
            objs = [o["metadata"]["name"] for o in run_objects(w.kube, w.ns, w.run)]
            probes = w.kube.list(Ref("v1", "pods", w.ns, ""), label_selector=f"{L.RUN_LABEL}={w.run}")["items"]
            if janitor.returncode != 0 or active or objs or probes:
                leftovers.append(
                    f"{step}@{after}/{sig.name}: rc={janitor.returncode} active={active} objects={objs} {janitor.stderr.strip()[-300:]}"
                )
    print(f"states when killed (step/active ledger entries: count): {states}")
    print(f"leftovers after kill matrix: {len(leftovers)} of {total}")
    assert leftovers == [], "\n".join(leftovers)
