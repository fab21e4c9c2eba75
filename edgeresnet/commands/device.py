"""A device's measurement beside the host's, from the boards of a device farm: `validate` (`report --device` takes a
device report file)."""

from __future__ import annotations

import sys

import click

from edgeresnet.commands.options import emit, farm_addresses, json_option
from edgeresnet.pipeline.backends import farm_offers


@click.command(name="validate", help="Evaluate an artifact on the boards of a device farm (sharded across free boards) and "
                                      "put the result beside the host measurement, as `report --device` does. Exits 1 "
                                      "when the boards drift past the budget. Backends with device farms: "
                                      f"{', '.join(offer.offerer for offer in farm_offers()) or 'none'}.")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--rpc", required=True, metavar="ADDRESS", help=f"The device farm, in the backend's address form: {farm_addresses()}.")
@click.option("--eval", "eval_data", default=None, help="Data to evaluate instead of the artifact's golden vectors (labelled for top-1).")
@click.option("--eval-samples", type=int, default=None, help="Evaluate a deterministic sample of this many images of --eval.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-agreement", type=float, default=99.0, show_default=True, help="Minimum top-1 agreement with the host INT8, percent.")
@click.option("--max-extra-drop", type=float, default=0.5, show_default=True, help="Allowed drop against FP32 beyond the host's, points.")
@click.option("--label", default=None, help="Name of the device column [default: the boards' runtime and the target].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.json/report.html with the device column [default: <artifact>.device beside it].")
@json_option
def validate_command(artifact, rpc, eval_data, eval_samples, seed, min_agreement, max_extra_drop, label, out, as_json):
    from edgeresnet.pipeline.validate import validate_artifact

    result = validate_artifact(artifact, rpc, eval_data, eval_samples, seed, out, label, min_agreement, max_extra_drop)
    emit(result, as_json, lambda r: click.echo(
        f"{r.report.samples} inputs on {r.report.device.boards} board(s) under {rpc}: agreement with the host INT8 "
        f"{r.report.host_agreement * 100:.2f}%, drop {r.report.drop_pts:+.2f} pts: {r.report.verdict}\n"
        f"{r.fold.out}/report.json, report.html: device column '{r.fold.label}'"))
    if not result.passed:
        sys.exit(1)
