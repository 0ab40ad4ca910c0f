"""The workloads faults are injected into: the Dynamo operator's contract (DGD components, labels), the other
workload kinds, the shim patch and the rollout watch."""
