"""Checkpoints as frameworks save them load without edits, each saying in one line which tensors it took;
what cannot be loaded is refused for its real cause, first."""

from __future__ import annotations

import gzip

import pytest
import torch
from safetensors.torch import save_file

from edgeresnet.errors import InputError
from edgeresnet.models import ModelDescription, load_model
from edgeresnet.models.checkpoint import read_checkpoint
from edgeresnet.models.resnet import build_resnet
from helpers import run_cli

CLASSES = 7


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    model = build_resnet("resnet20", num_classes=CLASSES)
    torch.nn.init.normal_(model.fc.weight)
    return model


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


FORMATS = {
    # name: (how the file is laid out, the prefix the notice names; None: no notice)
    "bare.pth": (lambda s: s, None),
    "lightning.ckpt": (lambda s: {"epoch": 3, "global_step": 90, "pytorch-lightning_version": "2.4.0",
                                  "state_dict": _prefixed(s, "model."), "optimizer_states": [{"state": {}}],
                                  "hyper_parameters": {"lr": 0.1}}, "state_dict.model."),
    "lightning-net.ckpt": (lambda s: {"state_dict": _prefixed(s, "net.")}, "state_dict.net."),
    "ddp.pt": (lambda s: _prefixed(s, "module."), "module."),
    "compiled.pt": (lambda s: _prefixed(s, "_orig_mod."), "_orig_mod."),
    "wrapped.pt": (lambda s: {"state_dict": s, "epoch": 3}, "state_dict."),
    "model.pt": (lambda s: {"model": s}, "model."),
    "model_state_dict.pt": (lambda s: {"model_state_dict": s, "optimizer_state_dict": {}}, "model_state_dict."),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_framework_layouts_load_and_say_which_tensors(tmp_path, source, name, capsys):
    layout, prefix = FORMATS[name]
    torch.save(layout(source.state_dict()), tmp_path / name)
    loaded = load_model("resnet20", tmp_path / name)
    assert torch.equal(loaded.module.fc.weight, source.fc.weight) and loaded.num_classes == CLASSES
    notice = [line for line in capsys.readouterr().err.splitlines() if "weights:" in line]
    if prefix is None:
        assert notice == []
    else:
        assert len(notice) == 1 and f"under {prefix!r} of {name}" in notice[0], notice


def test_safetensors_file_loads(tmp_path, source):
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "model.safetensors")
    loaded = load_model("resnet20", tmp_path / "model.safetensors")
    assert torch.equal(loaded.module.fc.weight, source.fc.weight)


def test_ema_copy_is_named_and_can_be_chosen(tmp_path, source, capsys):
    ema = {k: (v + 1 if v.is_floating_point() else v) for k, v in source.state_dict().items()}
    torch.save({"state_dict": source.state_dict(), "state_dict_ema": ema}, tmp_path / "timm.pth")
    plain = load_model("resnet20", tmp_path / "timm.pth")
    assert torch.equal(plain.module.fc.weight, source.fc.weight)
    notice = capsys.readouterr().err
    assert "EMA copy under 'state_dict_ema.'" in notice and "--weights-key state_dict_ema." in notice
    chosen = load_model("resnet20", tmp_path / "timm.pth", weights_key="state_dict_ema")
    assert torch.equal(chosen.module.fc.weight, ema["fc.weight"])


def test_no_single_prefix_names_the_prefixes_before_any_class_count(tmp_path, source):
    state = source.state_dict()
    keys = sorted(state)
    half = len(keys) // 2
    # Two halves of the network under two prefixes: neither alone is complete.
    mixed = {**{f"student.{k}": state[k] for k in keys[: half + 5]}, **{f"teacher.{k}": state[k] for k in keys[half - 5:]}}
    torch.save({"state_dict": mixed}, tmp_path / "mixed.ckpt")
    names = ModelDescription(class_names=tuple(f"c{i}" for i in range(3)))  # wrong on purpose: must not be the first error
    with pytest.raises(InputError) as err:
        load_model("resnet20", tmp_path / "mixed.ckpt", names)
    message = str(err.value)
    assert "no single key prefix" in message and "'state_dict.student.'" in message and "'state_dict.teacher.'" in message
    assert "--weights-key" in message and "classes" not in message


def test_keys_that_fit_no_network_fail_before_the_class_names(tmp_path, source):
    torch.save({f"backbone.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}, tmp_path / "headless.pt")
    with pytest.raises(InputError) as err:
        load_model("resnet20", tmp_path / "headless.pt", ModelDescription(class_names=("a", "b")))
    assert "missing keys: fc.bias, fc.weight" in str(err.value)


def test_pickled_whole_model_is_refused_with_how_to_save_a_state_dict(tmp_path, source):
    torch.save(source, tmp_path / "whole.pt")
    result = run_cli("export", "--model", "resnet20", "--weights", str(tmp_path / "whole.pt"), "-o", str(tmp_path / "m.onnx"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch.save(model.state_dict(), PATH)" in lines[0], lines
    assert "weights_only" not in lines[0] and "ResNet" in lines[0]
    assert not (tmp_path / "m.onnx").exists()


def test_damaged_safetensors_and_nonfinite_are_refused(tmp_path, source):
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        read_checkpoint(tmp_path / "junk.safetensors")
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"][0, 0] = float("inf")
    save_file(state, tmp_path / "inf.safetensors")
    with pytest.raises(InputError, match="NaN or Inf.*fc.weight"):
        load_model("resnet20", tmp_path / "inf.safetensors")


def test_older_checkpoints_without_batchnorm_counters_load(tmp_path, source):
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    assert torch.equal(load_model("resnet20", tmp_path / "old.pth").module.fc.weight, source.fc.weight)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_double_precision_checkpoints_load_as_float32(tmp_path, source, dtype):
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in source.state_dict().items()}, tmp_path / "w.pt")
    weight = load_model("resnet20", tmp_path / "w.pt").module.fc.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, source.fc.weight.to(dtype).float())


def test_integer_tensors_for_float_weights_are_refused(tmp_path, source):
    torch.save({k: v.to(torch.int8) if v.is_floating_point() else v for k, v in source.state_dict().items()}, tmp_path / "q.pt")
    with pytest.raises(InputError, match=r"integer tensors for float weights .*conv1.weight \(int8\)"):
        load_model("resnet20", tmp_path / "q.pt")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "a folder, not a weights file"),
    (lambda p: p.write_bytes(b""), "not a readable weights file"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(20)), "damaged zip archive"),
    (lambda p: p.write_bytes(gzip.compress(b"\x80\x02}q\x00.")), "not a readable weights file"),  # gzipped
])
def test_files_that_are_no_checkpoint_are_refused_by_name(tmp_path, make, message):
    make(tmp_path / "w.pt")
    with pytest.raises(InputError, match=message):
        read_checkpoint(tmp_path / "w.pt")


def test_truncated_checkpoints_are_refused(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / "w.pt")
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    for name, message in (("w.pt", "not a readable PyTorch weights file"), ("w.safetensors", "not a readable safetensors file")):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match=message):
            read_checkpoint(tmp_path / f"cut-{name}")
