"""benchmarks/arm_cost/litert_peer.py: the XNNPACK (LiteRT) peer of the ARM cycle model.

The conversion (litert-torch, ~2 GB of its own environment) and the emulated counts take longer
than CI's budget for one test; their checks run in the benchmark itself (CHECK_THRESHOLDS) and the
figures are in docs/benchmarks.md. Here: the guest's sysroot, which decides which kernels XNNPACK picks.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "arm_cost"))

import litert_peer  # noqa: E402


def make_runtime(tmp_path: Path) -> Path:
    runtime = tmp_path / "aarch64-runtime"
    for entry in ("usr/bin", "lib", "etc"):
        (runtime / "sysroot" / entry).mkdir(parents=True)
    (runtime / "sysroot" / "usr" / "bin" / "python3.11").write_text("")
    return runtime


def test_the_guest_sysroot_adds_the_boards_cpuinfo_and_links_the_rest(tmp_path):
    runtime = make_runtime(tmp_path)
    folder = litert_peer.guest_sysroot(runtime, "rpi4", 4)
    assert (folder / "usr" / "bin" / "python3.11").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["etc", "lib", "proc", "usr"]
    assert all((folder / name).is_symlink() for name in ("etc", "lib", "usr"))
    text = (folder / "proc" / "cpuinfo").read_text()
    assert text.count("processor\t:") == 4 and text.count("CPU part\t: 0xd08") == 4  # Cortex-A72
    assert "asimddp" not in text  # the Pi 4's core has no dot product

    pi5 = litert_peer.guest_sysroot(runtime, "rpi5", 4)
    assert pi5 != folder and "CPU part\t: 0xd0b" in (pi5 / "proc" / "cpuinfo").read_text()  # Cortex-A76
    assert "asimddp" in (pi5 / "proc" / "cpuinfo").read_text()


def test_the_guest_sysroot_is_made_again_when_the_board_description_changes(tmp_path):
    runtime = make_runtime(tmp_path)
    folder = litert_peer.guest_sysroot(runtime, "rpi5", 4)
    (folder / "proc" / "cpuinfo").write_text("processor\t: 0\n")
    assert litert_peer.guest_sysroot(runtime, "rpi5", 4) == folder
    assert (folder / "proc" / "cpuinfo").read_text().count("processor\t:") == 4
    assert not [p for p in runtime.parent.iterdir() if p.name.startswith(".litert-sysroot")]  # no staging left
