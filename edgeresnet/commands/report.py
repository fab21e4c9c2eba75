"""`edgeresnet report`: one artifact's device check folded in (`--device`), or artifacts of one model side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeresnet.commands.options import emit, json_option


@click.command(name="report")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--device", "device_report", default=None, type=click.Path(dir_okay=False),
              help="device-report.json written on the board by run.py --check or edgeresnet-run --check (one artifact).")
@click.option("--label", default=None, help="How the device column is named [default: the runtime and the machine it ran on].")
@click.option("--bench", "bench_runs", type=int, default=None, metavar="RUNS",
              help="Also time each artifact that runs on this machine (`edgeresnet bench`) and show its latency.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.json/report.html [default: <artifact>.device with --device, "
                   "else build/<model>-compared].")
@json_option
def report_command(artifacts, device_report, label, bench_runs, out, as_json):
    """Artifacts of one model side by side (report.json and report.html): accuracy, drop, agreement with
    each other on their shared golden inputs, size, speed, where each lost accuracy, device columns from
    each <artifact>.device/. Artifacts of different models or evaluation sets are refused (exit 2).

    With --device, one artifact: put a device's own measurement beside the host's in <artifact>.device/
    (the artifact is left as built). Exits 1 when the device report's verdict is a drift past its budget."""
    from edgeresnet.errors import InputError

    if device_report is not None:
        if len(artifacts) != 1:
            raise InputError("report --device takes one artifact")
        _fold_device(artifacts[0], device_report, label, out, as_json)
        return
    if label is not None:
        raise InputError("--label names a device column: use it with --device")
    from edgeresnet.pipeline.compare import write_comparison

    result = write_comparison(list(artifacts), out, bench_runs)
    emit(result, as_json, lambda r: click.echo(
        "\n".join(f"{c.target}: {c.verdict}" for c in r.comparison.columns) + f"\n{r.out}/report.json, report.html"))


def _fold_device(artifact: str, device_report: str, label: str | None, out: str | None, as_json: bool) -> None:
    from edgeresnet.pipeline.device_report import fold_device_report

    result = fold_device_report(artifact, device_report, label, out)
    emit(result, as_json, lambda r: click.echo(
        f"{r.out}/report.json, report.html: device column '{r.label}' "
        f"({'within budget' if r.passed else 'DRIFT: ' + '; '.join(r.column.reasons or [])})"))
    if not result.passed:
        sys.exit(1)
