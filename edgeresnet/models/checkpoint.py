"""Reading weight files without running anyone's code, and applying them with one clear error."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from edgeresnet.errors import InputError

_WRAPPER_KEYS = ("state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pt/.pth file: bare, or under 'state_dict' or 'model'.

    `weights_only=True` makes torch's unpickler refuse anything but tensors and
    plain containers, so a checkpoint carrying code is rejected, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive; very old checkpoints are a bare pickle (protocol >= 2 starts with 0x80).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise InputError(f"{path}: not a readable PyTorch weights file (neither a torch.save archive nor a pickle)")
    if magic.startswith(b"PK\x03\x04"):
        _check_archive(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise InputError(f"{path}: refused to load, the file holds more than tensors (weights_only): {first_line}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable PyTorch weights file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InputError(f"{path}: expected a state dict of tensors (bare or under 'state_dict'/'model')")
    # Checkpoints saved from nn.DataParallel / DDP prefix every key with "module.".
    if all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    bad = [k for k, v in loaded.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{path}: weights hold NaN or Inf values in {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    return loaded


def _check_archive(path: Path) -> None:
    """Every member's CRC-32 against the zip directory: torch.load does not check it, so flipped tensor bytes load."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: not a readable PyTorch weights file (damaged zip archive: {exc})") from None
    if damaged is not None:
        raise InputError(f"{path}: damaged weights file, {damaged} fails its CRC-32 check (corrupted after it was saved)")


def checkpoint_shape(state_dict: dict[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """(classes, input channels) a ResNet state dict was trained with, read from fc.weight and conv1.weight."""
    fc, conv1 = state_dict.get("fc.weight"), state_dict.get("conv1.weight")
    classes = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None
    channels = int(conv1.shape[1]) if conv1 is not None and conv1.ndim == 4 else None
    return classes, channels


def apply_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly; name every missing key, unexpected key and shape conflict at once."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape conflicts", shapes)):
        if items:
            shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise InputError(f"{source} does not fit this model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
