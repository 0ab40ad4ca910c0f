"""The GPU world's SIMULATORS on the real lab cluster (`lab.nodes`): what cannot run on this machine,
each copying the real thing's contract, around real kubelets, real Deployments and real Services.

* `dgd_operator` — Dynamo's operator: DGD → one Deployment per component, the frontend Service and a
  headless Service per GPU worker component; DGD status from the Deployments (`dgd_plan`: how it
  reads a DGD). It runs as a Deployment (`operator_install`), from its own image.
* `nvsentinel` — the NVSENTINEL SIMULATOR as a DaemonSet (`nvsentinel_node`: one node's pod around
  `lab.nvsentinel_simulator`, reading its node's kernel log through a hostPath), its ConfigMaps and rights.
* `workload` — the lab's DGD on real nodes: the frontend and GPU worker images built here.
* `world` — `start(cluster) -> RealWorld`: everything above on a started `RealCluster`; `stop()`.
"""
