"""Commands on a model alone, no target artifact: `export`, `train`, `quantize`, `evaluate`."""

from __future__ import annotations

import sys

import click

from edgeresnet.commands.options import (apply_options, calib_options, emit, eval_options, json_option, model_option,
                                        scheme_choice, weights_option, with_description)


@click.command()
@model_option
@weights_option
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic (overrides --batch).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (17: TensorRT 8.5/8.6 parse it).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the .onnx file.")
@with_description
@json_option
def export(model, weights, batch, dynamic_batch, opset, output, as_json, description) -> None:
    """Export a model to ONNX with BatchNorm folded, checked against PyTorch in ONNX Runtime."""
    import edgeresnet

    result = edgeresnet.export_onnx(output, model=model or edgeresnet.DEFAULT_MODEL, weights=weights,
                                    batch=batch, dynamic_batch=dynamic_batch, opset=opset,
                                    description=description)
    emit(result, as_json, lambda r: click.echo(
        f"wrote {r.path} (opset {r.opset}, input {r.input_shape}); "
        f"ONNX Runtime vs PyTorch max |logit diff| = {r.max_abs_diff:.3g} (tolerance {r.tolerance:.3g})"
    ))


@click.command()
@click.option("--arch", default="resnet20", show_default=True, help="A CIFAR-style architecture (resnet20..resnet110).")
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", "max_lr", type=float, default=0.2, show_default=True, help="Peak learning rate of the one-cycle schedule.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Folder of the Fashion-MNIST IDX files [default: /usr/share/datasets/fashion-mnist].")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Weights file (.pt); metadata .json beside it.")
@json_option
def train(arch, epochs, batch_size, max_lr, seed, data, output, as_json) -> None:
    """Train a CIFAR-style ResNet on Fashion-MNIST (how the shipped reference model was made)."""
    import edgeresnet

    command = "edgeresnet train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else "edgeresnet train"
    meta = edgeresnet.train(
        edgeresnet.TrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, max_lr=max_lr, seed=seed),
        output, data_root=data, command=command, log=(lambda _m: None) if as_json else click.echo,
    )
    from edgeresnet.models import WeightsCard

    metrics = WeightsCard.from_dict(meta).metrics
    emit(meta, as_json, lambda _m: click.echo(f"wrote {output}: test top-1 {metrics.top1:.2f}%, top-5 {metrics.top5:.2f}%"))


@click.command()
@model_option
@weights_option
@click.option("--scheme", "--profile", "scheme", type=scheme_choice(), default="onnxruntime", show_default=True,
              help="Which backend's Q/DQ scheme to produce.")
@apply_options(calib_options)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the INT8 Q/DQ .onnx.")
@with_description
@json_option
def quantize(model, weights, scheme, calib, calib_samples, method, percentile, seed, batch, output, as_json, description):
    """Quantize a model to INT8 Q/DQ ONNX with calibration data (no target build, no evaluation)."""
    import edgeresnet

    result = edgeresnet.quantize_model(output, model=model or edgeresnet.DEFAULT_MODEL, weights=weights, scheme=scheme,
                                       calib=calib, calib_samples=calib_samples, method=method, percentile=percentile,
                                       seed=seed, batch=batch,
                                       progress=not as_json, description=description)
    emit(result, as_json, lambda r: click.echo(
        f"wrote {r.path} ({r.profile} scheme, {r.method}, {r.samples} samples, {r.quantized_layers} quantized layers)"))


@click.command(name="evaluate")
@click.argument("onnx_model", type=click.Path(dir_okay=False, exists=True))
@model_option
@weights_option
@apply_options(eval_options)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--layers", is_flag=True, help="Also each quantized layer's drift from FP32 (SQNR, cosine, dB lost there, "
                                             "clipped share) on a sample of the images; prints the ten worst.")
@with_description
@json_option
def evaluate_command(onnx_model, model, weights, eval_data, eval_samples, labels, seed, layers, as_json, description):
    """Measure an ONNX model (FP32 or INT8) in ONNX Runtime against the FP32 model (exported, checked against PyTorch)."""
    import edgeresnet

    result = edgeresnet.evaluate_onnx(onnx_model, model=model or edgeresnet.DEFAULT_MODEL, weights=weights,
                                      eval=eval_data, eval_samples=eval_samples, seed=seed, progress=not as_json,
                                      description=description, layers=layers, labels=labels)
    def human(r):
        m = r.measurement
        if m.tested.accuracy is None:
            click.echo(f"top-1 agreement with FP32 {m.drift.agreement * 100:.2f}% for {onnx_model} "
                       f"[{m.tested.result().runtime}] on {m.tested.samples} unlabelled images")
            return
        click.echo(f"FP32 top-1 {m.fp32.accuracy.top1}%, {m.tested.accuracy.top1}% for {onnx_model} [{m.tested.result().runtime}]; "
                   f"drop {m.drop:+.2f} pts, agreement {m.drift.agreement * 100:.2f}% on {m.tested.samples} images")
        if r.layer_drift is not None:
            from edgeresnet.drift import worst_layers_table

            click.echo(f"the ten layers that lose the most themselves (of {len(r.layer_drift)} quantized layers, "
                       f"{r.layer_drift_samples} images):")
            click.echo("\n".join(worst_layers_table(r.layer_drift)))
    emit(result, as_json, human)
