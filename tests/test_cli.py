"""edgeresnet/cli.py's error mapping: what the system refuses about a path the user named is bad input (exit 2,
one line naming the path), never an internal error."""

from __future__ import annotations

import errno
import os
import sys

import pytest
import torch

import edgeresnet
from edgeresnet import cli
from edgeresnet.models.resnet import build_resnet
from helpers import run_cli


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS])
def test_a_refused_path_is_bad_input_in_one_line(monkeypatch, capsys, code):
    def refused(*args, **kwargs):
        raise OSError(code, os.strerror(code), "/data/pictures/cat.jpg")

    monkeypatch.setattr(edgeresnet, "verify", refused)
    monkeypatch.setattr(sys, "argv", ["edgeresnet", "verify", "some-artifact"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"edgeresnet: error: /data/pictures/cat.jpg: {os.strerror(code)}\n"


def test_other_system_errors_stay_internal(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/dev/sda")

    monkeypatch.setattr(edgeresnet, "verify", broken)
    monkeypatch.setattr(sys, "argv", ["edgeresnet", "verify", "some-artifact"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 4 and "internal error" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_weights_are_refused_by_name(tmp_path):
    torch.save(build_resnet("resnet20").state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.pt").chmod(0)
    result = run_cli("export", "--model", "resnet20", "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "m.onnx"))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"edgeresnet: error: {tmp_path / 'w.pt'}: cannot read the weights (Permission denied)"]
