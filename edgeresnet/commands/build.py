"""`compile` (the whole pipeline into one artifact) and `tune` (kernel records that `compile --records` reuses)."""

from __future__ import annotations

import sys

import click

from edgeresnet.commands.options import (apply_options, calib_options, emit, eval_options, farm_addresses, json_option,
                                        model_option, offered_by, table, target_choice, weights_option,
                                        with_backend_options, with_description)
from edgeresnet.pipeline.backends import dynamic_batch_offers, tuning_offers
from edgeresnet.schema import Report


def _print_summary(report: Report) -> None:
    from edgeresnet.report import summary_lines

    for line in summary_lines(report):
        click.echo(line)


@click.command(name="compile")
@click.option("--target", required=True, type=target_choice(), help="Target profile from `edgeresnet targets`.")
@model_option
@weights_option
@apply_options(calib_options)
@apply_options(eval_options)
@click.option("--max-drop", type=float, default=None, help="Accuracy budget in top-1 points; layers fall back to float until it is met, else exit 1.")
@click.option("--bias-correction", is_flag=True,
              help="Shift each quantized layer's bias by its mean INT8 - FP32 output difference per channel on calibration images.")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size of the shipped model.")
@click.option("--dynamic-batch", default=None, metavar="MIN,OPT,MAX",
              help="A dynamic batch dimension instead, with these optimization-profile bounds (backends that take one: "
                   f"{', '.join(offer.backend for offer in dynamic_batch_offers()) or 'none'}).")
@click.option("--golden-samples", type=int, default=256, show_default=True,
              help="Evaluation images shipped in golden/ with the host's FP32 and INT8 logits, for the on-device check (run.py --check).")
@click.option("--records", type=click.Path(file_okay=False), default=None,
              help="Tuning records from `edgeresnet tune` for this target: kernels with a record take its schedule "
                   f"(tunable backends: {', '.join(offer.backend for offer in tuning_offers()) or 'none'}).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Artifact folder [default: build/<model>-<target>].")
@click.option("--force", is_flag=True, help="Replace an existing artifact folder.")
@click.option("--tar", is_flag=True, help="Also write <folder>.tar.gz.")
@click.option("--allow-low-fp32", is_flag=True,
              help="Go on when labelled FP32 top-1 is near chance (normally exit 1: the preprocessing or labels do not fit the model).")
@click.option("--allow-preprocessing-mismatch", is_flag=True,
              help="Go on when the preprocessing check finds an alternative that fits the model clearly better (normally exit 1, naming its options).")
@click.option("--sign-key", type=click.Path(dir_okay=False), default=None,
              help="ed25519 private key (PEM; openssl genpkey -algorithm ed25519): signs manifest.json into manifest.sig.")
@with_description
@with_backend_options
@json_option
def compile_command(target, model, weights, calib, calib_samples, method, percentile, seed, eval_data, eval_samples, labels,
                    max_drop, bias_correction, batch, dynamic_batch, golden_samples, records, out, force, tar, as_json,
                    description, allow_low_fp32, allow_preprocessing_mismatch, sign_key, backend_options):
    """Run the whole pipeline into one artifact folder: export, calibrate, quantize, build, validate, report."""
    import edgeresnet

    result = edgeresnet.compile(edgeresnet.CompileOptions(
        target=target, model=model or edgeresnet.DEFAULT_MODEL, weights=weights, calib=calib, eval=eval_data,
        method=method, percentile=percentile, calib_samples=calib_samples, eval_samples=eval_samples, seed=seed, max_drop=max_drop,
        bias_correction=bias_correction, batch=batch, dynamic_batch=edgeresnet.DynamicBatch.parse(dynamic_batch) if dynamic_batch else None,
        golden_samples=golden_samples, records=records, out=out, force=force, tar=tar, progress=not as_json,
        description=description, allow_low_fp32=allow_low_fp32, sign_key=sign_key, labels=labels,
        allow_preprocessing_mismatch=allow_preprocessing_mismatch, backend_options=backend_options,
    ))
    emit(result.to_dict(), as_json, lambda r: (_print_summary(result.report), click.echo(f"artifact: {result.folder}"),
                                              click.echo(f"digest: sha256:{result.digest} (also in {result.folder}.manifest.sha256)")))
    if not result.passed:
        sys.exit(1)


@click.command(help="Tune the kernels of a target with its backend's tuner; `compile --records` reuses the records. "
                    f"Tunable backends: {offered_by(tuning_offers())}.")
@click.option("--target", required=True, type=target_choice(), help="A target of a tunable backend (below).")
@click.option("--records", required=True, type=click.Path(file_okay=False),
              help="Records folder: created, or extended when it holds records of the same target.")
@model_option
@weights_option
@click.option("--calib", default=None, help="Calibration data for the quantized model (its constants do not change the kernels).")
@click.option("--calib-samples", type=int, default=64, show_default=True)
@click.option("--trials", type=int, default=64, show_default=True, help="Candidate schedules measured per kernel.")
@click.option("--kernels", "max_kernels", type=int, default=None, help="Tune only the N kernels with the most work.")
@click.option("--all-kernels", is_flag=True, help="Also tune the small pooling/elementwise kernels, not just the convolutions.")
@click.option("--rpc", default=None, metavar="ADDRESS",
              help=f"Measure on a board of a device farm, in the backend's address form: {farm_addresses()}.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def tune(target, records, model, weights, calib, calib_samples, trials, max_kernels, all_kernels, rpc, batch, seed, as_json):
    import edgeresnet

    result = edgeresnet.tune(edgeresnet.TuneOptions(
        target=target, records=records, model=model or edgeresnet.DEFAULT_MODEL, weights=weights, calib=calib,
        calib_samples=calib_samples, trials=trials, max_kernels=max_kernels, all_kernels=all_kernels,
        rpc=rpc, batch=batch, seed=seed, progress=not as_json,
    ))

    def human(r):
        table(*r.table())
        click.echo(r.summary())

    emit(result, as_json, human)
