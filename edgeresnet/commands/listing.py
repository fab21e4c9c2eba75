"""`models` and `targets`: what the zoo and the target registry offer."""

from __future__ import annotations

import click

from edgeresnet import schema
from edgeresnet.commands.options import emit, json_option, table


@click.command()
@json_option
def models(as_json: bool) -> None:
    """List the model zoo: parameters, MACs/FLOPs at the model's input size, shipped accuracy."""
    from edgeresnet.models import describe_models

    rows = describe_models()
    # The JSON rows give the input shape as text ("1x28x28"), as the table does.
    json_rows = [{**schema.to_json(row), "input": "x".join(map(str, row.input))} for row in rows]
    text_rows = [{**json_row, "gmacs": f"{row.macs / 1e9:.3f}", "top1_text": "-" if row.top1 is None else f"{row.top1:.2f}"}
                 for row, json_row in zip(rows, json_rows)]
    emit(
        json_rows if as_json else text_rows,
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
