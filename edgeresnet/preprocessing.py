"""How raw pixels become the tensor a model expects.

The spec travels with the weights (metadata JSON) or a model card, into every
artifact's manifest, and into the on-device runners (this file is shipped as it
is: numpy and Pillow only), so the device preprocesses exactly as we calibrated
and evaluated.

The network's input is ``(pixel * pixel_scale - mean) / std`` per channel, where
``pixel`` is the image scaled to [0, 1] whatever its bit depth (8-bit / 255,
16-bit / 65535), ``pixel_scale`` is 1 when mean/std are given on [0, 1] pixels
(torchvision's convention) or 255 when they are given on 0..255 pixels, and the
channels come in ``channel_order`` (RGB, or BGR for Caffe-style models). ``mean``
and ``std`` are given in the order the network takes its channels, that is after
the flip: a Caffe model's mean is B, G, R (103.939, 116.779, 123.68 on 0..255).
Images are resized straight to ``input_size`` (``resize`` None) or their shorter
side to ``resize`` and then center-cropped to ``input_size``, with Pillow's
``interpolation`` filter (bilinear, bicubic, lanczos, box, hamming, nearest). Pillow
filters antialias when they shrink (as torchvision does on PIL images and, since
0.17, on tensors); ``antialias`` false samples without it, as OpenCV's
``cv2.resize`` and ``F.interpolate(antialias=False)`` do (nearest and bilinear).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Iterator

import numpy as np

# Pillow refuses images above twice its own limit and only warns between the two; we refuse
# anything above the limit it warns at (89.5 megapixels): a decompression bomb, not a photo.
MAX_IMAGE_PIXELS = 89_478_485
CHANNEL_ORDERS = ("RGB", "BGR")
MAX_INPUT_MAGNITUDE = 1e6
ORIENTATION = 0x0112  # the EXIF tag
INTERPOLATIONS = ("bilinear", "bicubic", "lanczos", "box", "hamming", "nearest")
UNALIASED = ("bilinear", "nearest")  # the filters that can sample without antialiasing here


# Pillow warns about metadata it skips (corrupt EXIF, odd palette transparency) and decodes the pixels all the same:
# nothing the user can act on, and a console line per image otherwise.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

# Formats Pillow registers but cannot decode to pixels on its own: Ghostscript's (EPS), headers only (MPEG),
# metadata (IPTC), and the save-only ones; its stub plug-ins (BUFR, GRIB, HDF5, WMF) are found by their class.
_NOT_RASTER = {"EPS", "MPEG", "IPTC", "PALM", "PDF"}


@functools.lru_cache(maxsize=None)
def image_suffixes() -> tuple[str, ...]:
    """The file extensions of every image format this Pillow decodes by itself (PNG, JPEG, TIFF, WebP, BMP, GIF,
    TGA, ICO, QOI, JPEG 2000, AVIF, PPM ... and any plug-in registered, such as pillow-heif's HEIC), lower case."""
    from PIL import Image, ImageFile

    Image.init()
    def decodes(fmt: str) -> bool:
        factory = Image.OPEN.get(fmt, (None,))[0]
        stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
        return fmt not in _NOT_RASTER and not stub and (factory is not None or fmt == "MPO")  # MPO opens as JPEG
    return tuple(sorted(ext.lower() for ext, fmt in Image.registered_extensions().items() if decodes(fmt)))


def is_image_name(name: str) -> bool:
    """Whether a file name has the extension of an image format Pillow decodes (see `image_suffixes`)."""
    return name.lower().endswith(image_suffixes())


def folder_name(class_name: str) -> str:
    """A class name as a folder can hold it: path separators and other unsafe characters become '_' ('T-shirt/top' -> 'T-shirt_top')."""
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in class_name).strip() or "_"


def class_index_of_folder(name: str, class_names) -> int | None:
    """The class a labelled sub-folder holds: its class name, the name made folder-safe (folder_name), the class index,
    or the folder-safe name in another letter case when only one class has it."""
    names = list(class_names)
    if name in names:
        return names.index(name)
    safe = [folder_name(c) for c in names]
    if name in safe and safe.count(name) == 1:
        return safe.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    folded = [n.casefold() for n in safe]  # 'trouser' for 'Trouser', 't-shirt_top' for 'T-shirt/top'
    if folded.count(name.casefold()) == 1:
        return folded.index(name.casefold())
    return None


def _as_is(value: Any) -> Any:
    return value


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


# How each field's JSON value becomes the field's type; a field not named here is taken as it is.
_FROM_JSON = {"input_size": tuple, "channels": int, "mean": _floats, "std": _floats, "class_names": tuple,
              "pixel_scale": float, "antialias": bool}


class ImageRefused(ValueError):
    """An image this module will not decode: too large, or a pixel format with no defined [0, 1] scale."""


@dataclass(frozen=True)
class Preprocessing:
    input_size: tuple[int, int]  # (height, width) fed to the network
    channels: int  # 1 (grayscale) or 3 (RGB)
    mean: tuple[float, ...]  # per channel, on pixel values scaled to [0, 1]
    std: tuple[float, ...]
    resize: int | None = None  # shorter side before the center crop; None = resize straight to input_size
    layout: str = "NCHW"
    class_names: tuple[str, ...] = field(default_factory=tuple)
    pixel_scale: float = 1.0  # 1: mean/std apply to [0, 1] pixels; 255: to 0..255 pixels
    channel_order: str = "RGB"  # of a 3-channel input; "BGR" for Caffe-style models
    interpolation: str = "bilinear"  # the resize filter (Pillow's)
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.input_size) != 2 or any(int(v) != v or v < 1 for v in self.input_size):
            raise ValueError(f"input size must be two positive integers (height, width), not {list(self.input_size)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need one value per channel ({self.channels}), not {len(self.mean)} and {len(self.std)}")
        if any(not (s > 0) for s in self.std):
            raise ValueError("std values must be positive")
        if self.resize is not None and self.resize < min(self.input_size):
            raise ValueError(f"resize {self.resize} is smaller than the input size {list(self.input_size)}: nothing to crop")
        if not (self.pixel_scale > 0):
            raise ValueError(f"pixel scale must be positive (1 or 255), not {self.pixel_scale}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel order must be one of {', '.join(CHANNEL_ORDERS)}, not {self.channel_order!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")
        if not self.antialias and self.interpolation not in UNALIASED:
            raise ValueError(f"antialias false works with {' and '.join(UNALIASED)} interpolation, not {self.interpolation}")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std, self.pixel_scale)):
            raise ValueError("mean, std and pixel scale must be finite numbers")
        # Real normalizations give inputs of a few units (ImageNet: -2.1..2.6; Caffe's mean on 0..255: -124..152);
        # a std of 1e-300 or a pixel scale of 1e30 would give float32 infinities, or numbers no network was trained on.
        largest = max(abs(end - m) / s for m, s in zip(self.mean, self.std) for end in (0.0, self.pixel_scale))
        narrowest = min(self.pixel_scale / s for s in self.std)  # black to white, in network input units
        if largest > MAX_INPUT_MAGNITUDE or narrowest < 1 / MAX_INPUT_MAGNITUDE:
            raise ValueError(f"mean {list(self.mean)}, std {list(self.std)} and pixel scale {self.pixel_scale:g} give network "
                             f"inputs up to {largest:.3g} in magnitude, black and white {narrowest:.3g} apart: check them")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.input_size)

    def to_dict(self) -> dict[str, Any]:
        # JSON has no tuples: the sequence fields are written as lists, the rest as they are.
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        """The JSON form back: the four fields without a default are required (KeyError), the rest default."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name in d:
                values[spec.name] = _FROM_JSON.get(spec.name, _as_is)(d[spec.name])
            elif spec.default is MISSING and spec.default_factory is MISSING:
                raise KeyError(spec.name)
        return cls(**values)

    def normalize_uint8(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 images already at input size, NHW (grayscale) or NHWC, to float32 NCHW."""
        return self.normalize_unit(pixels.astype(np.float32) / 255.0)

    def normalize_unit(self, pixels: np.ndarray) -> np.ndarray:
        """Images scaled to [0, 1], already at input size, NHW or NHWC (RGB), to the network's float32 NCHW."""
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
        if self.channels == 3 and self.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        x = pixels.astype(np.float32) * np.float32(self.pixel_scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def load_image(self, path) -> np.ndarray:
        """One image file to float32 CHW: bit depth to [0, 1], resize, center crop, channels, mean/std."""
        return self.normalize_unit(self.load_unit(path)[None])[0]

    def load_unit(self, path) -> np.ndarray:
        """One image file resized and cropped to the input size: float32 HWC (RGB or one plane) in [0, 1]."""
        from PIL import Image, ImageOps

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(path)
            except (Image.DecompressionBombWarning, Image.DecompressionBombError):
                raise ImageRefused(f"larger than {MAX_IMAGE_PIXELS:,} pixels; refused as a possible decompression bomb") from None
        with img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ImageRefused(f"{img.width}x{img.height} is larger than {MAX_IMAGE_PIXELS:,} pixels; refused as a possible decompression bomb")
            # As a viewer shows it: phones and cameras store the pixels sideways and an EXIF orientation tag.
            # Plane by plane, each resized before the next is made: a 64-megapixel photo as one float array is 2 GB.
            upright = ImageOps.exif_transpose(img) if img.getexif().get(ORIENTATION, 1) != 1 else img  # no copy when upright
            planes = _unit_planes(upright)
            height, width = self.input_size
            source = upright.size
            if self.resize is None:
                size, box = (width, height), None
            else:
                scale = self.resize / min(source)
                size = (max(width, round(source[0] * scale)), max(height, round(source[1] * scale)))
                left, top = (size[0] - width) // 2, (size[1] - height) // 2
                box = (left, top, left + width, top + height)
            # Resized as 32-bit float planes ("F"), so 16-bit images keep their depth.
            resized = []
            for plane in planes:
                if box and size[0] * size[1] > MAX_IMAGE_PIXELS:
                    # An extreme aspect ratio (a 1-pixel strip): resize only the source region the crop keeps.
                    region = tuple(v / scale for v in box)
                    plane = plane.resize((width, height), _FILTERS[self.interpolation], box=region)
                    resized.append(np.asarray(plane, dtype=np.float32))
                    continue
                plane = self._resized(plane, size)
                resized.append(np.asarray(plane.crop(box) if box else plane, dtype=np.float32))
        return np.clip(np.stack(resized, axis=-1), 0.0, 1.0)

    def _resized(self, plane, size: tuple[int, int]):
        from PIL import Image

        if self.antialias or self.interpolation == "nearest":
            return plane.resize(size, _FILTERS[self.interpolation])
        # Bilinear from the 4 nearest source pixels, pixel centres aligned (OpenCV's INTER_LINEAR, align_corners=False).
        values = np.asarray(plane, dtype=np.float32)
        rows = _sample_positions(values.shape[0], size[1])
        cols = _sample_positions(values.shape[1], size[0])
        (r0, r1, rw), (c0, c1, cw) = rows, cols
        top = values[r0][:, c0] * (1 - cw) + values[r0][:, c1] * cw
        bottom = values[r1][:, c0] * (1 - cw) + values[r1][:, c1] * cw
        return Image.fromarray((top * (1 - rw[:, None]) + bottom * rw[:, None]).astype(np.float32), mode="F")


_FILTERS = {name: i for i, name in enumerate(("nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"))}  # Pillow's numbers


def _sample_positions(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each target pixel: the two source pixels around its centre and the weight of the second."""
    centre = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(centre).astype(np.int64)
    return low, np.minimum(low + 1, source - 1), (centre - low).astype(np.float32)


def _unit_planes(img) -> Iterator:
    """The image as float ("F" mode) planes scaled to [0, 1], one at a time: 8-bit / 255, 16-bit / 65535; alpha dropped."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "I" and (values.min() < 0 or values.max() > 65535):
            raise ImageRefused(f"32-bit integer pixels ({int(values.min())}..{int(values.max())}) have no defined scale")
        yield Image.fromarray((values / 65535.0).astype(np.float32), mode="F")
        return
    if img.mode == "F":
        raise ImageRefused("floating-point pixels have no defined [0, 1] scale; convert the image to 8 or 16 bits")
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode in ("1", "LA", "La") else "RGB")
    for band in range(len(img.getbands())):
        values = np.asarray(img.getchannel(band), dtype=np.float32)
        values /= 255.0
        yield Image.fromarray(values, mode="F")


IMAGENET = Preprocessing(
    input_size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=256
)
CIFAR = Preprocessing(input_size=(32, 32), channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
UNIT = Preprocessing(input_size=(32, 32), channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # plain [0, 1] pixels
PRESETS = {"imagenet": IMAGENET, "cifar": CIFAR, "unit": UNIT}
