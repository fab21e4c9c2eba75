"""The `edgeresnet` command line: a thin click layer over the edgeresnet Python API.

Each command parses its options, calls one API function that does the work, and
prints the result (a table, or JSON with --json). Errors the user can fix are one
line on stderr with a documented exit code; --debug shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import click

from edgeresnet.errors import EXIT_CODES, EdgeResnetError, MissingDependency

INTERNAL_ERROR = 4
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items())) + f"\n  {INTERNAL_ERROR}  internal error (a bug: please report it with --debug output)"


def _emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        human(data)


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title) in enumerate(columns)]
    click.echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
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
    from edgeresnet.targets import aliases, all_targets

    rows = [t.to_dict() for t in all_targets()]
    alias_of = {}
    for alias, name in aliases().items():
        alias_of.setdefault(name, []).append(alias)
    for row in rows:
        row["aliases"] = alias_of.get(row["name"], [])
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
@json_option
def export(model, weights, batch, dynamic_batch, opset, output, as_json) -> None:
    """Export a model to ONNX with BatchNorm folded, checked against PyTorch in ONNX Runtime."""
    import edgeresnet

    result = edgeresnet.export(output, model=model or edgeresnet.DEFAULT_MODEL, weights=weights,
                               batch=batch, dynamic_batch=dynamic_batch, opset=opset)
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


def main() -> None:
    debug = "--debug" in sys.argv[1:] or os.environ.get("EDGERESNET_DEBUG") == "1"
    try:
        cli.main(standalone_mode=False, prog_name="edgeresnet")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("edgeresnet: aborted", err=True)
        sys.exit(130)
    except EdgeResnetError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"edgeresnet: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"edgeresnet: error: missing Python package {exc.name!r}; reinstall edgeresnet with its dependencies", err=True)
        sys.exit(MissingDependency.exit_code)
    except KeyboardInterrupt:
        click.echo("edgeresnet: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        click.echo(f"edgeresnet: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
