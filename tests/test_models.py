import json

import pytest
import torch

from edgeresnet.errors import InputError
from edgeresnet.models import ModelDescription, MODELS, describe_models, get_entry, load_model
from edgeresnet.models.checkpoint import apply_state_dict, read_state_dict
from edgeresnet.models.architectures import ARCHITECTURES
from edgeresnet.models.resnet import Bottleneck, build_resnet

from helpers import run_cli

# Published parameter counts (torchvision / He et al.) and torchvision's GFLOPS (which are MACs).
PUBLISHED = {"resnet18": (11_689_512, 1.814), "resnet34": (21_797_672, 3.664), "resnet50": (25_557_032, 4.089),
             "resnet101": (44_549_160, 7.801), "resnet152": (60_192_808, 11.514)}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_imagenet_models_match_published_counts(arch):
    rows = {r.name: r for r in describe_models()}
    params, gmacs = PUBLISHED[arch]
    assert rows[arch].params == params
    assert round(rows[arch].macs / 1e9, 3) == gmacs


@pytest.mark.parametrize("arch,n", [("resnet20", 3), ("resnet32", 5), ("resnet44", 7), ("resnet56", 9), ("resnet110", 18)])
def test_cifar_models_are_6n_plus_2_layers(arch, n):
    spec = ARCHITECTURES[arch]
    assert spec.depth == 6 * n + 2 and spec.layers == (n, n, n) and spec.block == "basic"
    model = build_resnet(arch)
    convs = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and "downsample" not in name]
    assert len(convs) + 1 == 6 * n + 2  # + the fully connected layer
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels, model.layer3[0].conv1.out_channels] == [16, 32, 64]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_bottleneck_shape_and_torchvision_keys():
    model = build_resnet("resnet50")
    block = model.layer1[0]
    assert isinstance(block, Bottleneck)
    assert (block.conv1.kernel_size, block.conv2.kernel_size, block.conv3.kernel_size) == ((1, 1), (3, 3), (1, 1))
    assert block.conv3.out_channels == 4 * block.conv1.out_channels
    keys = set(model.state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer4.2.bn3.bias", "fc.weight", "fc.bias"):
        assert key in keys


def test_configurable_channels_and_classes():
    model = build_resnet("resnet18", num_classes=7, in_channels=1)
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 7)


def test_models_json_lists_the_zoo():
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {*ARCHITECTURES, "resnet20-fmnist", "resnet29-fmnist"}
    assert rows["resnet18"]["params"] == 11_689_512 and rows["resnet50"]["params"] == 25_557_032
    assert all({"name", "params", "flops"} <= set(r) for r in rows.values())
    assert rows["resnet20-fmnist"]["top1"] >= 92.0 and rows["resnet29-fmnist"]["top1"] >= 88.0
    assert rows["resnet50"]["flops"] == 2 * rows["resnet50"]["macs"]


def test_torchvision_style_checkpoints_load(tmp_path):
    source = build_resnet("resnet18")
    torch.nn.init.normal_(source.fc.weight)
    state = source.state_dict()
    for name, payload in {"bare.pth": state, "wrapped.pt": {"state_dict": state, "epoch": 3},
                          "model.pt": {"model": state},
                          "ddp.pt": {f"module.{k}": v for k, v in state.items()}}.items():
        torch.save(payload, tmp_path / name)
        loaded = load_model("resnet18", tmp_path / name)
        assert torch.equal(loaded.module.fc.weight, source.fc.weight), name


def test_mismatched_weights_name_keys_and_shapes(tmp_path):
    torch.save(build_resnet("resnet18").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(InputError) as err:
        load_model("resnet34", tmp_path / "r18.pt")
    assert "80 missing keys: layer1.2." in str(err.value)  # resnet34 has blocks resnet18 lacks (BatchNorm counters aside)
    # A head of another size is the checkpoint's own, not a conflict: its classes come from fc.weight.
    torch.save(build_resnet("resnet18", num_classes=10).state_dict(), tmp_path / "r18c10.pt")
    assert load_model("resnet18", tmp_path / "r18c10.pt").num_classes == 10
    with pytest.raises(InputError, match="says 1000 classes, but fc.weight of r18c10.pt has 10 rows"):
        load_model("resnet18", tmp_path / "r18c10.pt", ModelDescription(num_classes=1000))


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/edgeresnet-pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Exploit()}, path)
    with pytest.raises(InputError, match="refused"):
        read_state_dict(path)


def test_corrupt_and_nonfinite_weights_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(InputError, match="not a readable weights file"):
        read_state_dict(tmp_path / "junk.pt")
    state = build_resnet("resnet20").state_dict()
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="NaN or Inf.*fc.weight"):
        load_model("resnet20", tmp_path / "nan.pt")


def test_apply_state_dict_names_unexpected_keys():
    model = build_resnet("resnet20")
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(InputError, match="1 unexpected keys: extra.weight"):
        apply_state_dict(model, state, "test")


def test_unknown_model_lists_known_ones():
    with pytest.raises(InputError, match="known models: .*resnet20-fmnist"):
        get_entry("resnet19")


@pytest.mark.parametrize("name, block, top1", [("resnet20-fmnist", "basic", 92.0), ("resnet29-fmnist", "bottleneck", 88.0)])
def test_shipped_weights_match_their_metadata(name, block, top1):
    entry = MODELS[name]
    meta = entry.weights.meta
    loaded = load_model(name)
    assert loaded.weights_sha256 == meta["sha256"]
    assert ARCHITECTURES[meta["arch"]].block == block
    assert meta["metrics"]["top1"] >= top1
    for field in ("dataset", "preprocessing", "training", "sha256"):
        assert field in meta
    assert meta["training"]["command"].startswith("edgeresnet train ")
    assert meta["preprocessing"]["input_size"] == [28, 28] and meta["preprocessing"]["channels"] == 1


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_state_keys_without_torch_match_the_network(arch):
    assert ARCHITECTURES[arch].state_keys() == list(build_resnet(arch, num_classes=3, in_channels=1).state_dict())
