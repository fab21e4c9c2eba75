"""What a user says about their own model: head, input and preprocessing, from options or a model card.

A model card is a small JSON or TOML file (like torchvision's weight metadata) with any of
these keys; options given on the command line override it, and it overrides the defaults:

    preset = "imagenet"            # imagenet | cifar | unit: a starting point for the keys below
    num_classes = 37               # default: read from the checkpoint's fc.weight
    input_size = [224, 224]        # or one number for a square input
    channels = 3                   # default: read from the checkpoint's conv1.weight
    mean = [0.485, 0.456, 0.406]   # per channel, on pixels scaled by pixel_scale
    std = [0.229, 0.224, 0.225]
    pixel_scale = 1                # 1: mean/std on [0, 1] pixels; 255: on 0..255 pixels
    resize = 256                   # shorter side, then center crop to input_size; omit (or 0) to resize straight
    channel_order = "RGB"          # or "BGR"; mean/std are in this order (a Caffe model's mean is B, G, R)
    interpolation = "bilinear"     # the resize filter: bilinear | bicubic | lanczos | box | hamming | nearest
    antialias = true               # false: sample without antialiasing when shrinking (OpenCV; nearest, bilinear)
    class_names = ["cat", "dog"]   # or {"0": "cat", "1": "dog"} (id2label), or class_names_file = "classes.txt"
                                   # (one per line, a JSON list or a JSON id2label object; beside the card)
    weights_key = "state_dict_ema" # which tensors of the checkpoint (a key prefix; default: found)

A JSON null is the same as leaving the key out; channel_order, interpolation and preset take any letter
case; the file may be UTF-8 (with or without a byte-order mark) or UTF-16/32 with one (`edgeresnet.text_files`).

Every resolved value records where it came from (the card, an option, the checkpoint, the
weights' metadata, or the architecture's default), for the report and the manifest.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgeresnet.errors import InputError
from edgeresnet.preprocessing import INTERPOLATIONS, PRESETS, Preprocessing
from edgeresnet.text_files import read_text

CARD_KEYS = ("preset", "num_classes", "input_size", "channels", "mean", "std", "pixel_scale", "resize",
             "channel_order", "interpolation", "antialias", "class_names", "class_names_file", "weights_key")
MAX_INPUT_SIDE = 4096
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class ModelDescription:
    """Everything optional: None means "not said", and the next source down decides."""

    card: str | None = None
    preset: str | None = None
    num_classes: int | None = None
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pixel_scale: float | None = None
    resize: int | None = None  # 0: resize straight to the input size
    channel_order: str | None = None
    interpolation: str | None = None
    antialias: bool | None = None
    class_names: tuple[str, ...] | None = None
    class_names_file: str | None = None
    weights_key: str | None = None

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise InputError(f"unknown preprocessing preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.num_classes is not None and not 1 <= self.num_classes <= MAX_CLASSES:
            raise InputError(f"the number of classes must be 1..{MAX_CLASSES}, not {self.num_classes}")
        if self.input_size is not None and not all(1 <= v <= MAX_INPUT_SIDE for v in self.input_size):
            raise InputError(f"input size must be 1..{MAX_INPUT_SIDE} pixels a side, not {list(self.input_size)}")
        if self.resize is not None and not 0 <= self.resize <= MAX_INPUT_SIDE:
            raise InputError(f"resize must be 0 (straight) or a shorter side of 1..{MAX_INPUT_SIDE} pixels, not {self.resize}")
        if self.channels is not None and self.channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, not {self.channels}")
        for key in ("mean", "std"):
            if getattr(self, key) is not None and not all(math.isfinite(v) for v in getattr(self, key)):
                raise InputError(f"{key} must be finite numbers, not {list(getattr(self, key))}")
        if self.pixel_scale is not None and not (math.isfinite(self.pixel_scale) and self.pixel_scale > 0):
            raise InputError(f"pixel scale must be a positive number (1 or 255), not {self.pixel_scale}")
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")

    @property
    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("card", "weights_key")
                and getattr(self, f.name) is not None}

    @classmethod
    def parse_size(cls, text: str) -> tuple[int, int]:
        """'96', '96x96' or '224,160' (height, width)."""
        parts = text.lower().replace("x", ",").split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise InputError(f"input size must be N or HxW, not {text!r}") from None
        if len(values) not in (1, 2):
            raise InputError(f"input size must be N or HxW, not {text!r}")
        return (values[0], values[-1])

    @classmethod
    def parse_floats(cls, text: str, what: str) -> tuple[float, ...]:
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"{what} must be comma-separated numbers, not {text!r}") from None


def read_card(path: str | Path) -> ModelDescription:
    """A model card (JSON, or TOML by its .toml suffix) as a description; unknown keys are refused."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a model card")
    text = read_text(path, "model card")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, RecursionError) as exc:  # decode errors, integers over Python's digit limit, deep nesting
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON (no comments or trailing commas; a TOML card may have comments)"
        raise InputError(f"{path}: not a valid {kind} model card ({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a model card is a table of keys ({', '.join(CARD_KEYS)})")
    # "_..." keys are comments (JSON has none); a null value says nothing, as if the key were left out.
    data = {k: v for k, v in data.items() if not str(k).startswith("_") and v is not None}
    unknown = sorted(set(data) - set(CARD_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown model-card key(s) {', '.join(unknown)}; known: {', '.join(CARD_KEYS)}")
    try:
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("num_classes", "channels"):
                values[key] = _integer(value, key)
            elif key == "input_size":
                size = [value] if isinstance(value, (int, float)) else value
                if not isinstance(size, list) or len(size) not in (1, 2):
                    raise ValueError("input_size is N or [height, width]")
                values[key] = (_integer(size[0], key), _integer(size[-1], key))
            elif key in ("mean", "std"):
                values[key] = tuple(_number(v, key) for v in (value if isinstance(value, list) else [value]))
            elif key == "pixel_scale":
                values[key] = _number(value, key)
            elif key == "antialias":
                if not isinstance(value, bool):
                    raise ValueError(f"antialias is true or false, not {value!r}")
                values[key] = value
            elif key == "resize":
                values[key] = 0 if value in (None, 0, False) else _integer(value, key)
            elif key == "class_names":
                values[key] = class_names_of(value)
            elif key == "class_names_file":
                values[key] = str(path.parent / _text(value, key))
            elif key == "channel_order":
                values[key] = _text(value, key).upper()
            elif key in ("interpolation", "preset"):
                values[key] = _text(value, key).lower()
            elif key == "weights_key":  # "" is a key prefix too: the checkpoint's top level
                if not isinstance(value, str):
                    raise ValueError(f"weights_key must be a string, not {value!r}")
                values[key] = value
            else:
                values[key] = _text(value, key)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{path}: bad model card value: {exc}") from None
    try:
        return ModelDescription(card=str(path), **values)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be finite numbers, not {value!r}")
    return float(value)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string, not {value!r}")
    return value.strip()


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or int(value) != value:
        raise ValueError(f"{key} must be an integer, not {value!r}")
    return int(value)


def class_names_of(value: Any) -> tuple[str, ...]:
    """A list of names, or an object from class index to name (Hugging Face's id2label), as a tuple in class order."""
    if isinstance(value, dict):
        try:
            index = {int(k): v for k, v in value.items()}
        except (TypeError, ValueError):
            raise ValueError("class names as an object map class indices (0, 1, ...) to names") from None
        if sorted(index) != list(range(len(index))):
            raise ValueError(f"class names as an object need every index 0..{len(index) - 1} once, "
                             f"not {sorted(index)[:8]}")
        value = [index[i] for i in range(len(index))]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("class names are a non-empty list of names or an object from index to name")
    return tuple(v.strip() for v in value)


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names from a file: one per line, a JSON list, or a JSON object from index to name (id2label).

    A JSON file may hold the names under "id2label" or "class_names" (a Hugging Face config.json)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a class-names file")
    text = read_text(path, "class names")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            value = json.loads(text)
            if isinstance(value, dict):
                value = next((value[k] for k in ("id2label", "class_names") if k in value), value)
            return class_names_of(value)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"{path}: not a JSON list of class names or an object from index to name "
                             f"({str(exc).splitlines()[0]})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: no class names (one per line, a JSON list, or a JSON object from index to name)")
    return tuple(names)


def merged(options: ModelDescription | None) -> tuple[ModelDescription, dict[str, str]]:
    """The card (if any) overridden by the options, and which of the two each given value came from."""
    options = options or ModelDescription()
    card = read_card(options.card) if options.card else ModelDescription()
    sources = {key: f"model card {options.card}" for key in card.given}
    sources.update({key: "command-line option" for key in options.given})
    combined = replace(card, **options.given, card=options.card)
    if combined.class_names is None and combined.class_names_file:
        combined = replace(combined, class_names=read_class_names(combined.class_names_file))
        sources["class_names"] = f"{sources.pop('class_names_file')} ({combined.class_names_file})"
    return combined, sources


def card_of(preprocessing: Preprocessing, num_classes: int) -> dict[str, Any]:
    """The resolved description as a model card (what `--card` reads back), for the artifact."""
    return {
        "_about": "How this model takes its input; edgeresnet compile --card reads it back. mean and std are per "
                  f"network input channel, in channel_order ({'B, G, R' if preprocessing.channel_order == 'BGR' else 'R, G, B'} "
                  f"for 3 channels), on pixels scaled by pixel_scale; images are resized with interpolation.",
        "num_classes": num_classes, "input_size": list(preprocessing.input_size), "channels": preprocessing.channels,
        "mean": list(preprocessing.mean), "std": list(preprocessing.std), "pixel_scale": preprocessing.pixel_scale,
        "channel_order": preprocessing.channel_order, "resize": preprocessing.resize or 0,
        "interpolation": preprocessing.interpolation, "antialias": preprocessing.antialias,
        "class_names": list(preprocessing.class_names) or None,
    }


# Where each part of the preprocessing came from is recorded apart (sources["mean_std"], ...), for the console line.
PREPROCESSING_PARTS = ("mean_std", "pixel_scale", "channel_order", "resize")
PART_OF = {"mean": "mean_std", "std": "mean_std", "interpolation": "resize", "antialias": "resize"}


def describe_sources(preprocessing: Preprocessing, sources: dict[str, str]) -> str:
    """One line: the preprocessing and where mean/std, pixel scale, channel order and resize came from."""
    def numbers(values: tuple[float, ...]) -> str:
        return ",".join(f"{v:g}" for v in values)

    height, width = preprocessing.input_size
    geometry = (f"shorter side to {preprocessing.resize} then center crop {height}x{width}" if preprocessing.resize
                else f"straight to {height}x{width}")
    filter_ = preprocessing.interpolation + ("" if preprocessing.antialias else ", no antialias")
    parts = [(f"mean {numbers(preprocessing.mean)} std {numbers(preprocessing.std)}", "mean_std"),
             (f"pixel scale {preprocessing.pixel_scale:g}", "pixel_scale"),
             (f"channel order {preprocessing.channel_order if preprocessing.channels == 3 else 'gray'}", "channel_order"),
             (f"resize {geometry} ({filter_})", "resize")]
    origins = {sources.get(key, "defaults") for _, key in parts}
    if len(origins) == 1:
        return f"preprocessing: {', '.join(text for text, _ in parts)}; all from {origins.pop()}"
    return "preprocessing: " + "; ".join(f"{text} from {sources.get(key, 'defaults')}" for text, key in parts)


@dataclass(frozen=True)
class Resolved:
    num_classes: int
    channels: int
    preprocessing: Preprocessing
    sources: dict[str, str]  # field -> where its value came from


def resolve(description: ModelDescription | None, base: Preprocessing, base_source: str, base_classes: int,
            checkpoint_classes: int | None, checkpoint_channels: int | None, checkpoint_name: str | None) -> Resolved:
    """Classes, channels and preprocessing: options > card > checkpoint > weights metadata / architecture default."""
    given, sources = merged(description)
    if given.preset:
        base, base_source = PRESETS[given.preset], f"preset {given.preset} ({sources['preset']})"
    resolved_sources = {"normalization": base_source, "input_size": base_source, "class_names": base_source,
                        **{part: base_source for part in PREPROCESSING_PARTS}}

    classes, classes_source = base_classes, base_source
    if checkpoint_classes is not None:
        classes, classes_source = checkpoint_classes, f"fc.weight of {checkpoint_name}"
    if given.num_classes is not None:
        if checkpoint_classes is not None and given.num_classes != checkpoint_classes:
            raise InputError(f"{sources['num_classes']} says {given.num_classes} classes, but fc.weight of "
                             f"{checkpoint_name} has {checkpoint_classes} rows")
        classes, classes_source = given.num_classes, sources["num_classes"]
    channels, channels_source = base.channels, base_source
    if checkpoint_channels is not None:
        channels, channels_source = checkpoint_channels, f"conv1.weight of {checkpoint_name}"
    if given.channels is not None:
        if checkpoint_channels is not None and given.channels != checkpoint_channels:
            raise InputError(f"{sources['channels']} says {given.channels} channels, but conv1.weight of "
                             f"{checkpoint_name} takes {checkpoint_channels}")
        channels, channels_source = given.channels, sources["channels"]

    mean, std = base.mean, base.std
    if channels != base.channels and given.mean is None:
        # A 3-channel default for a 1-channel network (or back): the channel average, and said so.
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
        resolved_sources["normalization"] = resolved_sources["mean_std"] = (
            f"{base_source}, averaged over channels for {channels}-channel input")
    changes: dict[str, Any] = {"channels": channels, "mean": mean, "std": std}
    for key in ("input_size", "mean", "std", "pixel_scale", "channel_order", "resize", "interpolation", "antialias"):
        value = getattr(given, key)
        if value is None:
            continue
        changes[key] = (None if value == 0 else value) if key == "resize" else value
        resolved_sources["input_size" if key == "input_size" else "normalization"] = sources[key]
        resolved_sources[PART_OF.get(key, key)] = sources[key]
    if given.input_size is not None and given.resize is None and base.resize is not None:
        # A preset's resize (256 for 224) scales with the input: keep its ratio.
        changes["resize"] = round(base.resize * min(given.input_size) / min(base.input_size))
    names = given.class_names if given.class_names is not None else base.class_names
    if given.class_names is not None:
        resolved_sources["class_names"] = sources["class_names"]
    if names and len(names) != classes:
        if given.class_names is not None:
            raise InputError(f"{resolved_sources['class_names']} names {len(names)} classes, the model has {classes}")
        names, resolved_sources["class_names"] = (), "none (the default names do not fit this head)"
    if not names:
        resolved_sources["class_names"] = "none given (predictions are class indices)"
    changes["class_names"] = tuple(names)
    try:
        preprocessing = replace(base, **changes)
    except ValueError as exc:
        raise InputError(f"preprocessing: {exc}") from None
    resolved_sources.update(num_classes=classes_source, channels=channels_source)
    return Resolved(classes, channels, preprocessing, resolved_sources)
