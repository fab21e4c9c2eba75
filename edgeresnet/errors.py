"""The exceptions edgeresnet raises on purpose, each tied to a documented exit code.

The command line turns an `EdgeResnetError` into one line on stderr and its
`exit_code`; anything else is a bug and keeps its traceback.
"""


class EdgeResnetError(Exception):
    """Base of every error that is the user's to fix, not ours."""

    exit_code = 2


class InputError(EdgeResnetError):
    """Bad input: an unknown name, an unreadable file, a value out of range."""

    exit_code = 2


class CheckFailed(EdgeResnetError):
    """A check ran and failed: an accuracy gate, a parser rule, a tampered artifact."""

    exit_code = 1


class MissingDependency(EdgeResnetError):
    """A package, data set or toolchain that the step needs is not installed."""

    exit_code = 3


EXIT_CODES = {
    0: "success",
    CheckFailed.exit_code: "a check failed (accuracy gate, parser rule, verification)",
    InputError.exit_code: "bad input or usage",
    MissingDependency.exit_code: "missing dependency, data set or toolchain",
}
