"""Issue 15, Low: `revert_node` reported `uncordoned` after eight conflicts without uncordoning.

Against the real kube-apiserver: a node whose object changes between each of our reads and our
resourceVersion-guarded patch (another writer — NVSentinel, the kubelet — labels it every time) gets
real 409s; after the last attempt the revert must say the node is still cordoned (an infrastructure
error, the entry left for a retry), and with one conflict only it must really uncordon."""

from __future__ import annotations

import pytest

from steps.errors import InfrastructureError
from steps.kube.client import Ref, connect
from steps.run import ledger as L
from steps.run.revert import revert_node
from tests.support.cluster_world import make_gpu_node


class RacingWriter:
    """The API as our revert sees it while another writer changes the node before each of our patches
    (the first `races` ones): everything goes to the real API server."""

    def __init__(self, kube, races: int):
        self.kube, self.races, self.writes = kube, races, 0

    def get(self, ref):
        return self.kube.get(ref)

    def guarded_patch(self, ref, ops):
        if self.writes < self.races:
            self.writes += 1
            self.kube.merge_patch(ref, {"metadata": {"labels": {"example.invalid/heartbeat": str(self.writes)}}})
        return self.kube.guarded_patch(ref, ops)


@pytest.mark.parametrize("races", [8, 1])
def test_low_item_revert_node_reports_what_really_happened(cluster, unique, races):
    kube = connect(str(cluster.kubeconfig))
    node = f"racing-{unique}-{races}"
    make_gpu_node(kube, node, unschedulable=True)
    entry = L.Entry(f"node-{node}", L.NODE_STATE, {"node": node}, L.APPLIED, data={"was_unschedulable": False})
    writer = RacingWriter(kube, races)
    if races == 8:
        with pytest.raises(InfrastructureError, match="still cordoned"):
            revert_node(writer, entry)
        assert kube.get(Ref("v1", "nodes", None, node))["spec"]["unschedulable"] is True
    else:
        assert revert_node(writer, entry).action == "uncordoned"
        assert not kube.get(Ref("v1", "nodes", None, node))["spec"].get("unschedulable")
    assert writer.writes == races
