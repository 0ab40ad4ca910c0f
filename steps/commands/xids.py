"""`faultflow xids`: the catalogue as a table for people or as JSON for tools."""

from __future__ import annotations

import json

import click

from steps.gpu.xids import ACTION_RULES, METADATA_RULE, catalogue, nvsentinel_source

COLUMNS = ("XID", "NAME", "SEVERITY", "NVSENTINEL", "FATAL", "CUDA ERROR", "ON START", "NVML")


def rows(seed_only: bool) -> list[tuple[str, ...]]:
    out = []
    for xid in catalogue().values():
        if seed_only and not xid.seed:
            continue
        out.append(
            (
                str(xid.number),
                xid.name[:40],
                xid.severity,
                xid.nvsentinel_action,
                "yes" if xid.fatal else "no",
                f"{xid.call_error.driver_name} ({xid.effect.call_error})" if xid.effect.call_error else "-",
                f"{xid.init_error.driver_name} ({xid.effect.init_error})" if xid.effect.init_error else "starts",
                xid.nvml.summary(),
            )
        )
    return out


def format_table(table: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [COLUMNS, *table]) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [COLUMNS, *table])


def print_catalogue(as_json: bool, seed_only: bool) -> None:
    if as_json:
        entries = [x.as_dict() for x in catalogue().values() if x.seed or not seed_only]
        print(
            json.dumps(
                {"nvsentinel": nvsentinel_source(), "action_rules": ACTION_RULES, "metadata_rule": METADATA_RULE, "xids": entries}, indent=1
            )
        )
    else:
        source = nvsentinel_source()
        print(format_table(rows(seed_only)))
        print(
            f"\nNVSentinel {source['repository']}@{source['commit'][:12]} ({source['date']}); not reflected: "
            f"{'; '.join(source['not_reflected'])}.\nPer line: 154 from its recovery text, 144-150 from the NVLink-5 "
            f"decode; {METADATA_RULE}."
        )


@click.command("xids")
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
@click.option("--seed", is_flag=True, help="Only the XIDs faultflow simulates end to end (43 48 74 79 94 95 119 120).")
def command(as_json: bool, seed: bool) -> None:
    """List the XID catalogue: NVSentinel's classification and the CUDA error each XID produces."""
    print_catalogue(as_json=as_json, seed_only=seed)
