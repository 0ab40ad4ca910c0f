"""The rendered Argo objects: structure (DAG order, exit handler, the XID pod, retries, deadlines),
determinism, the committed deploy/ being current, and the declaration matching the real step CLIs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path, PurePosixPath

import click
import pytest
import yaml

from steps.cli import main as faultflow_main
from steps.errors import BadInput
from tests.cli import faultflow
from workflows import declaration as d
from workflows import render as render_module
from workflows.cli import render_files, stale
from workflows.host_pid import host_pid_requests
from workflows.render import OUTPUTS_PATH, scenario_template
from workflows.scenarios import SCENARIOS, by_name
from workflows.stages.common import KMSG, TOGGLE_DIR_PATH

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def spec(name: str) -> dict:
    return scenario_template(by_name(name)).to_dict()["spec"]


def templates(s: dict) -> dict[str, dict]:
    return {t["name"]: t for t in s["templates"]}


def dag(s: dict, name: str) -> dict[str, dict]:
    return {t["name"]: t for t in templates(s)[name]["dag"]["tasks"]}


def test_gpu_fault_dag_order_and_dependencies():
    tasks = dag(spec("gpu-fault"), "main")
    assert {n: t.get("depends") for n, t in tasks.items()} == {
        "load": None,
        "watch-abort": None,  # issue 18: the stop conditions, beside the whole run
        "preflight": None,
        "steady-state": "preflight",
        "inject-cuda-shim": "steady-state",
        # issue 15 item 4: the workers' logs are followed from before the fault (a daemon, ready once
        # every stream is open), so NVSentinel's drain cannot take the evidence away.
        "watch-reach": "inject-cuda-shim",
        "inject-xid": "watch-reach",
        "wait-for-cordon": "inject-xid",
        # issue 15 item 14: the fault ends (toggle off, workload untouched), recovery is measured before
        # our restore; then the restore, then its own wait. Without the toggle-off a non-fatal XID's
        # fault would never end before the restore.
        "toggle-off": "wait-for-cordon",
        "verify-inference": "toggle-off",
        "cleanup-dgd": "verify-inference",
        "verify-after-cleanup": "cleanup-dgd",
    }
    assert templates(spec("gpu-fault"))["load"]["daemon"] is True  # traffic for the whole run
    watcher = templates(spec("gpu-fault"))["watch-abort"]
    assert watcher["daemon"] is True and watcher["serviceAccountName"] == "faultflow-abort-watcher"
    assert "== 3" in watcher["retryStrategy"]["expression"]  # an abort (exit 4) is a verdict, never retried

    watch = templates(spec("gpu-fault"))["watch-reach"]
    # Argo starts a daemon's dependents once its pod is Ready: the probe passes once the step wrote `watching`.
    assert watch["daemon"] is True and watch["container"]["readinessProbe"]["exec"]["command"] == [
        "test",
        "-f",
        "/tmp/faultflow/outputs/watching",
    ]
    cordon_args = templates(spec("gpu-fault"))["wait-for-cordon"]["container"]["args"]
    assert "--expect-cuda-faults" not in cordon_args and "--workers-confirmed" in cordon_args
    assert "--workers-confirmed" not in templates(spec("xid-only"))["wait-for-cordon"]["container"]["args"]
    args = {p["name"]: p["value"] for p in tasks["wait-for-cordon"]["arguments"]["parameters"]}
    # issue 15 item 4: the node inject-cuda-shim confirmed after its rollout (a Ready, shimmed worker there).
    assert args == {
        "inject-xid-fault-time-ms": "{{tasks.inject-xid.outputs.parameters.fault-time-ms}}",
        "inject-xid-pci": "{{tasks.inject-xid.outputs.parameters.pci}}",
        "inject-xid-expected-action": "{{tasks.inject-xid.outputs.parameters.expected-action}}",
        "inject-xid-expected-why": "{{tasks.inject-xid.outputs.parameters.expected-why}}",
        "preflight-expect": "{{tasks.preflight.outputs.parameters.expect}}",
        "inject-cuda-shim-node": "{{tasks.inject-cuda-shim.outputs.parameters.node}}",
    }


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_scenario_has_the_exit_handler_and_deadlines(scenario):
    s = scenario_template(scenario).to_dict()["spec"]
    assert s["onExit"] == "exit-handler"
    exit_tasks = dag(s, "exit-handler")
    assert list(exit_tasks) == ["final-cleanup", "report"]
    assert exit_tasks["report"]["depends"] == "final-cleanup.Succeeded || final-cleanup.Failed || final-cleanup.Errored"
    assert s["activeDeadlineSeconds"] > 0
    for template in s["templates"]:
        leaf = "dag" not in template and "steps" not in template  # Argo allows deadlines on leaves only
        assert (template.get("activeDeadlineSeconds", 0) > 0) == leaf, template["name"]
    assert s["synchronization"]["mutexes"][-1] == {"name": "faultflow-{{workflow.parameters.namespace}}"}
    assert s["executor"] == {"serviceAccountName": "faultflow-executor"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_api_touching_template_retries_and_nothing_else_does(scenario):
    s = scenario_template(scenario).to_dict()["spec"]
    for stage in (*scenario.stages, *scenario.exit_stages):
        template = templates(s)[stage.name]
        touches_api = stage.role.token and stage.hold is None
        assert ("retryStrategy" in template) == touches_api, stage.name
        if touches_api:
            retry = template["retryStrategy"]
            assert retry["backoff"]["factor"] == 2 and retry["retryPolicy"] == "Always"
            assert "exitCode) == 3" in retry["expression"]


def test_the_xid_pod_spec():
    t = templates(spec("gpu-fault"))["inject-xid"]
    # issue 15 item 4: on the node inject-cuda-shim chose, by the Node's name (a DaemonSet's pinning),
    # never by the hostname label, which may differ (tests/lab/test_real_cluster_images.py on real nodes).
    assert "nodeSelector" not in t
    assert t["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["{{inputs.parameters.inject-cuda-shim-node}}"]}]}
                ]
            }
        }
    }
    assert t["container"]["securityContext"]["privileged"] is True
    assert t["automountServiceAccountToken"] is False
    # No hostPID (Argo's emissary before 4.1 forwards a signal to pid -1: every process it may signal).
    assert "hostPID" not in json.dumps(t)
    assert sorted(v["hostPath"]["path"] for v in t["volumes"] if "hostPath" in v) == ["/dev/kmsg", TOGGLE_DIR_PATH]
    assert sorted(m["mountPath"] for m in t["container"]["volumeMounts"]) == ["/dev/kmsg", "/tmp", TOGGLE_DIR_PATH]
    # NVSentinel's metadata directory (the expected action depends on gpu_metadata.json) only where
    # NVSentinel is expected to act: on a node without NVSentinel it does not exist, and neither a pod
    # that cannot start (type Directory) nor a directory made on the node (any other type) will do.
    assert {"name": "preflight-expect"} in t["inputs"]["parameters"]
    assert nvsentinel_mount(t) == ("preflight-expect", "none", NVSENTINEL_PATCH)
    args = t["container"]["args"]
    # Every host path is explicit on the command line.
    for option, value in (
        ("--kmsg-path", "/dev/kmsg"),
        ("--proc-root", "/proc"),
        ("--toggle-dir", TOGGLE_DIR_PATH),
        ("--gpu-metadata", "/var/lib/nvsentinel/gpu_metadata.json"),
    ):
        assert args[args.index(option) + 1] == value
    assert "retryStrategy" not in t  # a second XID line would be a second fault
    # xid-only: /dev/kmsg and NVSentinel's metadata, no toggle.
    only = templates(spec("xid-only"))["inject-xid"]
    assert [v["hostPath"]["path"] for v in only["volumes"] if "hostPath" in v] == [KMSG.host_path]
    assert nvsentinel_mount(only) == ("preflight-expect", "none", NVSENTINEL_PATCH)
    task = next(t for t in spec("xid-only")["templates"] if t["name"] == "main")["dag"]["tasks"]
    xid_task = next(t for t in task if t["name"] == "inject-xid")
    assert {"name": "preflight-expect", "value": "{{tasks.preflight.outputs.parameters.expect}}"} in xid_task["arguments"]["parameters"]


NVSENTINEL_PATCH = {
    "volumes": [{"name": "host-1", "hostPath": {"path": "/var/lib/nvsentinel", "type": "Directory"}}],
    "containers": [{"name": "main", "volumeMounts": [{"name": "host-1", "mountPath": "/var/lib/nvsentinel", "readOnly": True}]}],
}


def nvsentinel_mount(template: dict) -> tuple[str, str, dict]:
    """The conditional mount's expression read back: (input, value that skips it, patch otherwise)."""
    found = re.fullmatch(r"\{\{=inputs\.parameters\['([a-z-]+)'\] == '([a-z]+)' \? '\{\}' : '([^']*)'\}\}", template["podSpecPatch"])
    assert found, template["podSpecPatch"]
    assert "}}" not in found.group(3)  # Argo's tag would end there
    return found.group(1), found.group(2), json.loads(found.group(3))


def test_parameters_have_descriptions_and_the_xid_enum_is_the_catalogue():
    from steps.gpu.xids import catalogue

    params = {p["name"]: p for p in spec("gpu-fault")["arguments"]["parameters"]}
    assert all(p.get("description") for p in params.values())
    assert params["xid"]["enum"] == [str(n) for n in sorted(catalogue())] and params["xid"]["value"] == "79"


def test_report_exports_figures_as_metrics_and_files_as_artifacts():
    t = templates(spec("gpu-fault"))["report"]
    gauges = {g["name"]: g for g in t["metrics"]["prometheus"]}
    assert gauges["faultflow_recovery_seconds"]["gauge"]["value"] == "{{outputs.parameters.recovery-seconds}}"
    paths = {p["name"]: p["valueFrom"]["path"] for p in t["outputs"]["parameters"]}
    assert paths["recovery-seconds"] == "/tmp/faultflow/outputs/metrics/recovery_seconds"
    assert {a["name"] for a in t["outputs"]["artifacts"]} >= {"report-json", "junit-xml", "timeline-png", "summary-md"}
    assert t["inputs"]["artifacts"][0]["s3"]["key"] == "faultflow/{{workflow.namespace}}/{{workflow.uid}}"


def _options(path: tuple[str, ...]) -> set[str]:
    command: click.Command = faultflow_main
    ctx = click.Context(faultflow_main)
    for word in path:
        command = command.get_command(ctx, word)
        assert command is not None, f"faultflow {' '.join(path)} does not exist"
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_option_passed_exists_in_the_step(scenario):
    checked = 0
    for stage in (*scenario.stages, *scenario.exit_stages):
        if stage.hold is not None:
            continue
        options = _options(stage.command[1:])
        passed = [a for a in stage.args if isinstance(a, str) and a.startswith("--")]
        if scenario.name.startswith("network") and stage.step == "preflight" and "--fault" not in options:
            passed = [a for a in passed if a != "--fault"]  # preflight --fault arrives with branch `network`
        assert set(passed) <= options, f"{stage.name}: {set(passed) - options}"
        checked += 1
    assert checked >= 4


def test_render_is_deterministic_and_deploy_is_current():
    first, second = render_files(), render_files()
    assert first == second
    assert stale(DEPLOY, first) == [], "deploy/ is stale: run `make render`"


def test_render_check_fails_on_a_stale_file(tmp_path):
    out = tmp_path / "deploy"
    assert faultflow("render", "--out", str(out)).returncode == 0
    assert faultflow("render", "--out", str(out), "--check").returncode == 0
    target = out / "templates" / "gpu-fault.yaml"
    target.write_text(target.read_text().replace("activeDeadlineSeconds: 300", "activeDeadlineSeconds: 301", 1))
    result = faultflow("render", "--out", str(out), "--check")
    assert result.returncode == 1 and "templates/gpu-fault.yaml" in result.stderr


def test_declaration_rejects_a_reference_to_a_stage_that_has_not_run():
    gpu = by_name("gpu-fault")
    broken = d.Scenario(
        gpu.name,
        gpu.title,
        gpu.description,
        gpu.parameters,
        tuple(s for s in gpu.stages if s.name != "inject-xid"),
        gpu.exit_stages,
        gpu.mutexes,
        gpu.deadline_s,
    )
    with pytest.raises((ValueError, KeyError)):
        broken.check()


def test_committed_yaml_files_parse():
    for path in DEPLOY.rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path


def test_no_rendered_object_asks_for_host_pid():
    files = render_files()
    # The admission policy names hostPID only to refuse it (faultflow's pods never ask for it).
    assert [path for path, text in files.items() if "hostPID" in text and path != "admission.yaml"] == []
    assert (
        "hostPID: true" not in files["admission.yaml"] and "!(has(object.spec.hostPID) && object.spec.hostPID)" in files["admission.yaml"]
    )
    # The one podSpecPatch: the XID pod's NVSentinel mount, volumes and mounts only.
    patched = {
        f"{path}:{t['name']}"
        for path, text in files.items()
        for obj in yaml.safe_load_all(text)
        if obj and obj.get("kind") == "WorkflowTemplate"
        for t in obj["spec"]["templates"]
        if "podSpecPatch" in t
    }
    assert patched == {"templates/gpu-fault.yaml:inject-xid", "templates/xid-only.yaml:inject-xid"}


def test_render_refuses_a_template_asking_for_host_pid(monkeypatch):
    """A template that asks for hostPID (here planted into gpu-fault's XID pod) stops the render."""
    real = render_module.scenario_template

    class Planted:
        def __init__(self, scenario):
            self.scenario = scenario

        def to_dict(self):
            obj = real(self.scenario).to_dict()
            if self.scenario.name == "gpu-fault":
                templates(obj["spec"])["inject-xid"]["podSpecPatch"] = json.dumps({"hostPID": True})
            return obj

    monkeypatch.setattr(render_module, "scenario_template", Planted)
    with pytest.raises(BadInput) as refused:
        render_files()
    message = str(refused.value)
    assert "hostPID" in message and "templates/gpu-fault.yaml" in message and "inject-xid" in message
    assert "xid-only" not in message


def test_host_pid_check_finds_every_form_and_only_those():
    patch_yaml = {"kind": "WorkflowTemplate", "spec": {"podSpecPatch": "hostPID: true\n", "templates": [{"name": "a"}]}}
    direct = {"kind": "CronWorkflow", "spec": {"workflowSpec": {"templates": [{"name": "b", "hostPID": True}]}}}
    # A patch's value may be an Argo expression resolved at run time: any mention is refused.
    templated = {"kind": "WorkflowTemplate", "spec": {"templates": [{"name": "c", "podSpecPatch": '{"hostPID": {{inputs.parameters.x}}}'}]}}
    harmless = {"kind": "WorkflowTemplate", "spec": {"templates": [{"name": "d", "podSpecPatch": '{"priorityClassName": "high"}'}]}}
    found = host_pid_requests({"p.yaml": patch_yaml, "d.yaml": direct, "t.yaml": templated, "h.yaml": harmless})
    assert found == [
        "d.yaml: spec.workflowSpec.templates[b].hostPID",
        "p.yaml: spec.podSpecPatch",
        "t.yaml: spec.templates[c].podSpecPatch",
    ]


def test_item14_recovery_is_measured_before_the_restore_in_every_gpu_scenario():
    for name in ("gpu-fault", "xid-only", "cuda-only"):
        tasks = dag(spec(name), "main")
        assert tasks["cleanup-dgd"]["depends"] == "verify-inference", name
        assert "toggle-off" not in tasks or tasks["verify-inference"]["depends"] == "toggle-off"
    cuda = templates(spec("cuda-only"))
    assert "--no-restore-workload" in cuda["toggle-off"]["container"]["args"]
    settle = templates(spec("gpu-fault"))["verify-after-cleanup"]["container"]["args"]
    assert settle[settle.index("--phase") + 1] == "cleanup"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_item9_the_node_pod_tolerates_only_the_cordon_and_nvsentinel_taints(scenario):
    """Issue 15 item 9: no blanket `operator: Exists` toleration (it would tolerate every taint,
    NoExecute evictions included); each toleration names its key."""
    for template in scenario_template(scenario).to_dict()["spec"]["templates"]:
        tolerations = template.get("tolerations")
        if tolerations is None:
            continue
        assert all(t.get("key") for t in tolerations), (scenario.name, template["name"], tolerations)
        keys = {t["key"] for t in tolerations}
        assert keys == {"node.kubernetes.io/unschedulable", "nvidia.com/gpu-error", "AggregatedNodeHealth", "nvidia.com/gpu"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_item9_the_privileged_node_pod_has_a_read_only_root_and_writes_only_tmp_and_its_host_paths(scenario):
    """Issue 15 item 9: the privileged container cannot change its own image; its outputs go to an
    emptyDir at /tmp (the outputs directory lives there), everything else it writes is a host path."""
    for template in scenario_template(scenario).to_dict()["spec"]["templates"]:
        container = template.get("container") or {}
        if not (container.get("securityContext") or {}).get("privileged"):
            continue
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, template["name"]
        assert OUTPUTS_PATH.startswith("/tmp/")
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        volumes = {v["name"]: v for v in template["volumes"]}
        assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], template["name"]
        writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
        assert all(m["mountPath"] == "/tmp" or "hostPath" in volumes[m["name"]] for m in writable), template["name"]


def test_low_item_every_workflow_template_has_pod_gc_and_a_ttl_the_readers_outlive():
    """Issue 15, Low: podGC and ttlStrategy on every WorkflowTemplate. The report reads artifacts (no
    pods), the janitor counts a deleted Workflow as over, and the nightly gate reads its children after
    the whole suite: so a scenario Workflow must outlive the suite's deadline."""
    files = render_files(nightly=tuple(s.name for s in SCENARIOS))
    templates = {path: yaml.safe_load(text.split("\n", 1)[1]) for path, text in files.items() if path.startswith("templates/")}
    assert templates and all("podGC" in t["spec"] and "ttlStrategy" in t["spec"] for t in templates.values())
    suite = templates["templates/nightly-resilience.yaml"]["spec"]
    for path, template in templates.items():
        if path != "templates/janitor.yaml":
            assert template["spec"]["podGC"] == {"strategy": "OnWorkflowSuccess"}, path
            assert template["spec"]["ttlStrategy"]["secondsAfterCompletion"] > suite["activeDeadlineSeconds"], path
    janitor = templates["templates/janitor.yaml"]["spec"]
    assert janitor["ttlStrategy"]["secondsAfterSuccess"] < janitor["ttlStrategy"]["secondsAfterFailure"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_no_input_artifact_is_mounted_on_the_outputs_directory_s_way(scenario):
    """Argo's emissary mounts each input artifact at its path, and the container runtime creates the
    mount point's missing parents owned by root: an input under /tmp/faultflow left the steps image's
    user unable to create /tmp/faultflow/outputs (the report exited 2 on the real controller,
    tests/lab/test_real_argo_faultflow.py). Inputs stay off every ancestor of the outputs directory."""
    ancestors = {str(p) for p in PurePosixPath(OUTPUTS_PATH).parents} - {"/", "/tmp"}
    for template in scenario_template(scenario).to_dict()["spec"]["templates"]:
        for artifact in (template.get("inputs") or {}).get("artifacts") or []:
            path = PurePosixPath(artifact["path"])
            assert not ({str(p) for p in path.parents} & ancestors), (template["name"], artifact["path"])
            assert not str(path).startswith(OUTPUTS_PATH), (template["name"], artifact["path"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_report_s_evidence_is_readable_by_the_steps_image_s_user(scenario):
    """Argo's init container downloads the evidence as its own user, directories private; the report
    (another user) read nothing on the real controller until the artifact asked for a mode, recursively."""
    report = templates(spec(scenario.name))["report"]
    evidence = next(a for a in report["inputs"]["artifacts"] if a["name"] == "evidence")
    assert evidence["mode"] & 0o005 == 0o005 and evidence["recurseMode"] is True


# YAML 1.1's booleans: Argo's CLI reads `-p NAME=VALUE` through a YAML 1.1 parser, and a parameter named
# `n` (or `y`, `on`, …) becomes a boolean key there and `argo submit` fails.
YAML11_BOOLEANS = {"y", "yes", "n", "no", "true", "false", "on", "off"}


def test_no_parameter_name_is_a_yaml_1_1_boolean():
    files = render_files()
    names = {
        (path, p["name"])
        for path, text in files.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and doc.get("kind") in ("WorkflowTemplate", "CronWorkflow")
        for holder in (doc["spec"].get("workflowSpec", doc["spec"]),)
        for p in [*(holder.get("arguments") or {}).get("parameters", []), *(
            q for t in holder.get("templates", []) for q in (t.get("inputs") or {}).get("parameters", [])
        )]
    }  # fmt: skip
    assert names and not {(path, name) for path, name in names if name.lower() in YAML11_BOOLEANS}


def test_a_stage_may_wait_only_for_a_background_stage_that_says_when_it_is_ready():
    """Issue 15 item 4: the fault stages wait for watch-reach to be following the logs, not merely running."""
    gpu = by_name("gpu-fault")
    watch = gpu.stage("watch-reach")
    assert watch.background and watch.ready == "watching" and gpu.stage("inject-xid").after == ("watch-reach",)
    assert [s.name for s in gpu.order()].index("watch-reach") < [s.name for s in gpu.order()].index("inject-xid")
    unready = dataclasses.replace(gpu, stages=tuple(dataclasses.replace(s, ready=None) if s is watch else s for s in gpu.stages))
    with pytest.raises(ValueError, match="waits for background stage watch-reach, which declares no `ready` file"):
        unready.check()
