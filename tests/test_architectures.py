"""The zoo's parameter and MAC counts come from the specs, without torch; here they meet the built networks."""

from __future__ import annotations

import pytest
import torch

from edgeresnet.models.architectures import ARCHITECTURES
from edgeresnet.models.resnet import build_resnet


def _torch_cost(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    macs = 0

    def count(module, _inputs, output):
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            macs += output[0].numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
        else:
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return sum(p.numel() for p in model.parameters()), macs


# Every member at its own input size and head; the small members also with another head, one
# channel and an odd, non-square input (the deep ones only repeat the same blocks).
CASES = [(arch, None, None) for arch in sorted(ARCHITECTURES)] + [
    (arch, 37, (1, 96, 80)) for arch in ("resnet18", "resnet20", "resnet29", "resnet34", "resnet50")]


@pytest.mark.parametrize("arch,classes,input_shape", CASES)
def test_counts_from_the_spec_match_the_built_network(arch, classes, input_shape):
    spec = ARCHITECTURES[arch]
    if input_shape is None:
        input_shape = (3, 224, 224) if spec.stem == "imagenet" else (3, 32, 32)
    model = build_resnet(arch, classes, in_channels=input_shape[0])
    assert spec.cost(classes or spec.default_classes, input_shape) == _torch_cost(model, input_shape)
    depth_convs = sum(1 for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and "downsample" not in name)
    assert spec.depth == depth_convs + 1  # + the fully connected layer
