"""The options every command shares (edgeresnet/commands/options.py), at and beyond their bounds: an empty text or
path value is refused for every option and argument of every command, before any work."""

from __future__ import annotations

import click
import pytest

from edgeresnet.cli import cli
from edgeresnet.commands.options import EMPTY_ALLOWED
from edgeresnet.models import ModelDescription
from edgeresnet.errors import InputError
from helpers import run_cli

TEXT_PARAMS = [(name, param) for name, command in sorted(cli.commands.items()) for param in command.params
               if param.name not in EMPTY_ALLOWED and isinstance(param.type, (click.types.StringParamType, click.Path))]


@pytest.mark.parametrize("command, param", TEXT_PARAMS, ids=[f"{c} {p.name}" for c, p in TEXT_PARAMS])
def test_every_text_option_refuses_an_empty_value(command, param):
    given = [""] if isinstance(param, click.Argument) else [param.opts[0], ""]
    # A path that must exist is refused by click's own check first ("File '' does not exist").
    with pytest.raises(click.BadParameter, match="must not be empty|File '' does not exist"):
        cli.main([command, *given], standalone_mode=False, prog_name="edgeresnet")


def test_the_catalogue_covers_the_commands():
    assert {"compile", "run", "evaluate", "verify", "report", "export", "quantize"} <= {c for c, _ in TEXT_PARAMS}
    assert len(TEXT_PARAMS) >= 40


def test_an_empty_value_is_exit_2_in_one_line(tmp_path):
    result = run_cli("compile", "--target", "ort-cpu", "--calib", "", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip().splitlines() == [
        "edgeresnet: error: Invalid value for '--calib': must not be empty; leave the option out for its default "
        "(see 'edgeresnet compile --help')"]


@pytest.mark.parametrize("text", ["32x", "x", "0x", "32x32x3", "nan", "1e3", "32,"])
def test_input_sizes_that_are_not_n_or_hxw_are_refused(text):
    with pytest.raises(InputError, match="input size must be N or HxW"):
        ModelDescription.parse_size(text)


BOUNDS = {
    "compile --max-drop inf": (["compile", "--target", "ort-cpu", "--max-drop", "inf"], "--max-drop must be 0..100"),
    "compile --max-drop nan": (["compile", "--target", "ort-cpu", "--max-drop", "nan"], "--max-drop must be 0..100"),
    "compile --max-drop -1": (["compile", "--target", "ort-cpu", "--max-drop", "-1"], "--max-drop must be 0..100"),
    "compile --batch 2000": (["compile", "--target", "ort-cpu", "--batch", "2000"], "--batch must be 1..1024"),
    "compile --calib-samples 0": (["compile", "--target", "ort-cpu", "--calib-samples", "0"], "--calib-samples must be at least 1"),
    "compile --eval-samples -1": (["compile", "--target", "ort-cpu", "--eval-samples", "-1"], "--eval-samples must be at least 1"),
    "compile --golden-samples -1": (["compile", "--target", "ort-cpu", "--golden-samples", "-1"], "--golden-samples must be at least 1"),
    "compile --percentile 100": (["compile", "--target", "ort-cpu", "--percentile", "100"], "percentile"),
    "compile --seed -5": (["compile", "--target", "ort-cpu", "--seed", "-5"], "--seed must be zero or more"),
    "report --bench 0": (["report", "some-artifact", "--bench", "0"], "--bench must be 1..100000"),
    "report --bench -1": (["report", "some-artifact", "--bench", "-1"], "--bench must be 1..100000"),
    "report --bench 10**6": (["report", "some-artifact", "--bench", "1000000"], "--bench must be 1..100000"),
    "train --lr nan": (["train", "--lr", "nan", "-o", "w.pt"], "learning rate must be positive .and finite."),
    "train --lr inf": (["train", "--lr", "inf", "-o", "w.pt"], "learning rate must be positive .and finite."),
    "train --seed -1": (["train", "--seed", "-1", "-o", "w.pt"], "--seed must be 0..4294967295"),
    "train --seed 2**32": (["train", "--seed", str(2**32), "-o", "w.pt"], "--seed must be 0..4294967295"),
    "export --batch 100000": (["export", "--batch", "100000", "-o", "x.onnx"], "--batch must be 1..1024"),
    "export --batch 0": (["export", "--batch", "0", "-o", "x.onnx"], "--batch must be 1..1024"),
    "export --resize 10**12": (["export", "--resize", str(10**12), "-o", "x.onnx"], "resize must be 0"),
    "export --std 1e-320": (["export", "--model", "resnet20", "--std", "1e-320,1,1", "-o", "x.onnx"], "check them"),
    "export --pixel-scale 1e-30": (["export", "--pixel-scale", "1e-30", "-o", "x.onnx"], "check them"),
}


@pytest.mark.parametrize("case", sorted(BOUNDS))
def test_values_beyond_their_bounds_are_refused_before_any_work(case, tmp_path, monkeypatch):
    args, message = BOUNDS[case]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message):
        cli.main(args, standalone_mode=False, prog_name="edgeresnet")
    assert list(tmp_path.iterdir()) == []
