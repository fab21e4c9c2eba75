"""`models` and `targets`: what the zoo and the target registry offer."""

from __future__ import annotations

import click

from edgeresnet.commands.options import emit, json_option, table


@click.command()
@json_option
def models(as_json: bool) -> None:
    """List the model zoo: parameters, MACs/FLOPs at the model's input size, shipped accuracy."""
    from edgeresnet.models import describe_models

    rows = describe_models()
    for row in rows:
        row["input"] = "x".join(map(str, row["input"]))
        row["gmacs"] = f"{row['macs'] / 1e9:.3f}"
        row["top1_text"] = f"{row['top1']:.2f}" if "top1" in row else "-"
    emit(
        [{k: v for k, v in r.items() if k not in ("gmacs", "top1_text")} for r in rows] if as_json else rows,
        as_json,
        lambda rs: table(rs, [("name", "model"), ("depth", "depth"), ("input", "input"), ("classes", "classes"),
                               ("params", "params"), ("gmacs", "GMACs"), ("top1_text", "top-1 %")]),
    )


@click.command()
@json_option
def targets(as_json: bool) -> None:
    """List the target profiles that `compile --target` accepts."""
    from edgeresnet.pipeline.backends import target_rows

    emit(target_rows(), as_json, lambda rs: table(
        [{**r, "aliases": ", ".join(r["aliases"])} for r in rs],
        [("name", "target"), ("backend", "backend"), ("arch", "arch"), ("aliases", "aliases"), ("description", "description")],
    ))
