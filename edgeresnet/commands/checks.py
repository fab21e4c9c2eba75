"""The model checks backends offer, each as a command of its own (e.g. `inspect`: TensorRT's ONNX parser
rules), generated from the check's declared options."""

from __future__ import annotations

import sys

import click

from edgeresnet.commands.options import emit, json_option


def _command(check) -> click.Command:
    def run(onnx_model, as_json, **options):
        import edgeresnet

        reports = edgeresnet.check_model(check.name, onnx_model, **options)

        def human(rs):
            for report in rs:
                for line in report.lines():
                    click.echo(line)
        emit([report.to_dict() for report in reports] if as_json else reports, as_json, human)
        if not all(report.passed for report in reports):
            sys.exit(1)

    command = json_option(run)
    for option in reversed(check.options):
        command = click.option(option.flag, option.name, multiple=option.multiple, default=option.default,
                               show_default=True, help=option.help)(command)
    command = click.argument("onnx_model", type=click.Path(dir_okay=False, exists=True))(command)
    return click.command(name=check.name, help=check.help)(command)


def commands() -> list[click.Command]:
    from edgeresnet.pipeline.backends import model_check_commands

    return [_command(check) for check in model_check_commands()]
