"""How long Argo keeps what a run leaves behind: `podGC` and `ttlStrategy` (issue 15, Low).

Chosen from who reads what, and when:
* the report reads its evidence from the artifact repository (every stage's outputs artifact), never
  from pods, so a run's pods may go once the run is over; a failed run keeps them for `argo logs`
  (`OnWorkflowSuccess`);
* the janitor reads a run's Workflow phase, and a Workflow that is gone counts as over ("workflow-gone"),
  exactly like a finished one: deleting finished Workflows never makes it revert a live run;
* the nightly suite's gate reads its child Workflows' phases after the last child ended, so a child
  must outlive the whole suite: a week, longer than any suite's deadline (a test holds it so), and
  the scenario Workflows a person looks at the morning after stay a week too;
* the janitor runs every 15 minutes: a successful sweep is of no interest after an hour, a failed
  one is kept a week (with its pod) for whoever looks into it.
"""

from __future__ import annotations

from hera.workflows import models as m

WEEK_S = 7 * 24 * 3600
JANITOR_SUCCESS_S = 3600


def scenario() -> dict:
    """Keyword arguments for a scenario's (and the nightly suite's) WorkflowTemplate."""
    return {"pod_gc": m.PodGC(strategy="OnWorkflowSuccess"), "ttl_strategy": m.TTLStrategy(seconds_after_completion=WEEK_S)}


def janitor() -> dict:
    return {
        "pod_gc": m.PodGC(strategy="OnPodSuccess"),
        "ttl_strategy": m.TTLStrategy(seconds_after_success=JANITOR_SUCCESS_S, seconds_after_failure=WEEK_S),
    }
