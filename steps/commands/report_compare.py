"""`faultflow report compare RUN_A RUN_B [RUN…]`: two or more runs side by side, each later run against
the first (`steps.report.compare`).

Writes the table as Markdown to stdout and, under --outputs-dir, compare.md, compare.json and
compare.png (success rate and p99 of every run on one axis, aligned at fault injection). Exit 0 when no
later run regressed beyond its tolerance, 1 when one did (a CI gate: `report compare last.json new.json`),
2 on bad input (a missing file, something that is not a report, one run only), with nothing written.
"""

from __future__ import annotations

import json

import click

from steps.errors import CheckFailed, InfrastructureError
from steps.options import outputs_option
from steps.outputs import Outputs


@click.group("report")
def group() -> None:
    """Reports of finished runs."""


@group.command("compare")
@click.argument("runs", nargs=-1, metavar="RUN_A RUN_B [RUN…]")
@outputs_option(default="compare", help="Directory for compare.md, compare.json and compare.png.", required=True)
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="NAME=VALUE",
    help="How much worse a later run may be before it counts as a regression (repeatable). NAME: detection, first_failure, "
    "recovery, availability, p50, p99, score; VALUE in the figure's unit (seconds, fraction, points) or N% of the first run's "
    "value. Defaults: detection=5s first_failure=5s recovery=10s availability=0.05 p50=50% p99=50% score=10.",
)
@click.option("--no-plot", is_flag=True, help="Skip compare.png.")
def compare_command(runs, outputs_dir, tolerances, no_plot):
    """Compare runs (report.json files, directories holding one, or run evidence directories)."""
    from steps.report.compare import compare, load_runs, parse_tolerances, render_markdown

    chosen = parse_tolerances(tolerances)
    outputs = Outputs(outputs_dir)
    outputs.check()
    loaded = load_runs(runs)
    comparison = compare(loaded, chosen)
    markdown = render_markdown(comparison)
    out = outputs.created()
    try:
        (out / "compare.md").write_text(markdown)
        (out / "compare.json").write_text(json.dumps(comparison.as_dict(), indent=1, allow_nan=False) + "\n")
        if not no_plot:
            from steps.report.compare_plot import write_overlay

            write_overlay(loaded, out / "compare.png")
    except OSError as error:
        raise InfrastructureError(f"cannot write the comparison to {out}: {error.strerror}") from error
    click.echo(markdown, nl=False)
    regressions = comparison.regressions
    if regressions:
        raise CheckFailed(f"{len(regressions)} regression(s) beyond tolerance: {'; '.join(regressions)}")
