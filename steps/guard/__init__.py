"""Guardrails while a fault is live: stop conditions (`abort-if`), the watcher that evaluates them and
stops the run, and the cluster-wide halt. Above `report` (its Prometheus client) and `inference` (the
probes); no click."""
