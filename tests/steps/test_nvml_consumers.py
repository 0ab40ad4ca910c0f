"""inject-cuda-shim --nvml-consumers against a real kube-apiserver: the NVML interposer preloaded into
named DaemonSets (device plugin, DCGM, DRA driver) ledger-first, restored exactly by cleanup-dgd,
`faults recover` (the janitor's code) and SIGTERM; only a DaemonSet that opts in itself is touched."""

from __future__ import annotations

import json
import signal

from steps.kube.client import Ref
from steps.run import ledger as L
from steps.workload import nvml_consumers as nvml
from steps.workload import shim_patch
from tests.steps.test_gpu_cluster import cleanup, inject, make_world, preflight
from tests.support.cluster_world import HOME, KubeletSimulator, make_namespace

OPT_IN = {"faultflow.dev/allow-faults": "true"}


def make_daemonset(kube, ns: str, name: str, labels: dict) -> Ref:
    """Shaped like the DRA driver's kubelet plugin: two containers, NVML in the second, one with its own preload."""
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "labels": {"app": name, **labels}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "compute-domains", "image": "dra:1"},
                        {"name": "gpus", "image": "dra:1", "env": [{"name": "LD_PRELOAD", "value": "/usr/lib/own.so"}]},
                    ]
                },
            },
        },
    }
    kube.create(Ref("apps/v1", "daemonsets", ns, ""), body)
    return Ref("apps/v1", "daemonsets", ns, name)


def view(kube, ref: Ref) -> str:
    """Spec, labels and annotations, less the template generation the API server counts itself."""
    obj = kube.get(ref)
    annotations = {k: v for k, v in (obj["metadata"].get("annotations") or {}).items() if k != "deprecated.daemonset.template.generation"}
    return json.dumps({"spec": obj["spec"], "labels": obj["metadata"].get("labels"), "ann": annotations}, sort_keys=True)


def consumers_world(c, unique, tmp_path):
    w = make_world(c, unique, tmp_path)
    system = f"sys-{unique}"  # like kube-system / gpu-operator: the namespace itself does not opt in
    make_namespace(w.kube, system, opted_in=False)
    plugin = make_daemonset(w.kube, system, "device-plugin", OPT_IN)
    dcgm = make_daemonset(w.kube, system, "dcgm", {})
    assert preflight(c, w).returncode == 0
    return w, system, plugin, dcgm


def ledger_entry(w, system: str, name: str) -> L.Entry | None:
    ledger = L.LedgerStore(w.kube, HOME).load(w.ns, w.run)
    return ledger.entries.get(nvml.entry_id(nvml.ConsumerRef(system, name)))


def test_consumers_are_preloaded_ledger_first_and_restored_exactly(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    w, system, plugin, _ = consumers_world(c, unique, tmp_path)
    before, dgd_before = view(w.kube, plugin), w.spec()
    done = inject(c, w, "--no-wait", "--nvml-consumers", f"{system}/device-plugin")
    assert done.returncode == 0, done.stderr
    ds = w.kube.get(plugin)
    pod = ds["spec"]["template"]["spec"]
    assert [i["name"] for i in pod["initContainers"]] == [shim_patch.INIT_NAME]
    assert {v["name"] for v in pod["volumes"]} == {shim_patch.LIB_VOLUME, shim_patch.TOGGLE_VOLUME}
    toggle_file = f"{w.toggle_dir}/toggle"
    for container in pod["containers"]:  # every container, not only the first
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FAULTFLOW_TOGGLE_FILE"] == toggle_file
        assert env["LD_PRELOAD"].startswith(f"{shim_patch.LIB_DIR}/libfaultflow_nvml.so")
        assert {m["name"]: m.get("readOnly") for m in container["volumeMounts"]}[shim_patch.TOGGLE_VOLUME] is True
    assert {e["name"]: e["value"] for e in pod["containers"][1]["env"]}["LD_PRELOAD"].endswith(":/usr/lib/own.so")
    assert ds["metadata"]["annotations"][shim_patch.OWNER_ANNOTATION] == w.run
    entry = ledger_entry(w, system, "device-plugin")
    assert entry is not None and entry.kind == L.NVML_CONSUMER and entry.state == L.APPLIED
    # The ledger keeps the record of what was added, never the object (its env values may be secrets).
    kept = json.dumps(entry.data)
    assert set(entry.data) == {"record"} and not any(k in kept for k in ('"template"', '"managedFields"', '"status"'))
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert any(e["event"] == "shim_patched" and e.get("target") == f"daemonset/{system}/device-plugin" for e in events)
    # Again: nothing more is added (idempotent).
    again = inject(c, w, "--no-wait", "--nvml-consumers", f"{system}/device-plugin")
    assert again.returncode == 0, again.stderr
    assert json.dumps(w.kube.get(plugin)["spec"], sort_keys=True) == json.dumps(ds["spec"], sort_keys=True)
    restored = cleanup(c, w, "--no-toggle-off")
    assert restored.returncode == 0, restored.stderr
    assert view(w.kube, plugin) == before and w.spec() == dgd_before
    assert ledger_entry(w, system, "device-plugin").state == L.REVERTED


def test_a_daemonset_that_does_not_opt_in_itself_is_refused_and_nothing_changes(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    w, system, plugin, dcgm = consumers_world(c, unique, tmp_path)
    before, dgd_before = (view(w.kube, plugin), view(w.kube, dcgm)), w.spec()
    # Opting the namespace in does not open its DaemonSets.
    w.kube.merge_patch(Ref("v1", "namespaces", None, system), {"metadata": {"labels": OPT_IN}})
    refused = inject(c, w, "--no-wait", "--nvml-consumers", f"{system}/device-plugin,{system}/dcgm")
    assert refused.returncode == 2 and "dcgm has not opted in" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (view(w.kube, plugin), view(w.kube, dcgm)) == before and w.spec() == dgd_before
    missing = inject(c, w, "--no-wait", "--nvml-consumers", f"{system}/nothing-here")
    assert missing.returncode == 2 and "not found" in missing.stderr
    malformed = inject(c, w, "--no-wait", "--nvml-consumers", "device-plugin")
    assert malformed.returncode == 2 and "namespace/name" in malformed.stderr
    assert w.spec() == dgd_before


def test_recover_reverts_a_consumer_but_never_one_that_stopped_opting_in(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    w, system, plugin, _ = consumers_world(c, unique, tmp_path)
    before = view(w.kube, plugin)
    assert inject(c, w, "--no-wait", "--nvml-consumers", f"{system}/device-plugin").returncode == 0
    # Someone edits the DaemonSet meanwhile (a new container arg): their change survives the restore.
    w.kube.json_patch(plugin, [{"op": "add", "path": "/spec/template/spec/containers/0/args", "value": ["--v=4"]}])
    # The DaemonSet's owner withdraws the opt-in: the revert is refused, left for a person.
    w.kube.merge_patch(plugin, {"metadata": {"labels": {"faultflow.dev/allow-faults": None}}})
    refused = c.faultflow("step", "cleanup-dgd", "--run-id", w.run, "--namespace", w.ns, "--no-toggle-off")
    assert '"action":"refused"' in refused.stdout and ledger_entry(w, system, "device-plugin").state != L.REVERTED
    assert w.kube.get(plugin)["metadata"]["annotations"][shim_patch.OWNER_ANNOTATION] == w.run
    w.kube.merge_patch(plugin, {"metadata": {"labels": OPT_IN}})
    with KubeletSimulator(w.kube, roots={w.node: w.toggle_dir}):  # runs the toggle-off pod
        recovered = c.faultflow("faults", "recover", w.run, "--namespace", w.ns)
    assert recovered.returncode == 0, recovered.stderr
    assert ledger_entry(w, system, "device-plugin").state == L.REVERTED, recovered.stdout + recovered.stderr
    after = json.loads(view(w.kube, plugin))
    assert after["spec"]["template"]["spec"]["containers"][0]["args"] == ["--v=4"]
    del after["spec"]["template"]["spec"]["containers"][0]["args"]
    assert json.dumps(after, sort_keys=True) == before


def test_sigterm_takes_the_interposer_out_again(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    w, system, plugin, _ = consumers_world(c, unique, tmp_path)
    before = view(w.kube, plugin)
    proc = c.popen(
        "step", "inject-cuda-shim", "--run-id", w.run, "--namespace", w.ns, "--target", "dgd/llm", "--shim-image", "shim:1",
        "--xid", "79", "--toggle-dir", str(w.toggle_dir), "--timeout", "120s", "--nvml-consumers", f"{system}/device-plugin",
    )  # fmt: skip
    for line in proc.stdout:  # the consumer is patched; the step now waits for rollouts that never come here
        if line.startswith("{") and json.loads(line).get("target") == f"daemonset/{system}/device-plugin":
            break
    assert w.kube.get(plugin)["metadata"]["annotations"][shim_patch.OWNER_ANNOTATION] == w.run
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert view(w.kube, plugin) == before
    assert ledger_entry(w, system, "device-plugin").state == L.REVERTED
