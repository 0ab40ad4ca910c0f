"""What a step that acts on a run starts with: the API client, the run ledgers on that cluster, and the
step's outputs directory. Built by `steps.options.run_options` once the command's own checks passed."""

from __future__ import annotations

from dataclasses import dataclass

from steps.kube.client import Kube, connect
from steps.outputs import Outputs
from steps.run.ledger import LedgerStore


@dataclass(frozen=True)
class RunContext:
    kube: Kube
    ledgers: LedgerStore  # every run's ledger on this cluster; `ledgers.require(namespace, run_id)` is this run's
    outputs: Outputs

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, outputs: Outputs) -> RunContext:
        if outputs.directory is not None:
            outputs.created()  # the step's own checks passed: Argo finds the directory even if the step fails now
        kube = connect(kubeconfig, context)
        return cls(kube=kube, ledgers=LedgerStore(kube), outputs=outputs)
