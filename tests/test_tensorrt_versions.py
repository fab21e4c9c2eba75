"""The JetPack -> TensorRT map and where each TensorRT line runs DLA, per Jetson module, with their sources."""

import json

import pytest

from edgeresnet.targets import get_target
from edgeresnet.targets.tensorrt.versions import (CALIBRATION_CACHE, JETPACK_TENSORRT, SOURCES, STRONGLY_TYPED,
                                                  describe_dla_lines, dla_lines, dla_route, tensorrt_line)
from helpers import run_cli

ORIN = {"5.1": ("8.5.2",), "6.0": ("8.6.2",), "6.1": ("10.3.0",), "6.2": ("10.3.0",), "7.2": ("10.16.2",)}


def test_profiles():
    nano, agx, xavier = get_target("jetson-orin-nano"), get_target("jetson-agx-orin"), get_target("jetson-xavier-nx")
    assert get_target("jetson").name.startswith("jetson-orin")
    assert nano.details.dla_cores == 0 and agx.details.dla_cores == 2
    assert nano.details.compute_capability == "8.7" and xavier.details.compute_capability == "7.2"
    for orin in ("jetson-orin-nano", "jetson-orin-nx"):
        assert get_target(orin).details.jetpack_tensorrt == ORIN, orin
        assert not any(v.startswith("11") for v in get_target(orin).details.trt_versions)  # 11.4.1 installs on AGX Orin and Thor only
    assert xavier.details.jetpack_tensorrt == {"5.1": ("8.5.2",)} and get_target("jetson-agx-xavier").details.trt_versions == ["8.5.2"]
    thor = get_target("jetson-agx-thor")
    assert thor.details.compute_capability == "11.0" and thor.details.dla_cores == 0 and not thor.details.dla_lines


def test_a_jetpack_holds_several_tensorrt_lines():
    """JetPack 7.2.2 bundles 10.16; AGX Orin and Thor can install 11.4.1 beside it."""
    agx = get_target("jetson-agx-orin").details
    assert agx.jetpack_tensorrt == {**ORIN, "7.2.2": ("10.16.2", "11.4.1")}
    assert agx.trt_versions == ["8.5.2", "8.6.2", "10.3.0", "10.16.2", "11.4.1"]
    assert get_target("jetson-agx-thor").details.jetpack_tensorrt["7.2.2"] == ("10.16.2", "11.4.1")


@pytest.mark.parametrize("module,version,route", [
    ("Jetson Orin NX", "8.5.2", None),  # JetPack 5.1: DLA SW below the translator's 3.13
    ("Jetson Orin NX", "8.6.2", CALIBRATION_CACHE),
    ("Jetson Orin NX", "10.3.1", CALIBRATION_CACHE),
    ("Jetson Orin NX", "10.16.2", None),  # "Orin DLA is not supported at this time"
    ("Jetson Orin NX", "11.4.1", None),  # 11.4.1 restores DLA on AGX Orin only
    ("Jetson AGX Orin", "10.16.0", None),
    ("Jetson AGX Orin", "11.4.1", STRONGLY_TYPED),
    ("Jetson AGX Orin", "11.5.0", None),  # 11.5.0 does not support JetPack
    ("Jetson Orin Nano", "10.3.0", None),
    ("Jetson Xavier NX", "8.5.2", None),  # the translator's recipe applies to Orin DLA only
    ("Jetson AGX Thor", "11.4.1", None),
])
def test_dla_route_per_module_and_tensorrt_line(module, version, route):
    assert dla_route(module, version) == route


def test_refusals_name_the_lines_with_dla():
    assert describe_dla_lines("Jetson Orin NX") == "8.6, 10.3 (calibration cache)"
    assert describe_dla_lines("Jetson AGX Orin") == "8.6, 10.3 (calibration cache), 11.4 (strongly typed Q/DQ)"
    assert describe_dla_lines("Jetson Orin Nano") == "none"
    assert tensorrt_line("10.16.2") == "10.16" and tensorrt_line("11") == "11.0"


def test_orin_nx_cores_by_part_number():
    nx = get_target("jetson-orin-nx").details
    assert nx.dla_cores_by_part == {"p3767-0000": 2, "p3767-0001": 1}  # 16 GB, 8 GB
    assert nx.dla_cores == 2 and nx.dla_lines == {"8.6": CALIBRATION_CACHE, "10.3": CALIBRATION_CACHE}


def test_every_fact_has_a_source():
    for jetpack, versions in JETPACK_TENSORRT.items():
        assert jetpack in SOURCES and all(v.rsplit(".", 1)[0] in SOURCES[jetpack] for v in versions), (jetpack, SOURCES.get(jetpack))
    for module in ("Jetson AGX Orin", "Jetson Orin NX"):
        assert all(line.source in SOURCES for line in dla_lines(module))
    assert {"thor", "dla", "11", "10.16-dla", "dla-sw", "dla-cores"} <= set(SOURCES)
    assert "Orin DLA is not supported at this time" in SOURCES["10.16-dla"] and "3.13" in SOURCES["dla-sw"]


def test_targets_json_shows_the_version_map():
    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    targets = {t["name"]: t for t in json.loads(result.stdout)}
    agx = targets["jetson-agx-orin"]["details"]
    assert agx["jetpack_tensorrt"]["7.2"] == ["10.16.2"] and agx["jetpack_tensorrt"]["7.2.2"] == ["10.16.2", "11.4.1"]
    assert agx["dla_lines"] == {"8.6": CALIBRATION_CACHE, "10.3": CALIBRATION_CACHE, "11.4": STRONGLY_TYPED}
    assert "11.0.0" not in json.dumps(agx) and targets["jetson-agx-thor"]["details"]["dla_cores"] == 0
