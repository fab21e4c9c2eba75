"""A device's measurement beside the host's, from boards over TVM RPC: `validate` (`report --device` takes a device report file)."""

from __future__ import annotations

import sys

import click

from edgeresnet.commands.options import emit, json_option


@click.command(name="validate")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--rpc", required=True, metavar="KEY@HOST:PORT", help="The boards registered under KEY with the TVM RPC tracker at HOST:PORT.")
@click.option("--eval", "eval_data", default=None, help="Data to evaluate instead of the artifact's golden vectors (labelled for top-1).")
@click.option("--eval-samples", type=int, default=None, help="Evaluate a deterministic sample of this many images of --eval.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-agreement", type=float, default=99.0, show_default=True, help="Minimum top-1 agreement with the host INT8, percent.")
@click.option("--max-extra-drop", type=float, default=0.5, show_default=True, help="Allowed drop against FP32 beyond the host's, points.")
@click.option("--label", default=None, help="Name of the device column [default: the RPC key and board count].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.json/report.html with the device column [default: <artifact>.device beside it].")
@json_option
def validate_command(artifact, rpc, eval_data, eval_samples, seed, min_agreement, max_extra_drop, label, out, as_json):
    """Evaluate a TVM artifact's library on the boards of a TVM RPC tracker (sharded across free boards) and
    put the result beside the host measurement, as `report --device` does. Exits 1 when the boards drift past the budget."""
    from edgeresnet.pipeline.validate import validate_artifact

    result = validate_artifact(artifact, rpc, eval_data, eval_samples, seed, out, label, min_agreement, max_extra_drop)
    emit(result, as_json, lambda r: click.echo(
        f"{r.report.samples} inputs on {r.report.device.boards} board(s) under {rpc}: agreement with the host INT8 "
        f"{r.report.host_agreement * 100:.2f}%, drop {r.report.drop_pts:+.2f} pts: {r.report.verdict}\n"
        f"{r.fold.out}/report.json, report.html: device column '{r.fold.label}'"))
    if not result.passed:
        sys.exit(1)
