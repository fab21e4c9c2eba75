"""device_io.py, shipped in every artifact: labelled folders, and where device outputs go."""

import sys
from argparse import Namespace

import pytest


@pytest.fixture
def device_io(jetson_artifact):
    sys.path.insert(0, str(jetson_artifact))  # the shipped device_io.py beside the shipped preprocessing.py
    try:
        import device_io
    finally:
        sys.path.pop(0)
    return device_io


def test_labelled_folders_map_like_the_host(device_io):
    classes = ["T-shirt/top", "Trouser", "Pullover"]
    assert device_io.class_index_of_folder("T-shirt_top", classes) == 0 and device_io.class_index_of_folder("2", classes) == 2
    assert device_io.is_image_name("scan.TGA") and not device_io.is_image_name("notes.txt")


def test_device_folder_beside_the_artifact_or_where_the_user_says(device_io, tmp_path, capsys):
    artifact = tmp_path / "resnet20-jetson"
    artifact.mkdir()
    assert device_io.device_folder(artifact) == tmp_path / "resnet20-jetson.device"
    assert device_io.device_folder(artifact, tmp_path / "out") == tmp_path / "out"
    args = Namespace(report=None, device_dir=None)
    assert device_io.report_destination(args, artifact, "device-report.json") == tmp_path / "resnet20-jetson.device" / "device-report.json"
    args = Namespace(report=str(tmp_path / "r.json"), device_dir=None)
    assert device_io.report_destination(args, artifact, "device-report.json") == tmp_path / "r.json"
    for inside in (artifact, artifact / "engines"):
        with pytest.raises(SystemExit) as refused:
            device_io.device_folder(artifact, inside)
        assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.count("never mix with the shipped files") == 2
