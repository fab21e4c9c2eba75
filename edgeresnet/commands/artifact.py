"""Commands on a built artifact on this machine: `verify`, `run`, `bench`."""

from __future__ import annotations

import sys

import click

from edgeresnet.commands.options import emit, json_option, offered_by
from edgeresnet.pipeline.backends import emulation_offers


@click.command(name="verify")
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
    emit(result, as_json, lambda r: click.echo(f"{artifact}: OK ({r.files} files, target {r.target}, "
                                                f"digest sha256:{r.digest}, signature {r.signature})"))


@click.command(name="run")
@click.argument("artifact", type=click.Path())
@click.option("--input", "inputs", required=True, multiple=True,
              help="Image files and folders (repeat --input for several), or one .npy/.npz, IDX file or 'fashion-mnist:test'.")
@click.option("--limit", type=int, default=None, help="Run on the first N inputs (in sorted file order).")
@click.option("--emulate", is_flag=True, help=f"Run the artifact under emulation; backends that offer it: {offered_by(emulation_offers())}.")
@json_option
def run_command(artifact, inputs, limit, emulate, as_json):
    """Run an artifact on this machine where it can run, after verifying it: one line per input (file, class, score)."""
    import edgeresnet

    result = edgeresnet.run_artifact(artifact, list(inputs), limit=limit, emulate=emulate)

    def human(r):
        for p in r.predictions:
            click.echo(f"{one_line(p.file) if p.file else p.index}\t{one_line(str(p.name))}\t{p.score:.4f}")
        tail = f", top-1 {r.top1:.2f}%" if r.top1 is not None else ""
        click.echo(f"{r.samples} inputs on {r.runtime}: {r.ms_per_image} ms per image{tail}", err=True)
    emit(result, as_json, human)


def one_line(text: str) -> str:
    """`text` on one line of a tab-separated printout: a newline, tab or other control character in a file name
    (legal on Linux and macOS) is written as its escape (\\n, \\t, \\x1b); --json keeps the name as it is."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


@click.command(name="bench")
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
    emit(result, as_json, human)
