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


# --- digests, keys and signatures in wrong forms; archive members pack never writes ---------------------------

def _artifact_copy(ort_artifact: Path, tmp_path: Path) -> Path:
    import shutil

    art = tmp_path / "art"
    shutil.copytree(ort_artifact, art, ignore=shutil.ignore_patterns("__pycache__"))
    return art


def _one_line(monkeypatch, capsys, tmp_path: Path, checked: Path, *args: str) -> tuple[int, str]:
    """verify in this process: (exit code, the one stderr line), the artifact untouched, no temporary file left."""
    import tempfile

    from helpers import cli_in_process, tree_state

    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    before = tree_state(checked) if checked.is_dir() else checked.read_bytes()
    code, _, err = cli_in_process(monkeypatch, capsys, "verify", str(checked), *args)
    assert (tree_state(checked) if checked.is_dir() else checked.read_bytes()) == before
    assert [p.name for p in private_tmp.iterdir() if p.name != ".ses"] == []
    if code == 0:
        return code, ""
    assert len(err) == 1 and err[0].startswith("edgeresnet: error:") and "Traceback" not in err[0], err
    return code, err[0]


def _digest(art: Path) -> str:
    import hashlib

    return hashlib.sha256((art / MANIFEST).read_bytes()).hexdigest()


@pytest.mark.parametrize("given,code,text", [
    ("", 2, "must not be empty"), (" ", 2, "not a sha256"), ("abc", 2, "not a sha256"), ("0" * 63, 2, "not a sha256"),
    ("0" * 65, 2, "not a sha256"), ("g" * 64, 2, "not a sha256"), ("sha256:", 2, "not a sha256"),
    ("sha512:" + "0" * 64, 2, "not a sha256"), ("{digest}  art/manifest.json", 2, "not a sha256"),
    ("{DIGEST}", 0, ""), ("SHA256:{digest}", 0, ""), ("sha256:{digest}\n", 0, ""),
    ("sha256:" + "0" * 64, 1, "is not the expected"),
])
def test_verify_digest_forms(given, code, text, ort_artifact, tmp_path, monkeypatch, capsys):
    """A malformed --digest is bad input (2); the right one in another case or with its prefix passes; another one fails (1)."""
    art = _artifact_copy(ort_artifact, tmp_path)
    digest = _digest(art)
    got, line = _one_line(monkeypatch, capsys, tmp_path, art, "--digest", given.format(digest=digest, DIGEST=digest.upper()))
    assert got == code and text in line, (got, line)


def _keys(folder: Path) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    folder.mkdir()
    paths = {}
    signer, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    pem, spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    forms = {
        "signer.pem": signer.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "signer.pub": signer.public_key().public_bytes(pem, spki),
        "other.pub": other.public_key().public_bytes(pem, spki),
        "empty.pub": b"",
        "garbage.pub": b"-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n",
        "raw.pub": signer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "openssh.pub": signer.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "rsa.pub": rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(pem, spki),
    }
    for name, data in forms.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize("signature,key,code,text", [
    ("valid", "signer.pub", 0, ""),
    ("valid", None, 0, ""),
    ("valid", "other.pub", 1, "does not match"),
    ("valid", "signer.pem", 2, "not a PEM public key"),
    ("valid", "empty.pub", 2, "not a PEM public key"),
    ("valid", "garbage.pub", 2, "not a PEM public key"),
    ("valid", "raw.pub", 2, "not a PEM public key"),
    ("valid", "openssh.pub", 2, "not a PEM public key"),
    ("valid", "rsa.pub", 2, "an ed25519 key is needed"),
    ("valid", "missing.pub", 2, "cannot read the key"),
    ("empty", "signer.pub", 1, "0 bytes"),
    ("empty", None, 1, "0 bytes"),
    ("hex", None, 1, "128 bytes"),
    ("base64", "signer.pub", 1, "88 bytes"),
    ("short", "signer.pub", 1, "63 bytes"),
    ("random", "signer.pub", 1, "does not match"),
    ("folder", None, 1, "not a regular file"),
    ("none", "signer.pub", 1, "not signed"),
])
def test_verify_signature_and_key_forms(signature, key, code, text, ort_artifact, tmp_path, monkeypatch, capsys):
    """A key that is not an ed25519 PEM public key is bad input (2); a signature that is not a raw 64-byte ed25519
    signature of this manifest fails (1), with or without a key to check it against."""
    import base64

    from edgeresnet.artifact import SIGNATURE, sign_folder

    art = _artifact_copy(ort_artifact, tmp_path)
    keys = _keys(tmp_path / "keys")
    sign_folder(art, keys["signer.pem"])
    valid = (art / SIGNATURE).read_bytes()
    forms = {"valid": valid, "empty": b"", "hex": valid.hex().encode(), "base64": base64.b64encode(valid) + b"\n" * 0,
             "short": valid[:63], "random": np.random.default_rng(0).bytes(64)}
    (art / SIGNATURE).unlink()
    if signature == "folder":
        (art / SIGNATURE).mkdir()
    elif signature != "none":
        (art / SIGNATURE).write_bytes(forms[signature])
    args = ["--public-key", str(keys.get(key, tmp_path / "keys" / key))] if key else []
    got, line = _one_line(monkeypatch, capsys, tmp_path, art, *args)
    assert got == code and text in line, (got, line)


def _repacked(ort_artifact: Path, tmp_path: Path, change) -> Path:
    """The artifact packed as compile --tar packs it, then its members changed by `change(members)`: a list of
    (TarInfo, bytes or None) that it edits in place."""
    from edgeresnet.artifact import pack

    art = _artifact_copy(ort_artifact, tmp_path)
    packed = tmp_path / "packed.tar.gz"
    pack(art, packed)
    with tarfile.open(packed) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    change(members)
    archive = tmp_path / "art.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive


def _member(name: str, data: bytes | None = b"x", kind=tarfile.REGTYPE, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if data is not None else 0
    return info, data


def _find(members: list, name: str) -> tuple:
    return next(m for m in members if m[0].name == name)


ARCHIVES = {
    "a member twice, the second another file": (lambda ms: ms.append(_member("art/report.json", b"{}")), 2, "occurs twice"),
    "a member twice under another spelling": (lambda ms: ms.append(_member("art/./report.json", b"{}")), 2, "occurs twice"),
    "a symlink to a file inside": (lambda ms: ms.append(_member("art/model.copy.onnx", None, tarfile.SYMTYPE, "model.int8.onnx")), 2, "is a link"),
    "a hard link inside": (lambda ms: ms.append(_member("art/golden/copy.npy", None, tarfile.LNKTYPE, "art/golden/inputs.npy")), 2, "is a link"),
    "a symlink out of the folder": (lambda ms: ms.append(_member("art/passwd", None, tarfile.SYMTYPE, "/etc/passwd")), 2, "points outside"),
    "a backslash path": (lambda ms: ms.append(_member("art\\..\\..\\evil.txt")), 2, "outside the folder"),
    "a fifo": (lambda ms: ms.append(_member("art/pipe", None, tarfile.FIFOTYPE)), 2, "special file"),
    "a member the manifest does not list": (lambda ms: ms.append(_member("art/run-me.sh", b"echo hi")), 1, "run-me.sh: not listed"),
    "a listed member left out": (lambda ms: ms.remove(_find(ms, "art/report.html")), 1, "report.html: listed in the manifest but missing"),
    "a second top-level folder": (lambda ms: ms.append(_member("other/readme.txt")), 1, "holds no manifest.json"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_verify_refuses_archive_members_pack_never_writes(case, ort_artifact, tmp_path, monkeypatch, capsys):
    change, code, text = ARCHIVES[case]
    archive = _repacked(ort_artifact, tmp_path, change)
    got, line = _one_line(monkeypatch, capsys, tmp_path, archive)
    assert got == code and text in line, (got, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "art.tar.gz", "packed.tar.gz", "tmp"]


def test_the_repacked_archive_itself_verifies(ort_artifact, tmp_path, monkeypatch, capsys):
    """The control for the cases above: the same repacking with no change passes."""
    archive = _repacked(ort_artifact, tmp_path, lambda members: None)
    assert _one_line(monkeypatch, capsys, tmp_path, archive) == (0, "")


def test_verify_refuses_a_symlink_in_the_folder(ort_artifact, tmp_path, monkeypatch, capsys):
    art = _artifact_copy(ort_artifact, tmp_path)
    target = art / "model.int8.onnx"
    moved = tmp_path / "elsewhere.onnx"
    target.rename(moved)
    target.symlink_to(moved)  # same bytes, same hash: only the link gives it away
    code, line = _one_line(monkeypatch, capsys, tmp_path, art)
    assert code == 1 and "model.int8.onnx: a symbolic link" in line
