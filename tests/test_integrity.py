"""Artifacts whose files were altered and re-hashed consistently, and manifests in forms compile never writes:
`verify` (and `run`, `report`, which verify first) must tell from the files themselves, in one line, exit 1,
without touching the artifact or leaving a temporary file."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from helpers import cli_in_process, rehash, tree_state

GOLDEN = "golden"


def _edit_array(name: str, change):
    def edit(art: Path) -> None:
        path = art / GOLDEN / name
        np.save(path, change(np.load(path)))
        rehash(art, f"{GOLDEN}/{name}")
    return edit


def _edit_json(name: str, change, listed: bool = True):
    def edit(art: Path) -> None:
        path = art / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, indent=2) + "\n")
        if listed:
            rehash(art, name)
    return edit


def _edit_text(name: str, old: str, new: str):
    def edit(art: Path) -> None:
        path = art / name
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
        if name != "manifest.json":
            rehash(art, name)
    return edit


def _edit_model(name: str, change):
    def edit(art: Path) -> None:
        model = onnx.load(str(art / name))
        change(model)
        onnx.save(model, str(art / name))
        rehash(art, name)
    return edit


def _negate_float_weights(model) -> None:
    """Another model with the same graph: every float initializer of the classifier negated."""
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if "fc" in init.name and array.dtype == np.float32 and array.ndim >= 1:
            init.CopyFrom(numpy_helper.from_array(-array, init.name))


def _negate_int8_weights(model) -> None:
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if "fc" in init.name and array.dtype == np.int8 and array.ndim == 2:
            init.CopyFrom(numpy_helper.from_array((-array.astype(np.int16)).clip(-127, 127).astype(np.int8), init.name))


def _resize_input(model) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = 64


def _rename_input(model) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = "image"
    for node in model.graph.node:
        node.input[:] = ["image" if i == old else i for i in node.input]


def _replace_file(name: str, content: bytes | None = None, source: str | None = None):
    def edit(art: Path) -> None:
        (art / name).write_bytes(content if content is not None else (art / source).read_bytes())
        rehash(art, name)
    return edit


def _pickled_npy(art: Path) -> None:
    np.save(art / GOLDEN / "labels.npy", np.array([{"a": 1}] * 64, dtype=object), allow_pickle=True)
    rehash(art, f"{GOLDEN}/labels.npy")


def _reverse_rows(rows: slice):
    def change(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[rows] = a[rows][:, ::-1]
        return a
    return change


def _shift_one_logit(a: np.ndarray) -> np.ndarray:
    """The largest logit of one row made larger: the top-1 (so every label count) stays the same."""
    a = a.copy()
    a[5, a[5].argmax()] += 1.0
    return a


REHASHED = {
    # Golden vectors against the shipped models (re-run in ONNX Runtime) and against golden.json.
    "golden int8 logits, one row, same top-1": (_edit_array("int8_logits.npy", _shift_one_logit), "INT8 logits"),
    "golden int8 logits, rows reversed": (_edit_array("int8_logits.npy", _reverse_rows(slice(40, 42))), "golden"),
    "golden fp32 logits scaled 1%": (_edit_array("fp32_logits.npy", lambda a: a * 1.01), "FP32 logits"),
    "golden fp32 logits with NaN": (_edit_array("fp32_logits.npy", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 7, np.nan, a)), "NaN"),
    "golden inputs cut to 10 rows": (_edit_array("inputs.npy", lambda a: a[:10]), "[10, 3, 32, 32]"),
    "golden inputs as float64": (_edit_array("inputs.npy", lambda a: a.astype(np.float64)), "float64"),
    "golden inputs brightened": (_edit_array("inputs.npy", lambda a: a + 0.5), "logits"),
    "golden logits one class short": (_edit_array("int8_logits.npy", lambda a: a[:, :-1]), "[64, 9]"),
    "golden labels changed": (_edit_array("labels.npy", lambda a: (a + 1) % 10), "host_top1"),
    "golden labels out of range": (_edit_array("labels.npy", lambda a: a + 100), "labels"),
    "golden labels pickled objects": (_pickled_npy, "not a readable .npy"),
    "golden array garbage bytes": (_replace_file(f"{GOLDEN}/int8_logits.npy", b"\x93NUMPY garbage"), "not a readable .npy"),
    "golden.json host top-1": (_edit_json(f"{GOLDEN}/golden.json", lambda d: d["host_top1"].update(int8=99.0)), "host_top1.int8"),
    "golden.json samples": (_edit_json(f"{GOLDEN}/golden.json", lambda d: d.update(samples=32)), "golden.json"),
    "golden.json duplicate indices": (_edit_json(f"{GOLDEN}/golden.json", lambda d: d["indices"].__setitem__(1, d["indices"][0])), "indices"),
    "golden.json for another model": (_edit_json(f"{GOLDEN}/golden.json", lambda d: d.update(model="resnet56")), "resnet56"),
    "golden.json names an unlisted file": (_edit_json(f"{GOLDEN}/golden.json", lambda d: d["files"].update(inputs="../model.int8.onnx")), "files.inputs"),
    "golden.json input shape": (_edit_json(f"{GOLDEN}/golden.json", lambda d: d["input"].update(shape=[64, 3, 28, 28])), "input"),
    "golden.json with NaN": (_edit_text(f"{GOLDEN}/golden.json", '"seed": 0', '"seed": NaN'), "NaN"),
    # The models against the manifest and the golden logits.
    "int8 model's classifier negated": (_edit_model("model.int8.onnx", _negate_int8_weights), "model.int8.onnx"),
    "fp32 model's classifier negated": (_edit_model("model.fp32.onnx", _negate_float_weights), "model.fp32.onnx"),
    "fp32 model replaced by the int8 one": (_replace_file("model.fp32.onnx", source="model.int8.onnx"), "quantize/dequantize"),
    "int8 model replaced by the fp32 one": (_replace_file("model.int8.onnx", source="model.fp32.onnx"), "not an INT8 artifact"),
    "model input 64x64": (_edit_model("model.fp32.onnx", _resize_input), "model.fp32.onnx takes"),
    "model input renamed": (_edit_model("model.int8.onnx", _rename_input), "'image'"),
    "model bytes not onnx": (_replace_file("model.int8.onnx", b"not a model at all"), "not a readable ONNX model"),
    # The manifest and report against each other (the manifest is not self-hashed: edited in place).
    "manifest class count": (_edit_json("manifest.json", lambda d: d["input"].update(num_classes=12), listed=False), "classes"),
    "manifest class names": (_edit_json("manifest.json", lambda d: d["input"].update(class_names=["a", "b"]), listed=False), "2 classes"),
    "report class names": (_edit_json("report.json", lambda d: d.update(class_names=[str(i) for i in range(10)])), "class_names"),
}

_HEX = "ab" * 32
FORMATS = {
    # Digests and names in the manifest in forms compile never writes.
    "file digest upper-case": (lambda d: d["files"].update({"report.html": d["files"]["report.html"].upper()}), "not a sha256"),
    "file digest short": (lambda d: d["files"].update({"report.html": d["files"]["report.html"][:63]}), "not a sha256"),
    "file digest with prefix": (lambda d: d["files"].update({"report.html": "sha256:" + d["files"]["report.html"]}), "not a sha256"),
    "file digest empty": (lambda d: d["files"].update({"report.html": ""}), "not a sha256"),
    "file digest a number": (lambda d: d["files"].update({"report.html": 12345}), "a string was expected"),
    "file digest null": (lambda d: d["files"].update({"report.html": None}), "a string was expected"),
    "files a list": (lambda d: d.update(files=list(d["files"])), "an object was expected"),
    "file name with dot-dot": (lambda d: d["files"].update({"../outside": _HEX}), "plain relative path"),
    "file name absolute": (lambda d: d["files"].update({"/etc/passwd": _HEX}), "plain relative path"),
    "file name with dot segment": (lambda d: d["files"].update({"golden/./inputs.npy": _HEX}), "plain relative path"),
    "file name the manifest": (lambda d: d["files"].update({"manifest.json": _HEX}), "plain relative path"),
    "weights digest not hex": (lambda d: d["model"].update(weights_sha256="z" * 64), "model.weights_sha256"),
    # Types and non-finite numbers.
    "batch a string": (lambda d: d["input"].update(batch="1"), "input.batch: an integer"),
    "batch true": (lambda d: d["input"].update(batch=True), "input.batch: an integer"),
    "agreement a string": (lambda d: d["accuracy"].update(agreement="high"), "accuracy.agreement: a number"),
    "gate passed a string": (lambda d: d["accuracy"]["gate"].update(passed="yes"), "passed: true or false"),
    "target name a number": (lambda d: d["target"].update(name=7), "target.name: a string"),
}
NON_FINITE = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e999": "out of range"}


def _copy(ort_artifact: Path, tmp_path: Path) -> Path:
    art = tmp_path / "art"
    shutil.copytree(ort_artifact, art, ignore=shutil.ignore_patterns("__pycache__"))
    return art


def _refused(monkeypatch, capsys, tmp_path: Path, art: Path, *args: str, command: str = "verify") -> str:
    """Run `command` on the artifact: exit 1, one line, the artifact as it was, no temporary file left."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    before = tree_state(art)
    code, out, err = cli_in_process(monkeypatch, capsys, command, str(art), *args)
    assert code == 1, (code, out, err)
    assert len(err) == 1 and err[0].startswith("edgeresnet: error:") and "Traceback" not in err[0], err
    assert tree_state(art) == before
    assert [p.name for p in private_tmp.iterdir() if p.name != ".ses"] == []
    assert not art.with_name(art.name + ".device").exists()
    return err[0]


def test_the_pristine_artifact_verifies_and_reruns_its_models(ort_artifact, tmp_path, monkeypatch, capsys):
    art = _copy(ort_artifact, tmp_path)
    code, out, err = cli_in_process(monkeypatch, capsys, "verify", str(art), "--json")
    assert code == 0, err
    assert json.loads(out)["rerun"] == "model.fp32.onnx, model.int8.onnx re-run on 64 golden inputs"


@pytest.mark.parametrize("case", sorted(REHASHED))
def test_verify_tells_files_altered_and_rehashed(case, ort_artifact, tmp_path, monkeypatch, capsys):
    edit, text = REHASHED[case]
    art = _copy(ort_artifact, tmp_path)
    edit(art)
    line = _refused(monkeypatch, capsys, tmp_path, art)
    assert text in line, line


@pytest.mark.parametrize("case", sorted(FORMATS))
def test_verify_refuses_manifest_fields_in_wrong_forms(case, ort_artifact, tmp_path, monkeypatch, capsys):
    change, text = FORMATS[case]
    art = _copy(ort_artifact, tmp_path)
    _edit_json("manifest.json", change, listed=False)(art)
    line = _refused(monkeypatch, capsys, tmp_path, art)
    assert text in line, line


@pytest.mark.parametrize("number", sorted(NON_FINITE))
@pytest.mark.parametrize("document", ["manifest.json", "golden/golden.json"])
def test_verify_refuses_non_finite_numbers(number, document, ort_artifact, tmp_path, monkeypatch, capsys):
    """Python's json module reads NaN, Infinity and 1e999 as floats; JSON has none of them."""
    art = _copy(ort_artifact, tmp_path)
    _edit_text(document, '"samples": ', f'"samples": {number}, "was": ')(art)
    line = _refused(monkeypatch, capsys, tmp_path, art)
    assert document in line and NON_FINITE[number] in line, line


@pytest.mark.parametrize("command,args", [("run", ["--input", "{eval}", "--limit", "2"]), ("report", ["--out", "{out}"]),
                                          ("bench", ["--runs", "1"])])
def test_commands_that_read_an_artifact_refuse_it_too(command, args, ort_artifact, small_data, tmp_path, monkeypatch, capsys):
    art = _copy(ort_artifact, tmp_path)
    _edit_array("int8_logits.npy", _shift_one_logit)(art)
    out = tmp_path / "compared"
    line = _refused(monkeypatch, capsys, tmp_path, art,
                    *[a.format(eval=small_data["eval"], out=out) for a in args], command=command)
    assert "INT8 logits" in line and not out.exists()
