"""The members of the ResNet family as plain data, and what each costs (parameters, MACs).

Light on purpose: listing the zoo needs no torch. `resnet.py` builds the networks
from these specs; the counts here are exact for them (a test compares both).
"""

from __future__ import annotations

from dataclasses import dataclass

EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclass(frozen=True)
class Architecture:
    """What distinguishes one member of the family from another."""

    block: str  # "basic" (two 3x3 convolutions) or "bottleneck" (1x1, 3x3, 1x1 x4)
    layers: tuple[int, ...]
    stem: str  # "imagenet" (7x7/2 conv + max-pool) or "cifar" (3x3/1 conv)
    widths: tuple[int, ...]

    @property
    def depth(self) -> int:
        convs_per_block = 3 if self.block == "bottleneck" else 2
        return convs_per_block * sum(self.layers) + 2

    @property
    def default_classes(self) -> int:
        return 1000 if self.stem == "imagenet" else 10

    def state_keys(self) -> list[str]:
        """The network's state-dict keys (torchvision's names), whatever its head and input channels."""
        def bn(name: str) -> list[str]:
            return [f"{name}.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

        keys = ["conv1.weight", *bn("bn1")]
        expansion = EXPANSION[self.block]
        convs = 3 if self.block == "bottleneck" else 2
        inplanes = self.widths[0]
        for index, (planes, blocks) in enumerate(zip(self.widths, self.layers)):
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                prefix = f"layer{index + 1}.{block}"
                for conv in range(1, convs + 1):
                    keys += [f"{prefix}.conv{conv}.weight", *bn(f"{prefix}.bn{conv}")]
                if stride != 1 or inplanes != planes * expansion:
                    keys += [f"{prefix}.downsample.0.weight", *bn(f"{prefix}.downsample.1")]
                inplanes = planes * expansion
        return keys + ["fc.weight", "fc.bias"]

    def cost(self, num_classes: int, input_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(parameters, multiply-accumulates of one forward pass over convolutions and the classifier)."""
        channels, height, width = input_shape
        params = macs = 0

        def conv(cin: int, cout: int, k: int, stride: int, pad: int, h: int, w: int, bn: bool = True) -> tuple[int, int]:
            nonlocal params, macs
            oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
            params += cin * cout * k * k + (2 * cout if bn else 0)
            macs += oh * ow * cout * cin * k * k
            return oh, ow

        expansion = EXPANSION[self.block]
        if self.stem == "imagenet":
            height, width = conv(channels, self.widths[0], 7, 2, 3, height, width)
            height, width = (height + 2 - 3) // 2 + 1, (width + 2 - 3) // 2 + 1  # 3x3/2 max-pool
        else:
            height, width = conv(channels, self.widths[0], 3, 1, 1, height, width)
        inplanes = self.widths[0]
        for index, (planes, blocks) in enumerate(zip(self.widths, self.layers)):
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                if self.block == "basic":
                    oh, ow = conv(inplanes, planes, 3, stride, 1, height, width)
                    conv(planes, planes, 3, 1, 1, oh, ow)
                else:
                    conv(inplanes, planes, 1, 1, 0, height, width)
                    oh, ow = conv(planes, planes, 3, stride, 1, height, width)
                    conv(planes, planes * expansion, 1, 1, 0, oh, ow)
                if stride != 1 or inplanes != planes * expansion:
                    conv(inplanes, planes * expansion, 1, stride, 0, height, width)
                inplanes, height, width = planes * expansion, oh, ow
        params += inplanes * num_classes + num_classes
        macs += inplanes * num_classes
        return params, macs


IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)

ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture("basic", (2, 2, 2, 2), "imagenet", IMAGENET_WIDTHS),
    "resnet34": Architecture("basic", (3, 4, 6, 3), "imagenet", IMAGENET_WIDTHS),
    "resnet50": Architecture("bottleneck", (3, 4, 6, 3), "imagenet", IMAGENET_WIDTHS),
    "resnet101": Architecture("bottleneck", (3, 4, 23, 3), "imagenet", IMAGENET_WIDTHS),
    "resnet152": Architecture("bottleneck", (3, 8, 36, 3), "imagenet", IMAGENET_WIDTHS),
    **{
        f"resnet{6 * n + 2}": Architecture("basic", (n, n, n), "cifar", CIFAR_WIDTHS)
        for n in (3, 5, 7, 9, 18)
    },
    # CIFAR-style Bottleneck nets have 9n+2 layers (He et al., 2016, "Identity Mappings in Deep
    # Residual Networks", whose ResNet-164 is n=18); n=3 is the smallest.
    "resnet29": Architecture("bottleneck", (3, 3, 3), "cifar", CIFAR_WIDTHS),
}
