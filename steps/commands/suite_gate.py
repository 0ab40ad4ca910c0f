"""`faultflow step suite-gate`: the nightly suite's last step — fails the suite when any scenario it
ran did not succeed.

The suite runs its scenarios with `continueOn` (so one failure does not stop the others), which
leaves the suite itself Succeeded however its children ended. The gate looks at the child Workflows
this suite run created (label `faultflow.dev/suite-run=<suite uid>`, in faultflow's namespace) and
demands one Succeeded child per listed scenario: a failed, errored, still-running or missing child
fails the gate (exit 1, one line naming them).
"""

from __future__ import annotations

import json
from collections import Counter

import click

from steps.errors import BadInput, CheckFailed
from steps.event_names import EventName
from steps.events import emit
from steps.installation_names import SCENARIO_LABEL, SUITE_RUN_LABEL  # noqa: F401 (also read from here)
from steps.kube.argo import workflow_ref
from steps.kube.client import connect
from steps.options import common_cluster_options
from steps.run.install import home_namespace

STEP = "suite-gate"


def parse_scenarios(text: str) -> list[str]:
    try:
        names = json.loads(text)
    except ValueError:
        raise BadInput(f"--scenarios {text!r} is not a JSON list") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise BadInput(f"--scenarios {text!r} must be a non-empty JSON list of scenario names")
    return names


def verdict(scenarios: list[str], children: list[dict]) -> list[str]:
    """What is wrong (empty: the suite passed): per scenario, as many Succeeded children as it was listed."""
    expected = Counter(scenarios)
    succeeded: Counter = Counter()
    problems = []
    for child in sorted(children, key=lambda c: c["metadata"].get("name", "")):
        name = ((child.get("metadata") or {}).get("labels") or {}).get(SCENARIO_LABEL, "?")
        phase = (child.get("status") or {}).get("phase") or "Pending"
        if phase == "Succeeded":
            succeeded[name] += 1
        else:
            problems.append(f"{child['metadata'].get('name')} ({name}) {phase}")
    for name, count in sorted(expected.items()):
        if succeeded[name] < count and not any(f"({name})" in p for p in problems):
            problems.append(f"{name}: {count - succeeded[name]} of {count} never ran")
    return problems


@click.command(STEP)
@click.option("--suite-run", required=True, help="The suite Workflow's uid ({{workflow.uid}}).")
@click.option("--scenarios", required=True, help="The suite's scenarios (JSON list, as its parameter).")
@common_cluster_options
def command(suite_run, scenarios, kubeconfig, context):
    """Fail when any scenario of this suite run did not succeed."""
    names = parse_scenarios(scenarios)
    kube = connect(kubeconfig, context)
    listing = kube.list(workflow_ref(home_namespace()), label_selector=f"{SUITE_RUN_LABEL}={suite_run}")
    problems = verdict(names, listing.get("items") or [])
    emit(STEP, EventName.SUITE_VERDICT, scenarios=len(names), passed=not problems, problems=problems)
    if problems:
        raise CheckFailed(f"{len(problems)} of the suite's scenarios did not succeed: {'; '.join(problems)}")
