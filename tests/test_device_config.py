"""verify holds each backend's device config (what its runner on the board reads) to the manifest, even when
the config was re-hashed into the manifest after an edit."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from helpers import run_cli


@pytest.mark.parametrize("fixture,config,field,value,message", [
    ("jetson_artifact", "bundle.json", "target", "jetson-agx-orin", "bundle.json was built for 'jetson-agx-orin'"),
    ("jetson_artifact", "bundle.json", "input_shape", [1, 3, 64, 64], "differs from bundle.json's input shape"),
])
def test_an_edited_and_rehashed_device_config_fails_verify(fixture, config, field, value, message, request, tmp_path):
    artifact = tmp_path / "artifact"
    shutil.copytree(request.getfixturevalue(fixture), artifact, ignore=shutil.ignore_patterns("__pycache__"))
    assert run_cli("verify", str(artifact)).returncode == 0
    settings = json.loads((artifact / config).read_text())
    settings[field] = value
    (artifact / config).write_text(json.dumps(settings, indent=2) + "\n")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"][config] = hashlib.sha256((artifact / config).read_bytes()).hexdigest()
    (artifact / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    result = run_cli("verify", str(artifact))
    assert result.returncode == 1 and message in result.stderr, result.stderr
