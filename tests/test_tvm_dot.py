"""Which integer dot-product instruction each target gets (`targets/tvm/dot.py`)."""

from pathlib import Path

from edgeresnet.targets import get_target


def test_each_profile_gets_its_dot_product_instruction():
    """sdot exactly where the board has the dot-product extension; an x86 host gets vpdpbusd where
    it has VNNI on 256-bit vectors, else pmaddwd where it has AVX2."""
    import tvm

    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.rules import ConvRules

    for name in ("rpi4", "rpi5", "jetson-orin-cpu", "arm64"):
        profile = get_target(name)
        rules = ConvRules.for_target(tvm.target.Target(llvm_target(profile)))
        assert (rules.dot.name == "sdot") == profile.details.dotprod, name
    host = ConvRules.for_target(tvm.target.Target(llvm_target(get_target("x86-64"))))
    flags = set(Path("/proc/cpuinfo").read_text().split())
    vnni = "avx_vnni" in flags or {"avx512_vnni", "avx512vl"} <= flags
    assert host.dot.name == ("vpdpbusd" if vnni else "pmaddwd" if "avx2" in flags else "generic")
