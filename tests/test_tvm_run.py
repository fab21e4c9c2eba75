"""The TVM artifact's run.py where its runtime is missing: one line, exit 3, nothing written.

(Its --check on the board's CPU model runs in tests/test_golden.py, through the native runner.)
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeresnet.targets.base import copy_device_support

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def artifact(tmp_path):
    """The files run.py imports, as an artifact ships them, and a deploy.json."""
    folder = tmp_path / "resnet20-rpi5"
    folder.mkdir()
    shutil.copy(REPO / "targets" / "tvm" / "templates" / "run.py", folder)
    copy_device_support(folder)
    (folder / "deploy.json").write_text(json.dumps({"threads": 2, "library": "model.so", "target": "rpi5"}))
    return folder


def missing(tmp_path: Path, package: str) -> Path:
    """A folder for PYTHONPATH where importing `package` fails as on a board without it."""
    folder = tmp_path / f"without-{package}"
    (folder / package).mkdir(parents=True)
    (folder / package / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{package}'\", name='{package}')\n")
    return folder


@pytest.mark.parametrize("package,message", [
    ("tvm", "run.py: TVM's runtime cannot be imported (No module named 'tvm'); pip install apache-tvm"),
    ("numpy", "run.py: the numpy Python package is missing (pip install apache-tvm"),
])
def test_missing_runtime_exits_3_with_one_line(artifact, tmp_path, package, message):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(missing(tmp_path, package))}
    result = subprocess.run([sys.executable, str(artifact / "run.py"), "--check"], capture_output=True, text=True,
                            cwd=tmp_path, env=env)
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message)
    assert not artifact.with_name(artifact.name + ".device").exists() and not (artifact / "__pycache__").exists()
