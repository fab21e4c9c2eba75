"""The model zoo: every network edgeresnet builds, and the weights that ship with it.

As in torchvision, weights carry their own metadata (preprocessing, measured
accuracy, how they were made, sha256) in a JSON file beside the .pt file.
Listing the zoo needs no torch; building or loading a network imports it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeresnet import DEFAULT_MODEL, schema
from edgeresnet.errors import InputError
from edgeresnet.preprocessing import CIFAR, IMAGENET, Preprocessing
from edgeresnet.schema import ModelSummary

from .architectures import ARCHITECTURES
from .description import ModelDescription, read_card

if TYPE_CHECKING:
    from .resnet import ResNet

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class WeightsMetrics:
    top1: float  # percent, on the test set
    top5: float
    test_images: int


@dataclass(frozen=True)
class WeightsCard:
    """The metadata JSON beside a weights file, as `edgeresnet train` writes it (the fields read here)."""

    name: str
    arch: str
    num_classes: int
    in_channels: int
    dataset: str  # where the training and test images came from
    preprocessing: dict[str, Any]  # Preprocessing's JSON form
    metrics: WeightsMetrics

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> "WeightsCard":
        return schema.from_json(cls, meta)


@dataclass(frozen=True)
class Weights:
    """A shipped weights file and the metadata JSON beside it."""

    file: Path

    @cached_property
    def meta(self) -> dict[str, Any]:
        return json.loads(self.file.with_suffix(".json").read_text())

    @cached_property
    def card(self) -> WeightsCard:
        return WeightsCard.from_dict(self.meta)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.card.preprocessing)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str
    num_classes: int
    in_channels: int
    preprocessing: Preprocessing
    weights: Weights | None = None

    def build(self, num_classes: int | None = None, in_channels: int | None = None) -> ResNet:
        import torch

        from .resnet import build_resnet

        # A fixed seed: an architecture without weights is the same network every
        # time, so builds from it are reproducible (and its weights are replaced anyway).
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build_resnet(self.arch, num_classes or self.num_classes, in_channels or self.in_channels)

    @property
    def default_source(self) -> str:
        if self.weights is not None:
            return f"weights metadata of {self.name}"
        return f"architecture default of {self.arch} ({ARCHITECTURES[self.arch].stem} preset)"


def _zoo() -> dict[str, ModelEntry]:
    entries = {}
    for arch, spec in ARCHITECTURES.items():
        preprocessing = IMAGENET if spec.stem == "imagenet" else CIFAR
        entries[arch] = ModelEntry(arch, arch, spec.default_classes, 3, preprocessing)
    for meta_file in sorted(WEIGHTS_DIR.glob("*.json")):
        weights = Weights(meta_file.with_suffix(".pt"))
        card = weights.card
        entries[card.name] = ModelEntry(card.name, card.arch, card.num_classes, card.in_channels, weights.preprocessing, weights)
    return entries


MODELS: dict[str, ModelEntry] = _zoo()


def get_entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


@dataclass
class LoadedModel:
    """A network in eval mode with what is known about it."""

    entry: ModelEntry
    module: ResNet
    weights_path: Path | None
    weights_sha256: str | None
    described: Preprocessing | None = None  # from a card/options/checkpoint; None: the entry's own
    sources: dict[str, str] = field(default_factory=dict)  # what each described value came from
    num_classes: int | None = None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def preprocessing(self) -> Preprocessing:
        return self.described or self.entry.preprocessing

    def summary(self) -> ModelSummary:
        """For the report and the manifest: what the model takes, and where each part of that came from."""
        return ModelSummary(self.num_classes or self.entry.num_classes, self.preprocessing.to_dict(), dict(self.sources))


# The smallest input whose last stage still sees one pixel: the stem and stages divide the side by this.
MIN_INPUT_SIDE = {"imagenet": 32, "cifar": 4}


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               description: ModelDescription | None = None, weights_key: str | None = None) -> LoadedModel:
    """Build `name` with the head and input its checkpoint and description give, and load the weights.

    The weights are read first (`checkpoint.py`: whichever framework wrote them), so a checkpoint
    that does not fit is the first error, before any check that depends on its head. Classes and
    input channels come from an option or the model card, else from the checkpoint's
    fc.weight/conv1.weight, else the entry's defaults; preprocessing from the options, the card or
    a preset, else the weights' metadata or the architecture's default (see description.py).
    """
    from edgeresnet.digest import sha256_file

    from .checkpoint import apply_state_dict, checkpoint_shape, read_checkpoint, select_state_dict
    from .description import resolve

    entry = get_entry(name)
    if weights_key is None and description is not None:
        weights_key = description.weights_key or (read_card(description.card).weights_key if description.card else None)
    path = Path(weights) if weights is not None else (entry.weights.file if entry.weights else None)
    state, sources = None, {}
    if path is not None:
        selected = select_state_dict(read_checkpoint(path), set(ARCHITECTURES[entry.arch].state_keys()), weights_key)
        state = selected.state
        sources["weights"] = f"tensors under {selected.prefix!r} of {path.name}" if selected.prefix else path.name
        if selected.notice:
            print(f"edgeresnet: {selected.notice}", file=sys.stderr)
    classes, channels = checkpoint_shape(state) if state is not None else (None, None)
    if state is not None and (classes is None or channels is None):
        # Without fc.weight/conv1.weight the head is unknown: the keys' own error comes before any class count.
        apply_state_dict(entry.build(), state, f"weights {path}")
    resolved = resolve(description, entry.preprocessing, entry.default_source, entry.num_classes,
                       classes, channels, path.name if path else None)
    stem = ARCHITECTURES[entry.arch].stem
    if min(resolved.preprocessing.input_size) < MIN_INPUT_SIDE[stem]:
        raise InputError(f"{entry.arch} needs an input of at least {MIN_INPUT_SIDE[stem]}x{MIN_INPUT_SIDE[stem]} "
                         f"pixels, not {'x'.join(map(str, resolved.preprocessing.input_size))}")
    module = entry.build(resolved.num_classes, resolved.channels)
    if state is not None:
        apply_state_dict(module, state, f"weights {path}")
    module.eval()
    return LoadedModel(entry, module, path, sha256_file(path) if path else None, resolved.preprocessing,
                       {**resolved.sources, **sources}, resolved.num_classes)


@dataclass(frozen=True)
class ModelRow:
    """One model of the zoo as `models --json` lists it (field order is the key order)."""

    name: str
    arch: str
    depth: int
    input: list[int]  # the input shape, channels first
    classes: int
    params: int
    macs: int
    flops: int
    weights: bool  # whether trained weights ship with it
    top1: float | None = field(default=None, metadata={"omit_none": True})  # shipped accuracy, with weights only
    dataset: str | None = field(default=None, metadata={"omit_none": True})


def describe_models() -> list[ModelRow]:
    """The zoo as rows: name, parameters, MACs and FLOPs at the model's input size, shipped accuracy."""
    rows = []
    for entry in MODELS.values():
        spec = ARCHITECTURES[entry.arch]
        params, macs = spec.cost(entry.num_classes, (entry.in_channels, *entry.preprocessing.input_size))
        card = entry.weights.card if entry.weights is not None else None
        rows.append(ModelRow(
            name=entry.name, arch=entry.arch, depth=spec.depth, input=list(entry.preprocessing.input_shape),
            classes=entry.num_classes, params=params, macs=macs, flops=2 * macs, weights=entry.weights is not None,
            top1=card.metrics.top1 if card else None, dataset=card.dataset if card else None,
        ))
    return rows


__all__ = ["DEFAULT_MODEL", "MODELS", "LoadedModel", "ModelDescription", "ModelEntry", "ModelRow", "read_card", "Weights", "WeightsCard", "describe_models", "get_entry", "load_model"]
