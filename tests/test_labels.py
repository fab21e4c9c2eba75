"""Labels as data sets ship them (calibration/labels.py), and data folders as users lay them out."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from edgeresnet.calibration import FASHION_MNIST_CLASSES, load_fashion_mnist, open_dataset
from edgeresnet.errors import InputError
from edgeresnet.models import load_model
from edgeresnet.preprocessing import Preprocessing
from helpers import run_cli

GRAY = Preprocessing((28, 28), 1, (0.286,), (0.353,))


def _images(folder, count=12, split="test"):
    """Fashion-MNIST test images as files, PNG and JPEG mixed (JPEG at quality 100), with their labels."""
    images, labels = load_fashion_mnist(split)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(images[i]).save(folder / name, quality=100)
        names.append(name)
    return names, labels[:count]


@pytest.mark.parametrize("layout", ["index", "name", "header-name", "tsv", "stems", "windows", "excel-unicode", "pandas-floats"])
def test_csv_labels_beside_a_flat_folder(tmp_path, layout):
    names, labels = _images(tmp_path / "flat")
    if layout == "index":
        text = "".join(f"{n},{l}\n" for n, l in zip(names, labels))
    elif layout == "pandas-floats":  # a label column with a missing value becomes float: 3.0, 10.0
        text = ",filename,label\n" + "".join(f"{i},{n},{float(l)}\n" for i, (n, l) in enumerate(zip(names, labels)))
    elif layout == "name":
        text = "".join(f"{n},{FASHION_MNIST_CLASSES[l]}\n" for n, l in zip(names, labels))
    elif layout == "header-name":
        text = "label,filename\n" + "".join(f"{FASHION_MNIST_CLASSES[l]},{n}\n" for n, l in zip(names, labels))
    elif layout == "tsv":
        text = "image\tclass\n" + "".join(f"{n}\t{l}\n" for n, l in zip(names, labels))
    elif layout == "stems":
        text = "id,label\n" + "".join(f"{n.split('.')[0]},{l}\n" for n, l in zip(names, labels))
    elif layout == "excel-unicode":  # Excel's "Unicode Text": UTF-16 with its byte-order mark, tab-separated, CRLF
        text = "filename\tlabel\r\n" + "".join(f"{n}\t{l}\r\n" for n, l in zip(names, labels))
    else:
        text = "\ufefffilename,label\r\n" + "".join(f"{n},{l}\r\n" for n, l in zip(names, labels))
    labels_file = tmp_path / "flat" / ("labels.tsv" if layout in ("tsv", "excel-unicode") else "labels.csv")
    labels_file.write_text(text, encoding="utf-16" if layout == "excel-unicode" else "utf-8")
    named = GRAY.__class__(**{**GRAY.__dict__, "class_names": FASHION_MNIST_CLASSES})
    data = open_dataset(str(tmp_path / "flat"), named)
    assert data.labels.tolist() == labels.tolist(), layout
    assert data.labels_from.startswith(str(labels_file))


def test_labels_option_and_the_file_beside_the_folder(tmp_path):
    names, labels = _images(tmp_path / "val")
    (tmp_path / "val.csv").write_text("".join(f"{n},{l}\n" for n, l in zip(names, labels)))
    assert open_dataset(str(tmp_path / "val"), GRAY).labels.tolist() == labels.tolist()
    (tmp_path / "elsewhere.csv").write_text("".join(f"{n},{(l + 1) % 10}\n" for n, l in zip(names, labels)))
    given = open_dataset(str(tmp_path / "val"), GRAY, labels=str(tmp_path / "elsewhere.csv"))
    assert given.labels.tolist() == ((labels + 1) % 10).tolist()


def test_names_not_in_the_model_take_sorted_order(tmp_path):
    names, _ = _images(tmp_path / "flat", count=4)
    (tmp_path / "flat" / "labels.csv").write_text("".join(f"{n},{k}\n" for n, k in zip(names, ["zebra", "ant", "zebra", "bee"])))
    data = open_dataset(str(tmp_path / "flat"), GRAY)
    assert data.class_names == ("ant", "bee", "zebra") and data.labels.tolist() == [2, 0, 2, 1]


@pytest.mark.parametrize("text, message", [
    ("img000.jpg,1\n", "no label for 11 of the 12 images"),
    ("img000.jpg\n" * 12, "rows are filename,label"),
    ("".join(f"img{i:03d}.{'png' if i % 2 else 'jpg'},-1\n" for i in range(12)), "0 or more"),
    ("".join(f"img{i:03d}.{'png' if i % 2 else 'jpg'},{i / 2}\n" for i in range(12)), "a whole number 0 or more, not '0.5'"),
    ("".join(f"img{i:03d}.{'png' if i % 2 else 'jpg'},nan\n" for i in range(12)), "not 'nan'"),
])
def test_bad_labels_files_say_why(tmp_path, text, message):
    _images(tmp_path / "flat")
    (tmp_path / "flat" / "labels.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        open_dataset(str(tmp_path / "flat"), GRAY)


def test_labels_need_a_folder(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "l.csv").write_text("a,1\n")
    with pytest.raises(InputError, match="--labels goes with a folder of images"):
        open_dataset(str(tmp_path / "x.npy"), GRAY, labels=str(tmp_path / "l.csv"))


def test_folders_as_users_lay_them_out(tmp_path):
    """Hidden files and folders skipped, a symlinked class folder followed, one wrapper folder descended."""
    root = tmp_path / "download" / "dataset"
    _images(root / "shirt", count=3)
    _images(tmp_path / "elsewhere" / "bag", count=2)
    os.symlink(tmp_path / "elsewhere" / "bag", root / "bag")
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / ".ipynb_checkpoints" / "x.png")
    (root / "shirt" / "._img000.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    data = open_dataset(str(tmp_path / "download"), GRAY)
    assert data.class_names == ("bag", "shirt") and data.labels.tolist() == [0, 0, 1, 1, 1]


@pytest.mark.slow
def test_lightning_checkpoint_json_names_and_csv_labels_compile_like_class_folders(tmp_path):
    """The issue's user: a Lightning .ckpt, classes.json, a flat folder of PNG and JPEG with labels.csv by name.
    FP32 and INT8 top-1 are reported, identical to the class-folder layout of the same files."""
    state = load_model("resnet20-fmnist").module.state_dict()
    torch.save({"epoch": 9, "state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "last.ckpt")
    classes = [name.replace("/", "-") for name in FASHION_MNIST_CLASSES]  # usable as folder names
    (tmp_path / "classes.json").write_text(json.dumps(classes))
    names, labels = _images(tmp_path / "flat", count=64)
    (tmp_path / "flat" / "labels.csv").write_text(
        "filename,label\n" + "".join(f"{n},{classes[l]}\n" for n, l in zip(names, labels)))
    for name, label in zip(names, labels):
        target = tmp_path / "folders" / classes[label]
        target.mkdir(parents=True, exist_ok=True)
        os.link(tmp_path / "flat" / name, target / name)
    reports = {}
    for layout in ("flat", "folders"):
        result = run_cli("compile", "--target", "ort-cpu", "--model", "resnet20", "--weights", str(tmp_path / "last.ckpt"),
                         "--class-names", str(tmp_path / "classes.json"), "--input-size", "28", "--mean", "0.286",
                         "--std", "0.353", "--calib", "fashion-mnist:train", "--calib-samples", "64",
                         "--eval", str(tmp_path / layout), "--out", str(tmp_path / f"art-{layout}"), timeout=900)
        assert result.returncode == 0, result.stderr
        assert "weights: the tensors under 'state_dict.model.' of last.ckpt" in result.stderr
        reports[layout] = json.loads((tmp_path / f"art-{layout}" / "report.json").read_text())
    flat, folders = reports["flat"], reports["folders"]
    assert flat["fp32"]["top1"] >= 80 and flat["drop_pts"] is not None
    assert (flat["fp32"]["top1"], flat["int8"]["top1"]) == (folders["fp32"]["top1"], folders["int8"]["top1"])
    assert flat["class_names"] == classes
    manifest = json.loads((tmp_path / "art-flat" / "manifest.json").read_text())
    assert manifest["input"]["class_names"] == classes


def test_label_names_partly_outside_the_models_classes_are_refused(tmp_path):
    names, _ = _images(tmp_path / "flat", count=3)
    (tmp_path / "flat" / "labels.csv").write_text("".join(f"{n},{k}\n" for n, k in zip(names, ["Bag", "Trouser", "Trousers"])))
    named = GRAY.__class__(**{**GRAY.__dict__, "class_names": FASHION_MNIST_CLASSES})
    with pytest.raises(InputError, match="label.s. 'Trousers' are not among the model's 10 class names"):
        open_dataset(str(tmp_path / "flat"), named)


def test_file_names_with_commas_quotes_and_newlines_as_pandas_writes_them(tmp_path):
    import csv

    folder = tmp_path / "flat"
    folder.mkdir()
    names = ["a, b.png", 'say "hi".png', "two\nlines.png", "plain.png"]
    for name in names:
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / name)
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label"])
        writer.writerows([name, i] for i, name in enumerate(names))
    data = open_dataset(str(folder), GRAY)
    assert dict(zip(sorted(names), data.labels.tolist())) == {name: i for i, name in enumerate(names)}
