"""The `edgeresnet` command line: a thin click layer over the edgeresnet Python API.

Each command parses its options, calls one API function that does the work, and
prints the result (a table, or JSON with --json). Errors the user can fix are one
line on stderr with a documented exit code; --debug shows the traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback

import click

from edgeresnet.commands import artifact, build, checks, device, listing, model, report
from edgeresnet.errors import EXIT_CODES, EdgeResnetError, InputError, MissingDependency

INTERNAL_ERROR = 4
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items())) + f"\n  {INTERNAL_ERROR}  internal error (a bug: please report it with --debug output)"


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="edgeresnet")
def cli(debug: bool) -> None:
    """ResNet (PyTorch) -> ONNX -> INT8 -> per-target edge artifact, with measured accuracy drift."""


for command in (listing.models, listing.targets, model.export, model.train, model.quantize, model.evaluate_command,
                build.compile_command, build.tune, artifact.verify_command, artifact.run_command, artifact.bench_command,
                report.report_command, device.validate_command, *checks.commands()):
    cli.add_command(command)


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
        signum = termination_received()
        if signum is not None:  # click turns the interrupt into Abort
            click.echo(f"edgeresnet: terminated ({signal.Signals(signum).name}); nothing half-written was left", err=True)
            sys.exit(128 + signum)
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
