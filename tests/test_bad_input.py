"""Every input a user can get wrong gives one line on stderr, its documented exit code, and leaves nothing behind:
no destination, no staging folder beside it, nothing in the temporary directory (TMPDIR is a fresh folder per case).

Also: artifacts that cannot be quietly altered (digest, signature, claims against content), and clean process
behaviour (SIGTERM, stale staging folders, one writer per destination)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeresnet.artifact import MANIFEST, verify_folder, write_manifest
from edgeresnet.schema import CalibrationRecordEntry, InputRecord, Manifest, ModelRecord, TargetRecord
from edgeresnet.atomic import atomic_directory, remove_stale_staging
from edgeresnet.errors import CheckFailed, InputError
from edgeresnet.models.resnet import build_resnet
from helpers import run_cli


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (a decompression bomb's signature); never decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _corrupt_tensor_bytes(source: Path, target: Path) -> None:
    """Flip one byte inside the largest tensor record of a torch.save zip (the CRC in the directory stays)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    local_header = member.header_offset
    name_length, extra_length = struct.unpack("<HH", data[local_header + 26: local_header + 30])
    start = local_header + 30 + name_length + extra_length
    data[start + member.file_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def _left_in(tmpdir: Path) -> list[str]:
    """What a command left in its TMPDIR. `.ses` is ONNX Runtime's telemetry session file, written by
    `import onnxruntime` itself (its 1DS SDK; one fixed name, rewritten by every run): not ours to remove."""
    return sorted(p.name for p in tmpdir.iterdir() if p.name != ".ses")


def _edited_copy(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST).read_text())
    edit(manifest)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return target


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, small_data, ort_artifact):
    d = tmp_path_factory.mktemp("badinput")
    rng = np.random.default_rng(0)
    header = b"\x00\x00\x08\x03" + struct.pack(">III", 8, 32, 32)
    compressed = bytearray(gzip.compress(header + rng.integers(0, 255, 8 * 32 * 32, dtype=np.uint8).tobytes()))
    compressed[len(compressed) // 2] ^= 0xFF
    (d / "corrupt-images-idx3-ubyte.gz").write_bytes(bytes(compressed))
    (d / "huge-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 100_000, 1000, 1000)))
    (d / "bomb").mkdir()
    _png_header_only(d / "bomb" / "huge.png", 20000, 20000)
    np.save(d / "three.npy", rng.standard_normal((3, 3, 32, 32)).astype(np.float32))
    np.save(d / "raw255.npy", rng.integers(0, 256, (8, 3, 32, 32)).astype(np.float32))
    mixed = d / "mixed"
    for name in ("cat", "dog"):
        (mixed / name).mkdir(parents=True)

    for place in ("cat/a.png", "dog/b.png", "stray.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(mixed / place)
    (d / "random.tar.gz").write_bytes(rng.bytes(4096))
    import tarfile

    with tarfile.open(d / "empty.tar.gz", "w:gz"):
        pass
    torch.save(build_resnet("resnet20").state_dict(), d / "good.pth")
    _corrupt_tensor_bytes(d / "good.pth", d / "flipped.pth")
    (d / "card-unknown.json").write_text(json.dumps({"num_classes": 10, "colour": "blue"}))
    (d / "card-broken.toml").write_text("input_size = [32, \n")
    (d / "card-mean.json").write_text(json.dumps({"mean": [0.5, 0.5], "std": [0.5, 0.5]}))
    (d / "names3.txt").write_text("a\nb\nc\n")
    (d / "card-nan.json").write_text('{"mean": [NaN, 0.5, 0.5]}')
    (d / "card-crlf.toml").write_bytes(b"\xef\xbb\xbfnum_classes = 10\r\nchannel_order = 'sideways'\r\n")
    (d / "junk").mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / "junk" / "good.png")
    (d / "junk" / "notes.jpg").write_text("a text file saved with an image extension")
    (d / "flat").mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / "flat" / "a.png")
    (d / "flat" / "labels.csv").write_text("filename,label\nb.png,cat\n")
    torch.save(build_resnet("resnet20"), d / "whole-model.pt")
    torch.save({"state_dict": {f"student.{k}": v for k, v in list(build_resnet("resnet20").state_dict().items())[:70]},
                "ema": {f"teacher.{k}": v for k, v in list(build_resnet("resnet20").state_dict().items())[50:]}},
               d / "two-halves.ckpt")
    (d / "a-file").write_text("I am a file")
    other_target = _edited_copy(ort_artifact, d / "other-target", lambda m: m["target"].update(name="jetson-orin-nx"))
    _edited_copy(ort_artifact, d / "edited-accuracy", lambda m: m["accuracy"].update(fp32_top1=99.0, int8_top1=99.0))
    _edited_copy(ort_artifact, d / "edited-arch", lambda m: m["target"].update(arch="aarch64"))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    public = ed25519.Ed25519PrivateKey.generate().public_key()
    (d / "ed25519.pub").write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "rsa.pem").write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    assert other_target.is_dir()
    return {"dir": d, "ort": ort_artifact, "calib": small_data["calib"], "eval": small_data["eval"]}


OUT = "{dir}/out"
COMPILE = ["compile", "--target", "ort-cpu", "--model", "resnet20", "--calib", "{calib}", "--eval", "{eval}", "--out", OUT]
CASES = {
    # the cases issue 15 lists
    "corrupt gzip IDX": (["compile", "--target", "ort-cpu", "--model", "resnet20", "--calib",
                          "{dir}/corrupt-images-idx3-ubyte.gz", "--out", OUT], 2, "corrupt or truncated gzip"),
    "IDX header promising 100 GB": (["compile", "--target", "ort-cpu", "--model", "resnet20", "--calib",
                                     "{dir}/huge-images-idx3-ubyte.gz", "--out", OUT], 2, "more than the 4,294,967,296 allowed"),
    "decompression-bomb PNG": (["compile", "--target", "ort-cpu", "--model", "resnet20", "--calib", "{dir}/bomb",
                                "--out", OUT], 2, "decompression bomb"),
    "fewer calibration images than --batch": (["compile", "--target", "ort-cpu", "--model", "resnet20", "--calib",
                                               "{dir}/three.npy", "--eval", "{eval}", "--batch", "4", "--out", OUT], 2,
                                              "fewer than one batch of 4"),
    "unbounded --batch": ([*COMPILE, "--batch", "100000"], 2, "--batch must be 1..1024"),
    "negative --seed": ([*COMPILE, "--seed", "-1"], 2, "--seed must be zero or more"),
    "bench --runs 0": (["bench", "{ort}", "--runs", "0"], 2, "--runs must be"),
    "run on an artifact naming another target": (["run", "{dir}/other-target", "--input", "{eval}"], 1, "manifest target.name"),
    "random bytes named .tar.gz": (["verify", "{dir}/random.tar.gz"], 2, "not a readable .tar.gz"),
    "empty tar": (["verify", "{dir}/empty.tar.gz"], 1, "empty.tar.gz: the archive holds no manifest.json"),
    # like them
    "quantize --batch 100000": (["quantize", "--model", "resnet20", "--calib", "{calib}", "--batch", "100000", "-o",
                                 "{dir}/out.onnx"], 2, "--batch must be 1..1024"),
    "evaluate --seed -1": (["evaluate", "{ort}/model.fp32.onnx", "--model", "resnet20", "--eval", "{eval}", "--seed", "-1"], 2,
                           "--seed must be zero or more"),
    "run --limit 0": (["run", "{ort}", "--input", "{eval}", "--limit", "0"], 2, "--limit must be at least 1"),
    "verify a plain file": (["verify", "{dir}/a-file"], 2, "not an artifact"),
    # data that is silently wrong
    "stray image beside class folders": ([*COMPILE[:-4], "--eval", "{dir}/mixed", "--out", OUT], 2, "at the top level"),
    "float array of raw 0..255 pixels": (["compile", "--target", "ort-cpu", "--model", "resnet20", "--calib",
                                          "{dir}/raw255.npy", "--out", OUT], 2, "look like raw 0..255 pixels"),
    "weights with corrupted tensor bytes": ([*COMPILE, "--weights", "{dir}/flipped.pth"], 2, "fails its CRC-32 check"),
    # the model description
    "card with an unknown key": ([*COMPILE, "--card", "{dir}/card-unknown.json"], 2, "unknown model-card key(s) colour"),
    "card that is not TOML": ([*COMPILE, "--card", "{dir}/card-broken.toml"], 2, "not a valid TOML model card"),
    "card mean for the wrong channels": ([*COMPILE, "--card", "{dir}/card-mean.json"], 2, "one value per channel"),
    "missing card": ([*COMPILE, "--card", "{dir}/nowhere.json"], 2, "cannot read the model card"),
    "classes against the checkpoint": ([*COMPILE, "--weights", "{dir}/good.pth", "--num-classes", "7"], 2,
                                       "fc.weight of good.pth has 10 rows"),
    "input too small for the stem": (["compile", "--target", "ort-cpu", "--model", "resnet18", "--input-size", "16",
                                      "--calib", "{calib}", "--out", OUT], 2, "at least 32x32"),
    "class names for another head": ([*COMPILE, "--class-names", "{dir}/names3.txt"], 2, "names 3 classes, the model has 10"),
    "unknown preset": ([*COMPILE, "--preset", "coco"], 2, "unknown preprocessing preset"),
    "card with a NaN mean": ([*COMPILE, "--card", "{dir}/card-nan.json"], 2, "mean must be finite numbers"),
    "CRLF/BOM card with a bad channel order": ([*COMPILE, "--card", "{dir}/card-crlf.toml"], 2, "channel order must be one of RGB, BGR"),
    "junk file with an image extension": ([*COMPILE[:-4], "--eval", "{dir}/junk", "--out", OUT], 2, "notes.jpg: not a readable image"),
    "labels file missing an image": ([*COMPILE[:-4], "--eval", "{dir}/flat", "--out", OUT], 2, "no label for 1 of the 1 images"),
    "--labels with an array": ([*COMPILE, "--labels", "{dir}/names3.txt"], 2, "--labels goes with a folder of images"),
    "pickled whole model": ([*COMPILE, "--weights", "{dir}/whole-model.pt"], 2, "torch.save(model.state_dict(), PATH)"),
    "no single prefix fits": ([*COMPILE, "--weights", "{dir}/two-halves.ckpt"], 2, "no single key prefix"),
    "run on a junk image": (["run", "{ort}", "--input", "{dir}/junk/notes.jpg"], 2, "not a readable image"),
    "bad input size": ([*COMPILE, "--input-size", "big"], 2, "input size must be N or HxW"),
    # artifacts that cannot be quietly altered
    "edited accuracy": (["verify", "{dir}/edited-accuracy"], 1, "manifest accuracy.fp32_top1 is 99.0, but report.json says"),
    "edited target arch": (["verify", "{dir}/edited-arch"], 1, "manifest target.arch is 'aarch64'"),
    "wrong digest": (["verify", "{ort}", "--digest", "sha256:" + "0" * 64], 1, "is not the expected sha256:0000"),
    "unsigned artifact, key given": (["verify", "{ort}", "--public-key", "{dir}/ed25519.pub"], 1, "not signed"),
    "signing key not ed25519": ([*COMPILE, "--sign-key", "{dir}/rsa.pem"], 2, "an ed25519 key is needed"),
    "signing key not a key": ([*COMPILE, "--sign-key", "{dir}/a-file"], 2, "not a PEM private key"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_leaves_nothing(corpus, case, tmp_path):
    args, code, text = CASES[case]
    args = [a.format(**corpus) for a in args]
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    before = sorted(p.name for p in corpus["dir"].iterdir())
    result = run_cli(*args, env={"TMPDIR": str(tmpdir)}, timeout=300)
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("edgeresnet: warning:")]
    assert len(lines) == 1 and lines[0].startswith("edgeresnet: error:"), result.stderr
    assert "Traceback" not in result.stderr and text in lines[0], lines[0]
    assert str(tmpdir) not in lines[0]  # never a temporary path the user did not choose
    assert sorted(p.name for p in corpus["dir"].iterdir()) == before  # no destination, staging folder or lock file
    assert _left_in(tmpdir) == []  # nothing left in the temporary directory


def test_corpus_covers_the_issue():
    assert len(CASES) >= 30


def test_elf_machine_against_the_target(tmp_path):
    """A library built for another machine than the manifest's target says is refused, with both named."""
    folder = tmp_path / "art"
    folder.mkdir()
    shutil.copy("/bin/true", folder / "model.so")  # an x86-64 ELF on this host
    write_manifest(folder, Manifest(
        edgeresnet_version="0", model=ModelRecord("m", "resnet20", None, None), input=InputRecord(1, "float32", "input"),
        calibration=CalibrationRecordEntry("minmax", 1, "x", None, 0), toolchain={},
        target=TargetRecord("rpi5", "tvm", "tvm", "", "aarch64", {}, ["model.so"])), {})
    with pytest.raises(CheckFailed, match=r"model.so is built for x86_64, but the manifest's target rpi5 is aarch64"):
        verify_folder(folder)


# --- clean process behaviour ------------------------------------------------------------------------------

def test_stale_staging_of_dead_processes_is_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".art.{dead.pid}.abc123.partial"
    live = tmp_path / f".art.{os.getpid()}.def456.partial"
    unrelated = tmp_path / f".other.{dead.pid}.x.partial"
    for folder in (stale, live, unrelated):
        folder.mkdir()
        (folder / "model.onnx").write_text("half")
    assert remove_stale_staging(tmp_path / "art") == [stale]
    assert not stale.exists() and live.exists() and unrelated.exists()


def test_a_held_destination_is_refused_not_raced(tmp_path):
    with atomic_directory(tmp_path / "art") as staging:
        (staging / "x").write_text("first")
        with pytest.raises(InputError, match=rf"another edgeresnet process \(pid {os.getpid()}\) is writing it now"):
            with atomic_directory(tmp_path / "art", force=True):
                pass
    assert (tmp_path / "art" / "x").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # the lock file went with the lock


def test_two_concurrent_compiles_to_one_out(tmp_path, small_data):
    out = tmp_path / "art"
    # The second process needs ~2 s to start and reach the lock; 64 evaluation images left the first only ~3 s
    # of work after taking it. 2048 leave it several times that, so the second meets the lock, not the result.
    rng = np.random.default_rng(1)
    evaluation = tmp_path / "eval.npz"
    np.savez(evaluation, images=rng.integers(0, 255, (2048, 32, 32, 3), dtype=np.uint8), labels=rng.integers(0, 10, 2048))
    command = [sys.executable, "-m", "edgeresnet.cli", "compile", "--target", "ort-cpu", "--model", "resnet20",
               "--calib", str(small_data["calib"]), "--eval", str(evaluation), "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / ".art.lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    first_out, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert f"another edgeresnet process (pid {first.pid}) is writing it now" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert run_cli("verify", str(out)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "art.manifest.sha256", "eval.npz"]


def test_sigterm_cleans_up_like_ctrl_c(tmp_path, small_data):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = tmp_path / "art"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeresnet.cli", "compile", "--target", "ort-cpu", "--model", "resnet20",
         "--calib", str(small_data["calib"]), "--eval", str(small_data["eval"]), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir)})
    deadline = time.time() + 120
    while not _left_in(tmpdir) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # SIGTERM while quantization's temporary folder exists
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]  # no artifact, no .partial, no lock
    assert _left_in(tmpdir) == []
