"""How raw pixels become the tensor a model expects.

The spec travels with the weights (metadata JSON), into every artifact's manifest,
and into the on-device runners, so the device preprocesses exactly as we
calibrated and evaluated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    input_size: tuple[int, int]  # (height, width) fed to the network
    channels: int  # 1 (grayscale) or 3 (RGB)
    mean: tuple[float, ...]  # per channel, on pixel values scaled to [0, 1]
    std: tuple[float, ...]
    resize: int | None = None  # shorter side before the center crop; None = resize straight to input_size
    layout: str = "NCHW"
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.input_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(
            input_size=tuple(d["input_size"]),
            channels=int(d["channels"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            resize=d.get("resize"),
            layout=d.get("layout", "NCHW"),
            class_names=tuple(d.get("class_names", ())),
        )

    def normalize_uint8(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 images already at input size, NHW (grayscale) or NHWC, to float32 NCHW."""
        if pixels.ndim == 3:
            pixels = pixels[..., None]
        if pixels.shape[1:3] != tuple(self.input_size):
            raise ValueError(f"images are {pixels.shape[1]}x{pixels.shape[2]}, the model takes {self.input_size[0]}x{self.input_size[1]}")
        if pixels.shape[-1] != self.channels:
            if pixels.shape[-1] == 1 and self.channels == 3:
                pixels = np.repeat(pixels, 3, axis=-1)
            elif pixels.shape[-1] == 3 and self.channels == 1:
                pixels = (pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            else:
                raise ValueError(f"images have {pixels.shape[-1]} channels, the model takes {self.channels}")
        x = pixels.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def load_image(self, path) -> np.ndarray:
        """One image file to float32 CHW: resize, center crop, channels, mean/std."""
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("L" if self.channels == 1 else "RGB")
            height, width = self.input_size
            if self.resize is None:
                img = img.resize((width, height), Image.BILINEAR)
            else:
                scale = self.resize / min(img.size)
                img = img.resize((max(width, round(img.size[0] * scale)), max(height, round(img.size[1] * scale))), Image.BILINEAR)
                left = (img.size[0] - width) // 2
                top = (img.size[1] - height) // 2
                img = img.crop((left, top, left + width, top + height))
            pixels = np.asarray(img, dtype=np.uint8)
        return self.normalize_uint8(pixels[None])[0]


IMAGENET = Preprocessing(
    input_size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=256
)
CIFAR = Preprocessing(input_size=(32, 32), channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
