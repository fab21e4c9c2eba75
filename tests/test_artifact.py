"""Artifacts users can trust: manifest, determinism, verify, tar safety, kills, and the bad-input corpus."""

import fcntl
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from edgeresnet.artifact import MANIFEST, safe_extract
from edgeresnet.errors import InputError
from edgeresnet.models.resnet import build_resnet
from helpers import compile_small, run_cli


def test_manifest_records_what_the_artifact_is(ort_artifact):
    manifest = json.loads((ort_artifact / MANIFEST).read_text())
    assert manifest["schema"] == "edgeresnet.manifest/1"
    assert manifest["model"]["name"] == "resnet20" and manifest["input"]["input_size"] == [32, 32]
    assert manifest["calibration"]["method"] == "minmax" and manifest["calibration"]["samples"] == 32
    assert len(manifest["calibration"]["sha256"]) == 64
    assert manifest["target"]["name"] == "ort-cpu"
    assert {"torch", "onnx", "onnxruntime", "numpy"} <= set(manifest["toolchain"])
    assert "apache-tvm" not in manifest["toolchain"]  # each backend lists its own tools; ONNX Runtime needs no TVM
    golden = {f"golden/{name}" for name in ("inputs.npy", "labels.npy", "fp32_logits.npy", "int8_logits.npy", "golden.json")}
    assert set(manifest["files"]) == {"model.int8.onnx", "model.fp32.onnx", "model-card.json", "report.json", "report.html"} | golden
    assert "gate" in manifest["accuracy"] and "created_unix" in manifest["build"]


def test_same_inputs_give_identical_file_hashes(tmp_path, small_data):
    hashes = []
    for name in ("a", "b"):
        assert compile_small("jetson-orin-nano", tmp_path / name, small_data).returncode == 0
        hashes.append(json.loads((tmp_path / name / MANIFEST).read_text())["files"])
    assert hashes[0] == hashes[1] and len(hashes[0]) >= 10


def test_verify_names_a_changed_byte(tmp_path, ort_artifact):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(ort_artifact), str(copy)], check=True)
    assert run_cli("verify", str(copy)).returncode == 0
    model = copy / "model.int8.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    result = run_cli("verify", str(copy))
    assert result.returncode == 1 and "model.int8.onnx" in result.stderr and "sha256" in result.stderr


def test_verify_refuses_extra_and_missing_files(tmp_path, ort_artifact):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(ort_artifact), str(copy)], check=True)
    (copy / "sneaky.sh").write_text("echo hi")
    assert "sneaky.sh: not listed" in run_cli("verify", str(copy)).stderr
    (copy / "sneaky.sh").unlink()
    (copy / "report.html").unlink()
    result = run_cli("verify", str(copy))
    assert result.returncode == 1 and "report.html: listed in the manifest but missing" in result.stderr


def test_tar_round_trip_and_run(tmp_path, small_data):
    out = tmp_path / "art"
    assert compile_small("ort-cpu", out, small_data, "--tar").returncode == 0
    archive = tmp_path / "art.tar.gz"
    assert run_cli("verify", str(archive)).returncode == 0
    result = run_cli("run", str(archive), "--input", str(small_data["eval"]), "--limit", "5", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["predictions"]) == 5


def _evil_tar(path: Path, name: str, kind=tarfile.REGTYPE, linkname: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        data = b"pwned"
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("name,kind,linkname,message", [
    ("../escape.txt", tarfile.REGTYPE, "", "outside the folder"),
    ("/tmp/edgeresnet-abs.txt", tarfile.REGTYPE, "", "outside the folder"),
    ("art/link", tarfile.SYMTYPE, "../../etc/passwd", "points outside"),
    ("art/dev", tarfile.CHRTYPE, "", "special file"),
])
def test_safe_extract_refuses_escapes(tmp_path, name, kind, linkname, message):
    archive = _evil_tar(tmp_path / "evil.tar.gz", name, kind, linkname)
    with pytest.raises(InputError, match=message):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/edgeresnet-abs.txt").exists()


def test_sigkill_never_leaves_a_complete_looking_folder(tmp_path):
    """Kill compile on the reference model while loading, checking the preprocessing, calibrating, measuring
    sensitivity, building and evaluating. Each kill follows a progress line on stderr (an event, not a clock:
    kills at fractions of a timed run landed in other phases on a loaded machine)."""
    command = [sys.executable, "-m", "edgeresnet.cli", "compile", "--target", "jetson-orin-nano", "--eval-samples", "3000"]
    killed_mid_work = 0
    for lines_before_kill in (0, 1, 2, 3, 4):
        out = tmp_path / f"killed-{lines_before_kill}"
        process = subprocess.Popen(command + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        for _ in range(lines_before_kill):
            assert process.stderr.readline(), "compile ended before the phase this kill waits for"
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        if out.exists():
            # Renamed into place: then it is whole (the kill came after the rename, during the summary).
            assert (out / MANIFEST).is_file() and run_cli("verify", str(out)).returncode == 0
        else:
            killed_mid_work += 1
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(f".killed-{lines_before_kill}")]
        # A kill cannot clean up: a hidden staging folder and the destination's lock file may stay,
        # never anything that looks like an artifact, and the dead process's lock is free again.
        assert all(p.name.endswith((".partial", ".lock")) for p in leftovers), leftovers
        for lock in (p for p in leftovers if p.name.endswith(".lock")):
            with open(lock, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert killed_mid_work >= 4
    whole = subprocess.run(command + ["--out", str(tmp_path / "whole")], capture_output=True)
    assert whole.returncode == 0 and run_cli("verify", str(tmp_path / "whole")).returncode == 0, whole.stderr[-2000:]


# --- the bad-input corpus -----------------------------------------------------------------------------

def _tiny_add_model(path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Add", ["a", "a"], ["b"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/edgeresnet-corpus-pwned",))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, small_data, ort_artifact, jetson_artifact):
    d = tmp_path_factory.mktemp("corpus")
    exported = d / "good.onnx"
    assert run_cli("export", "-o", str(exported)).returncode == 0  # the reference model, 1x28x28
    (d / "truncated.onnx").write_bytes(exported.read_bytes()[:5000])
    (d / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    _tiny_add_model(d / "add.onnx")
    torch.save(build_resnet("resnet18", num_classes=10, in_channels=1).state_dict(), d / "r18.pt")
    nan_state = build_resnet("resnet20", num_classes=10, in_channels=1).state_dict()
    nan_state["conv1.weight"].fill_(float("inf"))
    torch.save(nan_state, d / "inf.pt")
    torch.save({"conv1.weight": torch.zeros(1), "x": _Exploit()}, d / "evil.pt")
    (d / "empty").mkdir()
    (d / "notimages").mkdir()
    (d / "notimages" / "cat.png").write_text("definitely not a PNG")
    np.save(d / "wrongshape.npy", np.zeros((4, 3, 28, 28), np.float32))
    np.save(d / "wrongdtype.npy", np.zeros((4, 1, 28, 28), np.complex64))
    np.savez(d / "nokey.npz", pictures=np.zeros((4, 1, 28, 28), np.float32))
    np.savez(d / "badlabels.npz", images=np.zeros((4, 28, 28), np.uint8), labels=np.array([0, 1, 2, 99]))
    (d / "bad-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    (d / "a-file").write_text("I am a file")
    existing = d / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    tampered = d / "tampered"
    subprocess.run(["cp", "-r", str(ort_artifact), str(tampered)], check=True)
    with open(tampered / "report.json", "a") as f:
        f.write(" ")
    badjson = d / "badjson"
    subprocess.run(["cp", "-r", str(ort_artifact), str(badjson)], check=True)
    (badjson / MANIFEST).write_text("{not json")
    _evil_tar(d / "dotdot.tar.gz", "../../evil.txt")
    _evil_tar(d / "abs.tar.gz", "/etc/edgeresnet-evil")
    return {"dir": d, "ort": ort_artifact, "jetson": jetson_artifact, "eval": small_data["eval"]}


OUT = "{dir}/out"
CASES = {
    # name: (args, expected exit code, text expected in the one-line error)
    "truncated onnx": (["evaluate", "{dir}/truncated.onnx"], 2, "cannot load"),
    "random-bytes onnx": (["inspect", "{dir}/random.onnx"], 2, "not a readable ONNX model"),
    "onnx not a resnet classifier": (["evaluate", "{dir}/add.onnx"], 2, "not a classifier"),
    "weights for another depth": (["compile", "--target", "ort-cpu", "--weights", "{dir}/r18.pt", "--out", OUT], 2, "missing keys"),
    "weights with inf": (["export", "--weights", "{dir}/inf.pt", "-o", "{dir}/out.onnx"], 2, "NaN or Inf"),
    "pickle with code": (["export", "--weights", "{dir}/evil.pt", "-o", "{dir}/out.onnx"], 2, "refused"),
    "missing weights file": (["export", "--weights", "{dir}/nope.pt", "-o", "{dir}/out.onnx"], 2, "not found"),
    "empty calibration folder": (["compile", "--target", "ort-cpu", "--calib", "{dir}/empty", "--out", OUT], 2, "no images found"),
    "images that are not images": (["compile", "--target", "ort-cpu", "--calib", "{dir}/notimages", "--out", OUT], 2, "not a readable image"),
    "calibration array wrong shape": (["compile", "--target", "ort-cpu", "--calib", "{dir}/wrongshape.npy", "--out", OUT], 2, "shape"),
    "calibration array wrong dtype": (["compile", "--target", "ort-cpu", "--calib", "{dir}/wrongdtype.npy", "--out", OUT], 2, "dtype"),
    "npz without images": (["compile", "--target", "ort-cpu", "--calib", "{dir}/nokey.npz", "--out", OUT], 2, "'images'"),
    "bad idx file": (["compile", "--target", "ort-cpu", "--calib", "{dir}/bad-images-idx3-ubyte", "--out", OUT], 2, "not an IDX file"),
    "calibration path missing": (["compile", "--target", "ort-cpu", "--calib", "{dir}/nowhere", "--out", OUT], 2, "no such file"),
    "unknown data format": (["compile", "--target", "ort-cpu", "--calib", "{dir}/a-file", "--out", OUT], 2, "unknown data format"),
    "labels out of range": (["evaluate", "{dir}/good.onnx", "--eval", "{dir}/badlabels.npz"], 2, "labels run from 0 to 99"),
    "unknown model": (["compile", "--target", "ort-cpu", "--model", "resnet19", "--out", OUT], 2, "unknown model"),
    "unknown target": (["compile", "--target", "rpi9", "--out", OUT], 2, "unknown target"),
    "unknown method": (["compile", "--target", "ort-cpu", "--method", "kl", "--out", OUT], 2, "--method"),
    "calib samples zero": (["compile", "--target", "ort-cpu", "--calib-samples", "0", "--out", OUT], 2, "at least 1"),
    "eval samples zero": (["compile", "--target", "ort-cpu", "--eval-samples", "0", "--out", OUT], 2, "at least 1"),
    "negative max drop": (["compile", "--target", "ort-cpu", "--max-drop", "-1", "--out", OUT], 2, "--max-drop"),
    "batch zero": (["compile", "--target", "ort-cpu", "--batch", "0", "--out", OUT], 2, "--batch"),
    "dynamic batch bounds reversed": (["compile", "--target", "jetson", "--dynamic-batch", "8,4,1", "--out", OUT], 2, "min <= opt <= max"),
    "dynamic batch on a tvm target": (["compile", "--target", "rpi5", "--dynamic-batch", "1,2,4", "--out", OUT], 2, "static batch"),
    "existing output folder": (["compile", "--target", "ort-cpu", "--out", "{dir}/existing"], 2, "already exists"),
    "output under a file": (["compile", "--target", "ort-cpu", "--out", "{dir}/a-file/sub"], 2, "nothing was written"),
    "unwritable output folder": (["compile", "--target", "ort-cpu", "--out", "/proc/edgeresnet-out"], 2, "nothing was written"),
    "missing fashion-mnist": (["compile", "--target", "ort-cpu", "--out", OUT], 3, "apt-get install dataset-fashion-mnist"),
    "missing cross-compiler": (["compile", "--target", "rpi4", "--out", OUT], 3, "apt-get install g++-aarch64-linux-gnu"),
    "unknown trt version": (["inspect", "--trt-version", "7.1", "{dir}/good.onnx"], 2, "not supported"),
    "tampered artifact": (["verify", "{dir}/tampered"], 1, "report.json"),
    "manifest not json": (["verify", "{dir}/badjson"], 1, "not valid JSON"),
    "not an artifact": (["verify", "{dir}/empty"], 1, "no manifest.json"),
    "artifact for another target": (["run", "{jetson}", "--input", "{eval}"], 2, "cannot run it"),
    "tar with dot-dot": (["verify", "{dir}/dotdot.tar.gz"], 2, "outside the folder"),
    "tar with absolute path": (["verify", "{dir}/abs.tar.gz"], 2, "outside the folder"),
    "run input of wrong shape": (["run", "{ort}", "--input", "{dir}/wrongshape.npy"], 2, "shape"),
    "unknown option": (["compile", "--target", "ort-cpu", "--frobnicate"], 2, "No such option"),
    "export to a folder": (["export", "-o", "{dir}"], 2, "is a directory"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_corpus(corpus, case):
    args, code, text = CASES[case]
    args = [a.format(**corpus) for a in args]
    env = {
        "missing fashion-mnist": {"EDGERESNET_FASHION_MNIST": str(corpus["dir"] / "empty")},
        "missing cross-compiler": {"PATH": str(corpus["dir"] / "empty")},  # no toolchain on PATH
    }.get(case)
    before = sorted(p.name for p in corpus["dir"].iterdir())
    result = run_cli(*args, env=env, timeout=300)
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeresnet: error:"), result.stderr
    assert "Traceback" not in result.stderr and text in lines[0], lines[0]
    assert not (corpus["dir"] / "out").exists() and not (corpus["dir"] / "out.onnx").exists()
    assert sorted(p.name for p in corpus["dir"].iterdir() if not p.name.startswith(".")) == [b for b in before if not b.startswith(".")]
    assert (corpus["dir"] / "existing" / "keep.txt").read_text() == "precious"
    assert not Path("/tmp/edgeresnet-corpus-pwned").exists()


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


def test_full_disk_leaves_nothing(tmp_path, small_data):
    """A size-limited file system, simulated with RLIMIT_FSIZE: writes past 300 kB fail with EFBIG."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = tmp_path / "full"
    result = subprocess.run(
        [sys.executable, "-m", "edgeresnet.cli", "compile", "--target", "ort-cpu", "--model", "resnet20",
         "--calib", str(small_data["calib"]), "--eval", str(small_data["eval"]), "--out", str(out)],
        capture_output=True, text=True, preexec_fn=limit, timeout=600)
    assert result.returncode == 2, result.stderr
    assert "no space left" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".full")]


def test_debug_shows_the_traceback():
    result = run_cli("--debug", "compile", "--target", "rpi9")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_run_takes_image_files_and_folders_one_line_each_in_file_order(tmp_path, ort_artifact):
    rng = np.random.default_rng(0)
    (tmp_path / "pics").mkdir()
    for name in ("c.png", "a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "pics" / name)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "one.jpg")
    single = run_cli("run", str(ort_artifact), "--input", str(tmp_path / "one.jpg"))
    assert single.returncode == 0, single.stderr
    line = single.stdout.strip().splitlines()
    assert len(line) == 1 and line[0].split("\t")[0] == str(tmp_path / "one.jpg")
    assert 0 < float(line[0].split("\t")[2]) <= 1
    both = run_cli("run", str(ort_artifact), "--input", str(tmp_path / "pics"), "--input", str(tmp_path / "one.jpg"))
    files = [row.split("\t")[0] for row in both.stdout.strip().splitlines()]
    expected = sorted([str(tmp_path / "one.jpg"), *(str(tmp_path / "pics" / n) for n in ("a.png", "b.jpg", "c.png"))])
    assert files == expected
    first = json.loads(run_cli("run", str(ort_artifact), "--input", str(tmp_path / "pics"), "--limit", "2", "--json").stdout)
    assert [p["file"] for p in first["predictions"]] == [str(tmp_path / "pics" / "a.png"), str(tmp_path / "pics" / "b.jpg")]
    refused = run_cli("run", str(ort_artifact), "--input", str(tmp_path / "pics"), "--input", str(tmp_path / "x.npy"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1


def test_run_prints_one_line_per_file_whatever_its_name(tmp_path, ort_artifact):
    names = ["with space.png", "ünïcødé 猫.png", "new\nline.png", "tab\there.png", "-dash.png", "UPPER.JPG", "scan.tga"]
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / name)
    result = run_cli("run", str(ort_artifact), "--input", str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = [row.split("\t")[0] for row in result.stdout.splitlines()]
    expected = sorted(str(tmp_path / n) for n in names)
    assert printed == [n.replace("\n", "\\n").replace("\t", "\\t") for n in expected]
    listed = json.loads(run_cli("run", str(ort_artifact), "--input", str(tmp_path), "--json").stdout)
    assert [p["file"] for p in listed["predictions"]] == expected  # JSON keeps the names as they are
