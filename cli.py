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

from edgeresnet import processes
from edgeresnet.commands import artifact, build, checks, device, listing, model, report
from edgeresnet.commands.options import refuse_empty_text
from edgeresnet.errors import EXIT_CODES, EdgeResnetError, InputError, MissingDependency

INTERNAL_ERROR = 4
# What the system says of a path that is missing, unreadable or of the wrong kind: bad input, not a bug.
USER_PATH_ERRORS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG,
                    errno.EROFS)
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items())) + f"\n  {INTERNAL_ERROR}  internal error (a bug: please report it with --debug output)"


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="edgeresnet")
def cli(debug: bool) -> None:
    """ResNet (PyTorch) -> ONNX -> INT8 -> per-target edge artifact, with measured accuracy drift."""


for command in (listing.models, listing.targets, model.export, model.train, model.quantize, model.evaluate_command,
                build.compile_command, build.tune, artifact.verify_command, artifact.run_command, artifact.bench_command,
                report.report_command, device.validate_command, *checks.commands()):
    cli.add_command(refuse_empty_text(command))


def main() -> None:
    """Run the command and exit with its code: 0, an error's documented code, or 128 + a termination signal's
    number whatever phase the signal lands in (the error line, if any, is then followed by the termination line)."""
    try:
        processes.handle_termination()  # before anything is written or started
        try:
            cli.main(standalone_mode=False, prog_name="edgeresnet")
            code = 0
        except BaseException as exc:  # noqa: BLE001 - every outcome becomes one line and an exit code
            code = _report(exc)
        processes.stop_interrupting()
    except KeyboardInterrupt:  # the one termination signal arrived while an error above was being reported
        processes.record_termination(signal.SIGINT)  # recorded already unless Python's own Ctrl-C handler raised it
        code = 130
    signum = processes.termination_received()
    if signum is not None:
        # Helpers end here as well as in the watcher thread, which may not have run yet if the main thread unwound fast.
        processes.signal_descendants(signal.SIGTERM)
        click.echo(f"edgeresnet: terminated ({signal.Signals(signum).name}); nothing half-written was left", err=True)
        code = 128 + signum
    sys.exit(code)


def _report(exc: BaseException) -> int:
    """One line on stderr for `exc` (none for a termination signal: main says it) and the exit code."""
    debug = "--debug" in sys.argv[1:] or os.environ.get("EDGERESNET_DEBUG") == "1"
    if isinstance(exc, click.Abort) and exc.__cause__ is not None:
        exc = exc.__cause__  # click turns KeyboardInterrupt and EOFError (a truncated file, too) into Abort
    if isinstance(exc, KeyboardInterrupt):
        processes.record_termination(signal.SIGINT)  # recorded already unless Python's own Ctrl-C handler raised it
    if processes.termination_received() is not None:
        return 130  # main replaces it with 128 + the signal's number
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if isinstance(exc, click.UsageError):
        command = f" {exc.ctx.command_path.split(' ', 1)[1]}" if exc.ctx and " " in exc.ctx.command_path else ""
        click.echo(f"edgeresnet: error: {exc.format_message()} (see 'edgeresnet{command} --help')", err=True)
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        click.echo(f"edgeresnet: error: {exc.format_message()}", err=True)
        return exc.exit_code
    if isinstance(exc, EdgeResnetError):
        if debug:
            traceback.print_exception(exc)
        click.echo(f"edgeresnet: error: {' '.join(str(exc).split())}", err=True)  # one line, whatever the message
        return exc.exit_code
    if isinstance(exc, OSError) and exc.errno in USER_PATH_ERRORS and exc.filename:
        # A file or folder the user named, as the system refused it: bad input, not a bug.
        click.echo(f"edgeresnet: error: {exc.filename}: {exc.strerror}", err=True)
        return InputError.exit_code
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        click.echo(f"edgeresnet: error: no space left on the device ({exc.strerror}{f': {exc.filename}' if exc.filename else ''}); nothing was written", err=True)
        return InputError.exit_code
    if isinstance(exc, ModuleNotFoundError):
        if debug:
            traceback.print_exception(exc)
        click.echo(f"edgeresnet: error: missing Python package {exc.name!r}; reinstall edgeresnet with its dependencies", err=True)
        return MissingDependency.exit_code
    if not isinstance(exc, Exception):
        raise exc  # GeneratorExit and the like: not an outcome of a command
    # A bug: say so in one line, keep the traceback for --debug.
    if debug:
        traceback.print_exception(exc)
    click.echo(f"edgeresnet: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
    return INTERNAL_ERROR


if __name__ == "__main__":
    main()
