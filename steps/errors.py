"""Exit codes shared by every step (design.md, "Every step") and the exceptions that carry them."""


class ExitCode:
    DONE = 0
    CHECK_FAILED = 1
    BAD_INPUT = 2
    INFRASTRUCTURE = 3
    ABORTED = 4
    """A stop condition (`abort-if`) fired while the fault was live: the watcher stopped the Workflow
    (its exit handler reverts the fault) and exits with this code, so the abort is told apart from a
    check that failed (1) and from an error of ours (3). Not retried (Argo's retryStrategy retries 3 only)."""


class StepError(Exception):
    """An error a step reports as one line on stderr and turns into its exit code."""

    exit_code = ExitCode.INFRASTRUCTURE


class BadInput(StepError):
    """The caller asked for something invalid; nothing was changed."""

    exit_code = ExitCode.BAD_INPUT


class CheckFailed(StepError):
    """The step ran, but what it checks did not hold (e.g. not recovered in time)."""

    exit_code = ExitCode.CHECK_FAILED


class InfrastructureError(StepError):
    """Something outside the step failed (API server unreachable, file system error)."""

    exit_code = ExitCode.INFRASTRUCTURE


class Aborted(StepError):
    """A stop condition fired: the run was stopped on purpose (the message names the condition)."""

    exit_code = ExitCode.ABORTED
