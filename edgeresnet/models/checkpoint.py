"""Reading weight files as frameworks save them, without running anyone's code, and applying them with one clear error.

A checkpoint is read whole (a torch.save archive or pickle with `weights_only=True`, or a
safetensors file) and flattened: nested dictionaries become dotted key paths, so a
Lightning `.ckpt` ({"state_dict": {"model.conv1.weight": ...}}) holds `state_dict.model.conv1.weight`.
The weights are then the tensors under the one key prefix that gives every key the network
needs: "" for a bare state dict, `module.` (DataParallel/DDP), `_orig_mod.` (torch.compile),
`state_dict.`, `model.`, `model_state_dict.`, `state_dict.model.` (Lightning), and so on.
EMA copies (`state_dict_ema.`, `model_ema.`, `ema.module.` ...) fit too: the plain weights are
used unless `weights_key` picks the copy.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgeresnet.errors import InputError

SAFETENSORS_SUFFIX = ".safetensors"
SAVE_STATE_DICT = "save the weights with `torch.save(model.state_dict(), PATH)`"
# BatchNorm fills this counter in when it is missing (older torchvision checkpoints lack it); it is no weight.
OPTIONAL_SUFFIX = ".num_batches_tracked"


@dataclass(frozen=True)
class Checkpoint:
    """Every tensor a weights file holds, by its dotted key path."""

    path: Path
    tensors: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Selected:
    """The state dict taken from a checkpoint, and the one line that says which tensors were taken (None: all, as saved)."""

    state: dict[str, torch.Tensor]
    prefix: str
    notice: str | None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """All tensors of a .pt/.pth/.ckpt (torch.save) or .safetensors file.

    `weights_only=True` makes torch's unpickler refuse anything but tensors and plain
    containers, so a checkpoint carrying code is rejected, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {'a folder, not a weights file' if path.is_dir() else 'weights file not found'}")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the weights ({exc.strerror or exc})") from None
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return Checkpoint(path, _read_safetensors(path))
    # torch.save writes a zip archive; very old checkpoints are a bare pickle (protocol >= 2 starts with 0x80).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise InputError(f"{path}: not a readable weights file (neither a torch.save archive, a pickle nor "
                         f"a {SAFETENSORS_SUFFIX} file)")
    if magic.startswith(b"PK\x03\x04"):
        _check_archive(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise InputError(f"{path}: refused to load: it holds Python objects{what}, not only tensors (a whole pickled "
                         f"model runs code when loaded); {SAVE_STATE_DICT}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable PyTorch weights file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    tensors: dict[str, torch.Tensor] = {}
    _flatten(loaded, "", tensors)
    if not tensors:
        raise InputError(f"{path}: holds no tensors; {SAVE_STATE_DICT}")
    return Checkpoint(path, tensors)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not tensors:
        raise InputError(f"{path}: holds no tensors")
    return dict(tensors)


def _flatten(value: object, prefix: str, into: dict[str, torch.Tensor]) -> None:
    """Tensors of nested dictionaries under dotted key paths; lists (optimizer states) and scalars are skipped."""
    if isinstance(value, torch.Tensor):
        into[prefix[:-1]] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}{key}.", into)


def _check_archive(path: Path) -> None:
    """Every member's CRC-32 against the zip directory: torch.load does not check it, so flipped tensor bytes load."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: not a readable PyTorch weights file (damaged zip archive: {exc})") from None
    if damaged is not None:
        raise InputError(f"{path}: damaged weights file, {damaged} fails its CRC-32 check (corrupted after it was saved)")


def _is_ema(prefix: str) -> bool:
    return "ema" in re.split(r"[._]", prefix.lower())


def select_state_dict(checkpoint: Checkpoint, expected: set[str], weights_key: str | None = None) -> Selected:
    """The tensors under the one key prefix that gives every key in `expected` (a network's state-dict keys).

    `weights_key` names the prefix; otherwise it is found: the only one that fits, or the only
    non-EMA one when an EMA copy fits too. Anything else is refused, naming the prefixes found.
    """
    name = checkpoint.path.name
    required = {k for k in expected if not k.endswith(OPTIONAL_SUFFIX)}
    counts: dict[str, int] = {}
    for key in checkpoint.tensors:
        for wanted in required:
            if key.endswith(wanted) and (len(key) == len(wanted) or key[-len(wanted) - 1] == "."):
                prefix = key[: len(key) - len(wanted)]
                counts[prefix] = counts.get(prefix, 0) + 1
    fitting = sorted(p for p, n in counts.items() if n == len(required))
    option = "--weights-key"
    notice: str | None
    if weights_key is not None:
        prefix = weights_key if weights_key == "" or weights_key.endswith(".") else weights_key + "."
        if prefix not in counts:
            known = ", ".join(repr(p) for p in sorted(counts, key=lambda p: -counts[p])[:5]) or "none"
            raise InputError(f"{name}: no weights under {weights_key!r}; prefixes found: {known}")
        chosen, notice = prefix, f"weights: the tensors under {prefix!r} of {name} ({option} given)"
    elif len(fitting) == 1:
        chosen = fitting[0]
        notice = f"weights: the tensors under {chosen!r} of {name}, with that prefix stripped" if chosen else None
    elif fitting and len([p for p in fitting if not _is_ema(p)]) == 1:
        chosen = next(p for p in fitting if not _is_ema(p))
        ema = [p for p in fitting if _is_ema(p)]
        notice = (f"weights: the tensors under {chosen!r} of {name}; it also holds an EMA copy under "
                  f"{', '.join(map(repr, ema))}: pass {option} {ema[0] if len(ema) == 1 else 'PREFIX'} to use it instead")
    elif fitting:
        raise InputError(f"{name}: several complete sets of weights, under "
                         f"{', '.join(repr(p) for p in fitting)}; pass {option} PREFIX to choose one")
    else:
        # Prefixes that hold at least half the network: a suffix match here and there is chance, not a copy.
        ranked = sorted((p for p in counts if 2 * counts[p] >= len(required)), key=lambda p: (-counts[p], p))
        if len(ranked) > 1:
            found = ", ".join(f"{p!r} ({counts[p]} of {len(required)} keys)" for p in ranked[:4])
            raise InputError(f"{name}: no single key prefix gives every weight this network needs; prefixes found: "
                             f"{found}; pass {option} PREFIX if one is right, or check --model")
        chosen, notice = (ranked[0] if ranked else ""), None
    state = {k[len(chosen):]: v for k, v in checkpoint.tensors.items() if k.startswith(chosen)}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{name}: weights hold NaN or Inf values in {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    return Selected(state, chosen, notice)


def read_state_dict(path: str | Path, expected: set[str] | None = None, weights_key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict of a weights file: for `expected` keys (see `select_state_dict`), else as saved."""
    checkpoint = read_checkpoint(path)
    if expected is None:
        expected = set(checkpoint.tensors)
    return select_state_dict(checkpoint, expected, weights_key).state


def checkpoint_shape(state_dict: dict[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """(classes, input channels) a ResNet state dict was trained with, read from fc.weight and conv1.weight."""
    fc, conv1 = state_dict.get("fc.weight"), state_dict.get("conv1.weight")
    classes = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None
    channels = int(conv1.shape[1]) if conv1 is not None and conv1.ndim == 4 else None
    return classes, channels


def apply_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly; name every missing key, unexpected key and shape conflict at once."""
    expected = model.state_dict()
    missing = sorted(k for k in set(expected) - set(state_dict) if not k.endswith(OPTIONAL_SUFFIX))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    # A float weight saved as integers (a quantized or packed checkpoint) would be cast, not refused, by load_state_dict.
    integers = [f"{k} ({str(state_dict[k].dtype).removeprefix('torch.')})" for k in expected
                if k in state_dict and expected[k].is_floating_point() and not state_dict[k].is_floating_point()]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape conflicts", shapes),
                         ("integer tensors for float weights (a quantized checkpoint? save the float model's state dict)", integers)):
        if items:
            shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise InputError(f"{source} does not fit this model: " + "; ".join(problems))
    complete = {k: state_dict.get(k, expected[k]) for k in expected}  # a missing BatchNorm counter stays the model's
    model.load_state_dict(complete, strict=True)
