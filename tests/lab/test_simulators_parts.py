"""The pieces of the real cluster's simulators that need no cluster (`lab.simulators`, `lab.frontend`):
what the DGD operator SIMULATOR writes for each DGD version, and the routing frontend's discovery and
bad input. The simulators on real nodes: tests/lab/test_real_cluster_world.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab import frontend
from lab.simulators.dgd_operator import SYSTEM_PORT, WORKERS_ENV, complete, deployment, plan, services, worker_address
from lab.simulators.workload import FRONTEND, WORKER, lab_dgd
from steps.workload.dynamo import COMPONENT_LABEL, COMPONENT_TYPE_LABEL, DGD_NAME_LABEL


def _dgd(version: str) -> dict:
    body = lab_dgd(version, "llm", workers=2)
    body["metadata"] |= {"namespace": "ns", "uid": "uid-1", "generation": 1}
    return body


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_the_operator_writes_one_deployment_per_component_with_dynamos_labels(version):
    dgd = _dgd(version)
    plans = {c.name: c for c in plan(dgd)}
    workers = [worker_address("ns", "llm", WORKER)]
    worker = deployment(dgd, plans[WORKER], workers)
    front = deployment(dgd, plans[FRONTEND], workers)
    assert worker["metadata"]["name"] == "llm-vllmworker" and worker["spec"]["replicas"] == 2
    assert worker["metadata"]["ownerReferences"][0] == {
        "apiVersion": dgd["apiVersion"],
        "kind": "DynamoGraphDeployment",
        "name": "llm",
        "uid": "uid-1",
        "controller": True,
    }
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert labels == {DGD_NAME_LABEL: "llm", COMPONENT_LABEL: WORKER, COMPONENT_TYPE_LABEL: "worker"}
    assert worker["spec"]["selector"]["matchLabels"].items() <= labels.items()
    main = worker["spec"]["template"]["spec"]["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert main["readinessProbe"]["httpGet"] == {"path": "/health", "port": SYSTEM_PORT}
    front_env = {e["name"]: e.get("value") for e in front["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert front_env[WORKERS_ENV] == f"llm-vllmworker.ns.svc.cluster.local:{SYSTEM_PORT}"
    names = {s["metadata"]["name"]: s["spec"] for s in services(dgd, list(plans.values()))}
    assert names["llm-frontend"]["selector"] == {DGD_NAME_LABEL: "llm", COMPONENT_TYPE_LABEL: "frontend"}
    assert names["llm-vllmworker"]["clusterIP"] == "None"


def test_a_changed_dgd_changes_only_the_changed_components_template():
    dgd = _dgd("v1beta1")
    before = {c.name: deployment(dgd, c, []) for c in plan(dgd)}
    dgd["spec"]["components"][1]["podTemplate"]["spec"]["containers"][0]["env"].append({"name": "LD_PRELOAD", "value": "/x.so"})
    after = {c.name: deployment(dgd, c, []) for c in plan(dgd)}
    assert before[FRONTEND] == after[FRONTEND] and before[WORKER] != after[WORKER]


def test_a_deployment_is_complete_only_when_every_replica_is_updated_and_no_old_one_is_left():
    dep = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}}
    assert not complete(dep, 2)  # an old replica still serves beside the two new ones
    dep["status"] |= {"replicas": 2, "availableReplicas": 2}
    assert complete(dep, 2)
    dep["metadata"]["generation"] = 3  # a new spec the controller has not observed yet
    assert not complete(dep, 2)


# ---- the routing frontend --------------------------------------------------------------------------
def test_the_frontend_resolves_each_worker_name_to_its_addresses_and_an_unknown_one_to_none():
    resolve = frontend.dns_instances(["localhost:9090", "no-such-worker.invalid:9090"])
    assert resolve() == ["http://127.0.0.1:9090"]


def test_the_frontend_refuses_workers_without_a_port(capsys):
    with pytest.raises(SystemExit) as exit_:
        frontend.main(["--workers", "llm-vllmworker.ns.svc"])
    assert exit_.value.code == 2 and "host:port" in capsys.readouterr().err


def test_the_frontend_routes_a_completion_to_a_worker_it_resolved():
    class Worker(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            data = json.dumps({"text": "token (from w-1)"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import urllib.request

    try:
        with frontend.LabFrontend(0, frontend.dns_instances([f"localhost:{server.server_address[1]}"])) as lab_frontend:
            request = urllib.request.Request(
                f"{lab_frontend.url}/v1/completions", json.dumps({"prompt": "hi"}).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                answer = json.loads(reply.read())
    finally:
        server.shutdown()
    assert answer["choices"][0]["text"] == "token (from w-1)"
