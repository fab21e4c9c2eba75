"""The `edgeresnet` command line: a thin click layer over the edgeresnet Python API.

Each command parses its options, calls one API function that does the work, and
prints the result (a table, or JSON with --json). Errors the user can fix are one
line on stderr with a documented exit code; --debug shows the traceback.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import sys
import traceback

import click

from edgeresnet.errors import EXIT_CODES, EdgeResnetError, InputError, MissingDependency

INTERNAL_ERROR = 4
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items())) + f"\n  {INTERNAL_ERROR}  internal error (a bug: please report it with --debug output)"


def _emit(result, as_json: bool, human) -> None:
    """Print a command's result: JSON (typed results through their `to_dict`), or `human(result)`."""
    if as_json:
        data = result.to_dict() if hasattr(result, "to_dict") else result
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        human(result)


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title) in enumerate(columns)]
    click.echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


class RegistryChoice(click.Choice):
    """A choice read from the target registry when the command line is parsed, not when it is defined,
    so a backend registered by a plug-in is offered too; an unknown name fails with the registry's own message."""

    def __init__(self, names, lookup):
        super().__init__([])
        self._names, self._lookup = names, lookup

    @property
    def choices(self):
        return tuple(self._names())

    @choices.setter
    def choices(self, _value):
        pass

    def convert(self, value, param, ctx):
        self._lookup(value)  # an unknown name: the registry's InputError, exit 2
        return value


def _target_choice() -> RegistryChoice:
    from edgeresnet.targets import get_target, target_names

    return RegistryChoice(target_names, get_target)


def _scheme_choice() -> RegistryChoice:
    from edgeresnet.targets import get_quant_scheme, quant_schemes

    return RegistryChoice(lambda: list(quant_schemes()), get_quant_scheme)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


description_options = [
    click.option("--card", type=click.Path(dir_okay=False), default=None,
                 help="Model card (JSON, or TOML by suffix): num_classes, input_size, channels, mean, std, pixel_scale, resize, "
                      "channel_order, class_names(_file), preset; these options override it. What was used, and from where, goes into the report and manifest."),
    click.option("--preset", default=None, help="Preprocessing preset: imagenet (224, resize 256, ImageNet mean/std), "
                 "cifar (32, CIFAR mean/std), unit (plain [0,1] pixels) [default: the weights' metadata, else the architecture's: "
                 "imagenet for resnet18..152, cifar for resnet20..110]."),
    click.option("--num-classes", type=int, default=None, help="Classes of the head [default: rows of the checkpoint's fc.weight]."),
    click.option("--input-size", default=None, metavar="N|HxW", help="Network input size [default: the preset's]."),
    click.option("--channels", type=int, default=None, help="Input channels, 1 or 3 [default: the checkpoint's conv1.weight]."),
    click.option("--mean", default=None, metavar="M[,M,M]", help="Per-channel mean, on pixels scaled by --pixel-scale."),
    click.option("--std", default=None, metavar="S[,S,S]", help="Per-channel std, on pixels scaled by --pixel-scale."),
    click.option("--pixel-scale", type=float, default=None, help="1: mean/std are on [0,1] pixels (torchvision); 255: on 0..255 pixels."),
    click.option("--resize", type=int, default=None, help="Resize the shorter side to this, then center-crop to the input size (0: resize straight)."),
    click.option("--channel-order", type=click.Choice(["RGB", "BGR"]), default=None, help="Channel order of 3-channel input."),
    click.option("--class-names", "class_names_file", type=click.Path(dir_okay=False), default=None,
                 help="File of class names, one per line [default: the card's, else labelled class-folder names]."),
]


def with_description(f):
    """Adds the model-description options; the command gets them as one `description` (None when none given)."""
    @functools.wraps(f)
    def wrapper(*args, card, preset, num_classes, input_size, channels, mean, std, pixel_scale, resize, channel_order,
                class_names_file, **kwargs):
        from edgeresnet.models import ModelDescription

        given = dict(card=card, preset=preset, num_classes=num_classes, channels=channels, pixel_scale=pixel_scale,
                     resize=resize, channel_order=channel_order, class_names_file=class_names_file,
                     input_size=ModelDescription.parse_size(input_size) if input_size else None,
                     mean=ModelDescription.parse_floats(mean, "--mean") if mean else None,
                     std=ModelDescription.parse_floats(std, "--std") if std else None)
        given = {k: v for k, v in given.items() if v is not None}
        return f(*args, description=ModelDescription(**given) if given else None, **kwargs)
    for option in reversed(description_options):
        wrapper = option(wrapper)
    return wrapper

model_option = click.option("--model", default=None, help="Model name from `edgeresnet models` [default: resnet20-fmnist].")
weights_option = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                              help="A .pt/.pth state dict (torchvision key names) instead of the shipped weights.")


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="edgeresnet")
def cli(debug: bool) -> None:
    """ResNet (PyTorch) -> ONNX -> INT8 -> per-target edge artifact, with measured accuracy drift."""


@cli.command()
@json_option
def models(as_json: bool) -> None:
    """List the model zoo: parameters, MACs/FLOPs at the model's input size, shipped accuracy."""
    from edgeresnet.models import describe_models

    rows = describe_models()
    for row in rows:
        row["input"] = "x".join(map(str, row["input"]))
        row["gmacs"] = f"{row['macs'] / 1e9:.3f}"
        row["top1_text"] = f"{row['top1']:.2f}" if "top1" in row else "-"
    _emit(
        [{k: v for k, v in r.items() if k not in ("gmacs", "top1_text")} for r in rows] if as_json else rows,
        as_json,
        lambda rs: _table(rs, [("name", "model"), ("depth", "depth"), ("input", "input"), ("classes", "classes"),
                               ("params", "params"), ("gmacs", "GMACs"), ("top1_text", "top-1 %")]),
    )


@cli.command()
@json_option
def targets(as_json: bool) -> None:
    """List the target profiles that `compile --target` accepts."""
    from edgeresnet.targets import aliases, all_targets, describe

    alias_of: dict[str, list[str]] = {}
    for alias, name in aliases().items():
        alias_of.setdefault(name, []).append(alias)
    rows = [{**describe(t), "aliases": alias_of.get(t.name, [])} for t in all_targets()]
    _emit(rows, as_json, lambda rs: _table(
        [{**r, "aliases": ", ".join(r["aliases"])} for r in rs],
        [("name", "target"), ("backend", "backend"), ("arch", "arch"), ("aliases", "aliases"), ("description", "description")],
    ))


@cli.command()
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
    _emit(result.to_dict(), as_json, lambda r: click.echo(
        f"wrote {r['path']} (opset {r['opset']}, input {r['input_shape']}); "
        f"ONNX Runtime vs PyTorch max |logit diff| = {r['max_abs_diff']:.3g} (tolerance {r['tolerance']:.3g})"
    ))


@cli.command()
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
    _emit(meta, as_json, lambda m: click.echo(
        f"wrote {output}: test top-1 {m['metrics']['top1']:.2f}%, top-5 {m['metrics']['top5']:.2f}%"
    ))


calib_options = [
    click.option("--calib", default=None, help="Calibration data: a folder of images, .npy/.npz, an IDX file, or 'fashion-mnist' [default: fashion-mnist:train for the reference model]."),
    click.option("--calib-samples", type=int, default=512, show_default=True, help="Calibration samples, drawn deterministically."),
    click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default=None,
                 help="Calibration method [default: the target's profile: minmax for ort-cpu and Jetson, percentile for TVM targets]."),
    click.option("--percentile", type=float, default=None,
                 help="The percentile method's clipping percentile, in [90, 100) [default: 99.999]."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration and evaluation sampling."),
]
eval_options = [
    click.option("--eval", "eval_data", default=None, help="Evaluation data, same forms as --calib [default: fashion-mnist:test, all 10,000 images]."),
    click.option("--eval-samples", type=int, default=None, help="Evaluate on a deterministic sample instead of all images."),
]


def _apply(options):
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate




def _print_summary(report: dict) -> None:
    from edgeresnet.report import summary_lines

    for line in summary_lines(report):
        click.echo(line)


@cli.command(name="compile")
@click.option("--target", required=True, type=_target_choice(), help="Target profile from `edgeresnet targets`.")
@model_option
@weights_option
@_apply(calib_options)
@_apply(eval_options)
@click.option("--max-drop", type=float, default=None, help="Accuracy budget in top-1 points; layers fall back to float until it is met, else exit 1.")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size of the shipped model.")
@click.option("--dynamic-batch", default=None, metavar="MIN,OPT,MAX",
              help="A dynamic batch dimension instead (ONNX Runtime and TensorRT targets; TensorRT gets these profile bounds).")
@click.option("--emulated-samples", type=int, default=None,
              help="Evaluation images run on the aarch64 library under emulation (TVM ARM targets) "
                   "[default: 1000 at 28x28, fewer for larger inputs, at least 32].")
@click.option("--golden-samples", type=int, default=256, show_default=True,
              help="Evaluation images shipped in golden/ with the host's FP32 and INT8 logits, for the on-device check (run.py --check).")
@click.option("--records", type=click.Path(file_okay=False), default=None,
              help="Tuning records from `edgeresnet tune` for this target: kernels with a record take its schedule (TVM targets).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Artifact folder [default: build/<model>-<target>].")
@click.option("--force", is_flag=True, help="Replace an existing artifact folder.")
@click.option("--tar", is_flag=True, help="Also write <folder>.tar.gz.")
@click.option("--allow-low-fp32", is_flag=True,
              help="Go on when labelled FP32 top-1 is near chance (normally exit 1: the preprocessing or labels do not fit the model).")
@click.option("--sign-key", type=click.Path(dir_okay=False), default=None,
              help="ed25519 private key (PEM; openssl genpkey -algorithm ed25519): signs manifest.json into manifest.sig.")
@with_description
@json_option
def compile_command(target, model, weights, calib, calib_samples, method, percentile, seed, eval_data, eval_samples, max_drop, batch,
                    dynamic_batch, emulated_samples, golden_samples, records, out, force, tar, as_json,
                    description, allow_low_fp32, sign_key):
    """Run the whole pipeline into one artifact folder: export, calibrate, quantize, build, validate, report."""
    import edgeresnet

    result = edgeresnet.compile(edgeresnet.CompileOptions(
        target=target, model=model or edgeresnet.DEFAULT_MODEL, weights=weights, calib=calib, eval=eval_data,
        method=method, percentile=percentile, calib_samples=calib_samples, eval_samples=eval_samples, seed=seed, max_drop=max_drop,
        batch=batch, dynamic_batch=edgeresnet.DynamicBatch.parse(dynamic_batch) if dynamic_batch else None,
        emulated_samples=emulated_samples, golden_samples=golden_samples, records=records, out=out, force=force, tar=tar, progress=not as_json,
        description=description, allow_low_fp32=allow_low_fp32, sign_key=sign_key,
    ))
    _emit(result.to_dict(), as_json, lambda r: (_print_summary(result.report), click.echo(f"artifact: {result.folder}"),
                                              click.echo(f"digest: sha256:{result.digest} (also in {result.folder}.manifest.sha256)")))
    if not result.passed:
        sys.exit(1)


@cli.command()
@click.option("--target", required=True, type=_target_choice(),
              help="A target of a tunable backend (TVM: x86-64 locally; rpi4, rpi5, ... through --rpc).")
@click.option("--records", required=True, type=click.Path(file_okay=False),
              help="Records folder: created, or extended when it holds records of the same target.")
@model_option
@weights_option
@click.option("--calib", default=None, help="Calibration data for the quantized model (its constants do not change the kernels).")
@click.option("--calib-samples", type=int, default=64, show_default=True)
@click.option("--trials", type=int, default=64, show_default=True, help="MetaSchedule candidates measured per kernel.")
@click.option("--kernels", "max_kernels", type=int, default=None, help="Tune only the N kernels with the most work.")
@click.option("--all-kernels", is_flag=True, help="Also tune the small pooling/elementwise kernels, not just the convolutions.")
@click.option("--rpc", default=None, metavar="KEY@HOST:PORT", help="Measure on the board registered under KEY with the TVM RPC tracker at HOST:PORT.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def tune(target, records, model, weights, calib, calib_samples, trials, max_kernels, all_kernels, rpc, batch, seed, as_json):
    """Tune the TVM kernels of a target with MetaSchedule, starting from the rule schedules; `compile --records` reuses them."""
    import edgeresnet

    result = edgeresnet.tune(edgeresnet.TuneOptions(
        target=target, records=records, model=model or edgeresnet.DEFAULT_MODEL, weights=weights, calib=calib,
        calib_samples=calib_samples, trials=trials, max_kernels=max_kernels, all_kernels=all_kernels,
        rpc=edgeresnet.RpcDevice.parse(rpc) if rpc else None, batch=batch, seed=seed, progress=not as_json,
    ))

    def human(r):
        _table([k.to_dict() for k in r.kernels],
               [("kernel", "kernel"), ("calls", "calls"), ("rules_ms", "rules ms"), ("best_ms", "best ms"), ("source", "best from")])
        click.echo(f"{len(r.kernels)} kernels, {r.trials_per_kernel} trials each, measured on {r.measured_on}: "
                   f"MetaSchedule beat the rules on {r.metaschedule_wins}; records in {r.records} "
                   f"(use: edgeresnet compile --target {r.target} --records {r.records})")

    _emit(result, as_json, human)


@cli.command()
@model_option
@weights_option
@click.option("--scheme", "--profile", "scheme", type=_scheme_choice(), default="onnxruntime", show_default=True,
              help="Which backend's Q/DQ scheme to produce.")
@_apply(calib_options)
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
    _emit(result, as_json, lambda r: click.echo(
        f"wrote {r.path} ({r.profile} scheme, {r.method}, {r.samples} samples, {r.quantized_layers} quantized layers)"))


@cli.command(name="evaluate")
@click.argument("onnx_model", type=click.Path(dir_okay=False, exists=True))
@model_option
@weights_option
@_apply(eval_options)
@click.option("--seed", type=int, default=0, show_default=True)
@with_description
@json_option
def evaluate_command(onnx_model, model, weights, eval_data, eval_samples, seed, as_json, description):
    """Measure an ONNX model (FP32 or INT8) in ONNX Runtime against the FP32 model (exported, checked against PyTorch)."""
    import edgeresnet

    result = edgeresnet.evaluate_onnx(onnx_model, model=model or edgeresnet.DEFAULT_MODEL, weights=weights,
                                      eval=eval_data, eval_samples=eval_samples, seed=seed, progress=not as_json,
                                      description=description)
    def human(r):
        m = r.measurement
        top1 = (m.fp32.accuracy.top1, m.tested.accuracy.top1) if m.tested.accuracy else (None, None)
        click.echo(f"FP32 top-1 {top1[0]}%, {top1[1]}% for {onnx_model} [{m.tested.runner['runtime']}]; "
                   f"drop {m.drop:+.2f} pts, agreement {m.drift.agreement * 100:.2f}% on {m.tested.samples} images")
    _emit(result, as_json, human)


@cli.command(name="verify")
@click.argument("artifact", type=click.Path())
@click.option("--digest", default=None, metavar="SHA256", help="The artifact digest compile printed (sha256 of manifest.json): anything else fails.")
@click.option("--public-key", type=click.Path(dir_okay=False), default=None,
              help="ed25519 public key (PEM): the artifact must carry a valid manifest.sig made with its private key.")
@json_option
def verify_command(artifact, digest, public_key, as_json):
    """Check an artifact: manifest schema, digest/signature, every file's sha256, no unlisted file, the target's
    files, and the manifest's claims against the content (report.json, device configs, ELF machine of libraries)."""
    import edgeresnet

    result = edgeresnet.verify(artifact, digest=digest, public_key=public_key)
    _emit(result, as_json, lambda r: click.echo(f"{artifact}: OK ({r.files} files, target {r.target}, "
                                                f"digest sha256:{r.digest}, signature {r.signature})"))


@cli.command(name="report")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--device", "device_report", required=True, type=click.Path(dir_okay=False),
              help="device-report.json written on the board by run.py --check or edgeresnet-run --check.")
@click.option("--label", default=None, help="How the device column is named [default: the runtime and the machine it ran on].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.json/report.html with the device columns [default: <artifact>.device beside it].")
@json_option
def report_command(artifact, device_report, label, out, as_json):
    """Put a device's own measurement beside the host's: report.json and report.html with a device column.

    The artifact is left as built (its manifest, digest and signature stay valid); the combined report goes
    to its own folder. Exits 1 when the device report's verdict is a drift past its budget."""
    from edgeresnet.pipeline.device_report import fold_device_report

    result = fold_device_report(artifact, device_report, label, out)
    _emit(result, as_json, lambda r: click.echo(
        f"{r.out}/report.json, report.html: device column '{r.label}' "
        f"({'within budget' if r.passed else 'DRIFT: ' + '; '.join(r.column.get('reasons', []))})"))
    if not result.passed:
        sys.exit(1)


@cli.command(name="validate")
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
    _emit(result, as_json, lambda r: click.echo(
        f"{r.report['samples']} inputs on {r.report['device']['boards']} board(s) under {rpc}: agreement with the host INT8 "
        f"{r.report['host_agreement'] * 100:.2f}%, drop {r.report['drop_pts']:+.2f} pts: {r.report['verdict']}\n"
        f"{r.fold.out}/report.json, report.html: device column '{r.fold.label}'"))
    if not result.passed:
        sys.exit(1)


@cli.command(name="run")
@click.argument("artifact", type=click.Path())
@click.option("--input", "input_spec", required=True, help="Images: a file folder, .npy/.npz, an IDX file, or 'fashion-mnist:test'.")
@click.option("--limit", type=int, default=None, help="Run on at most this many inputs.")
@click.option("--emulate", is_flag=True, help="Run an aarch64 TVM artifact under qemu-user (builds a cached runtime folder once).")
@json_option
def run_command(artifact, input_spec, limit, emulate, as_json):
    """Run an artifact on this machine where it can run, after verifying it."""
    import edgeresnet

    result = edgeresnet.run_artifact(artifact, input_spec, limit=limit, emulate=emulate)

    def human(r):
        for p in r.predictions[:20]:
            click.echo(f"{p.index}: {p.name} (class {p.klass})")
        if len(r.predictions) > 20:
            click.echo(f"... {len(r.predictions) - 20} more")
        tail = f", top-1 {r.top1:.2f}%" if r.top1 is not None else ""
        click.echo(f"{r.samples} inputs on {r.runtime}: {r.ms_per_image} ms per image{tail}")
    _emit(result, as_json, human)


@cli.command(name="inspect")
@click.argument("onnx_model", type=click.Path(dir_okay=False, exists=True))
@click.option("--trt-version", "trt_versions", multiple=True, default=("8.5", "8.6", "10.3", "11"), show_default=True,
              help="TensorRT version whose ONNX parser rules to check (repeatable).")
@json_option
def inspect_command(onnx_model, trt_versions, as_json):
    """Check a Q/DQ ONNX model against TensorRT's parser rules, without TensorRT or a GPU."""
    import edgeresnet

    results = edgeresnet.check_tensorrt(onnx_model, list(trt_versions))

    def human(rs):
        for r in rs:
            click.echo(f"TensorRT {r['trt_version']}: {'PASS' if r['passed'] else 'FAIL'} "
                       f"({len(r['errors'])} errors, {len(r['warnings'])} warnings)")
            for f in r["errors"]:
                click.echo(f"  error [{f['rule']}] {f['node']}: {f['message']}")
            for f in r["warnings"]:
                click.echo(f"  warning [{f['rule']}] {f['node']}: {f['message']}")
    _emit(results, as_json, human)
    if not all(r["passed"] for r in results):
        sys.exit(1)


@cli.command(name="bench")
@click.argument("artifact", type=click.Path())
@click.option("--runs", type=int, default=50, show_default=True)
@json_option
def bench_command(artifact, runs, as_json):
    """Latency of an artifact on this machine (e.g. on the board), against its FP32 model in ONNX Runtime."""
    import edgeresnet

    result = edgeresnet.bench_artifact(artifact, runs=runs)

    def human(r):
        for key, timing in (("INT8", r.int8), ("FP32", r.fp32)):
            click.echo(f"{key}: p50 {timing.p50_ms:.3f} ms, p90 {timing.p90_ms:.3f} ms  [{timing.runtime}]")
        click.echo(f"INT8 speed-up over FP32: {r.int8_speedup:.2f}x on {r.machine}, batch {r.batch}")
        for warning in r.warnings:
            click.echo(f"warning: {warning}", err=True)
    _emit(result, as_json, human)


def main() -> None:
    from edgeresnet.atomic import Terminated, terminate_like_ctrl_c, termination_received

    debug = "--debug" in sys.argv[1:] or os.environ.get("EDGERESNET_DEBUG") == "1"
    terminate_like_ctrl_c()  # SIGTERM cleans up like Ctrl-C: no staging or temporary folder is left
    try:
        cli.main(standalone_mode=False, prog_name="edgeresnet")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = f" {exc.ctx.command_path.split(' ', 1)[1]}" if exc.ctx and " " in exc.ctx.command_path else ""
        click.echo(f"edgeresnet: error: {exc.format_message()} (see 'edgeresnet{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"edgeresnet: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        if termination_received() is not None:  # click turns the interrupt into Abort
            click.echo(f"edgeresnet: terminated ({signal.Signals(termination_received()).name}); nothing half-written was left", err=True)
            sys.exit(128 + termination_received())
        click.echo("edgeresnet: aborted", err=True)
        sys.exit(130)
    except EdgeResnetError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"edgeresnet: error: {' '.join(str(exc).split())}", err=True)  # one line, whatever the message
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise_internal(exc, debug)
        click.echo(f"edgeresnet: error: no space left on the device ({exc.strerror}{f': {exc.filename}' if exc.filename else ''}); nothing was written", err=True)
        sys.exit(InputError.exit_code)
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"edgeresnet: error: missing Python package {exc.name!r}; reinstall edgeresnet with its dependencies", err=True)
        sys.exit(MissingDependency.exit_code)
    except Terminated as exc:
        click.echo(f"edgeresnet: terminated ({exc}); nothing half-written was left", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        click.echo("edgeresnet: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        raise_internal(exc, debug)


def raise_internal(exc: BaseException, debug: bool) -> None:
    """A bug: say so in one line, keep the traceback for --debug."""
    from edgeresnet.atomic import termination_received

    signum = termination_received()
    if signum is not None:  # the Terminated exception was turned into another one on its way up
        click.echo(f"edgeresnet: terminated ({signal.Signals(signum).name}); nothing half-written was left", err=True)
        sys.exit(128 + signum)
    if debug:
        traceback.print_exception(exc)
    click.echo(f"edgeresnet: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
    sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
